"""One settings object, read from the environment (prefix ``PICMETRIC_``) or a ``.env`` file."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_cache_dir() -> Path:
    return Path.home() / ".cache" / "picmetric" / "models"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PICMETRIC_", env_file=".env", extra="ignore")

    # Intake limits: a decoded image costs width * height * 3 bytes, so the pixel limit is the bomb guard.
    max_pixels: int = Field(default=50_000_000, gt=0)
    max_dimension: int = Field(default=20_000, gt=0)
    max_upload_bytes: int = Field(default=30 * 1024 * 1024, gt=0)
    working_max_side: int = Field(default=1280, ge=64, description="longest side of the copy the models see")

    # URL intake.
    url_timeout_s: float = Field(default=10.0, gt=0)
    url_max_redirects: int = Field(default=5, ge=0)
    url_allow_networks: list[str] = Field(
        default_factory=list,
        description="CIDRs that URL intake may reach although they are not public (e.g. 10.0.0.0/8)",
    )

    # Inference.
    model_cache_dir: Path = Field(default_factory=_default_cache_dir)
    intra_op_threads: int = Field(default=0, ge=0, description="threads per model; 0 = number of cores")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
