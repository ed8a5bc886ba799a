"""One settings object, read from the environment (prefix ``PICMETRIC_``), a ``.env`` file, or a mapping such as
Streamlit's ``st.secrets``. The seed system's variable names (``DATABASE_URL``, ``S3_KEY``, ``S3_SECRET``,
``S3_BUCKET``, ``S3_LOCATION``) are accepted too. Secrets are ``SecretStr``: they never print."""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url


def _default_cache_dir() -> Path:
    return Path.home() / ".cache" / "picmetric" / "models"


def _alias(name: str, *seed_names: str) -> AliasChoices:
    return AliasChoices(f"PICMETRIC_{name.upper()}", *seed_names)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PICMETRIC_", env_file=".env", extra="ignore", populate_by_name=True)

    # Intake limits: a decoded image costs width * height * 3 bytes, so the pixel limit is the bomb guard.
    max_pixels: int = Field(default=50_000_000, gt=0)
    max_dimension: int = Field(default=20_000, gt=0)
    max_upload_bytes: int = Field(default=30 * 1024 * 1024, gt=0)
    max_batch_files: int = Field(default=500, ge=1, description="photos in one API batch")
    max_batch_bytes: int = Field(default=512 * 1024 * 1024, gt=0, description="one API batch request body")
    working_max_side: int = Field(default=1280, ge=64, description="longest side of the copy the models see")
    decode_pixel_budget: int = Field(
        default=100_000_000, gt=0, description="pixels decoded at once per process; larger decodes wait their turn"
    )
    decode_wait_s: float = Field(default=30.0, gt=0, description="longest wait for the decode budget")

    # Video intake: checked from the container's header before any frame is decoded.
    max_video_bytes: int = Field(default=512 * 1024 * 1024, gt=0, description="one video file")
    max_video_duration_s: float = Field(default=600.0, gt=0, description="the longest clip, in seconds")
    max_video_frames: int = Field(default=30_000, gt=0, description="the most frames in one clip")
    max_video_pixels: int = Field(default=3840 * 2160, gt=0, description="width x height of a video frame")
    video_chunk_s: float = Field(
        default=30.0,
        gt=0,
        description="a long clip is split at keyframes into chunks of about this length, one job each",
    )

    # URL intake.
    url_timeout_s: float = Field(default=10.0, gt=0)
    url_max_redirects: int = Field(default=5, ge=0)
    url_max_concurrent: int = Field(
        default=8, ge=1, description="URL downloads at once per API process; more wait up to url_timeout_s"
    )
    url_allow_networks: list[str] = Field(
        default_factory=list,
        description="CIDRs that URL intake may reach although they are not public (e.g. 10.0.0.0/8)",
    )
    s3_read_allow: list[str] = Field(
        default_factory=list,
        description="bucket/prefix locations that s3:// URLs sent to the API may read (none by default: only "
        "`picmetric ingest` reads buckets); e.g. class-photos/2026/",
    )

    # Inference.
    model_cache_dir: Path = Field(default_factory=_default_cache_dir)
    # Thread budget (benchmarks/bench_pipeline.py): one analysis runs its tasks on ``analysis_threads`` threads at
    # once, each model run on ``intra_op_threads`` ORT threads.
    intra_op_threads: int = Field(default=0, ge=0, description="ORT threads per model run; 0 = number of cores")
    analysis_threads: int = Field(default=3, ge=1, le=3, description="tasks of one analysis run at once (1-3)")
    ort_memory_arena: bool = Field(default=True, description="ORT's CPU memory arena (faster, keeps memory)")

    # Storage: SQLite file and a local folder by default; PostgreSQL and S3 when configured.
    data_dir: Path = Field(default=Path("data"))
    database_url: SecretStr | None = Field(default=None, validation_alias=_alias("database_url", "DATABASE_URL"))
    s3_bucket: str | None = Field(default=None, validation_alias=_alias("s3_bucket", "S3_BUCKET"))
    s3_region: str = Field(default="us-east-1", validation_alias=_alias("s3_region", "S3_REGION"))
    s3_endpoint_url: str | None = Field(default=None, validation_alias=_alias("s3_endpoint_url", "S3_ENDPOINT_URL"))
    s3_access_key: SecretStr | None = Field(default=None, validation_alias=_alias("s3_access_key", "S3_KEY"))
    s3_secret_key: SecretStr | None = Field(default=None, validation_alias=_alias("s3_secret_key", "S3_SECRET"))
    s3_public_base_url: str | None = Field(
        default=None,
        validation_alias=_alias("s3_public_base_url", "S3_LOCATION"),
        description="when set, blob URLs are this prefix + key; otherwise presigned URLs",
    )
    s3_presign_seconds: int = Field(default=3600, gt=0)
    s3_prefix: str = Field(default="", description="key prefix inside the bucket")
    claim_lease_s: float = Field(
        default=15.0, gt=0, description="a running analysis whose holder has not renewed its claim this long is retaken"
    )
    s3_timeout_s: float = Field(
        default=20.0, gt=0, le=600, description="S3: one request (two tries) gives up after about this long: a 503"
    )
    s3_create_bucket: bool = Field(default=True, description="create the bucket on start when it does not exist")

    # Jobs: with no broker every analysis runs in the process that received it (background threads for batches);
    # with redis://... or amqp://... they go to Celery workers (``picmetric worker``) that share the store above.
    broker_url: SecretStr | None = Field(default=None, description="Celery broker: redis://host:6379/0 or amqp://...")
    job_queue: str = Field(default="picmetric", min_length=1, description="the broker queue jobs are sent to")
    job_threads: int = Field(default=2, ge=1, le=64, description="in-process jobs at once (no broker)")
    job_wait_s: float = Field(default=120.0, gt=0, description="a synchronous request waits this long, then 202")
    broker_timeout_s: float = Field(default=3.0, gt=0, description="connecting to or publishing on the broker")
    job_lease_s: float = Field(
        default=30.0, gt=0, le=3600,
        description="a job whose runner (or in-process queue) has not vouched for it this long is sent again",
    )  # fmt: skip
    job_max_attempts: int = Field(
        default=3, ge=1, le=100, description="a job whose runner stopped this many times ends failed"
    )
    job_retry_for_s: float = Field(
        default=3600.0, gt=0, description="a job meeting an outage (database, store) is retried this long, then fails"
    )
    db_timeout_s: float = Field(
        default=10.0, gt=0, le=600,
        description="PostgreSQL: connecting, each statement, and a silent connection (TCP) give up after this long",
    )  # fmt: skip
    inference_batch: int = Field(
        default=1, ge=1, le=64,
        description="photos the classifier and detector run as one batch: those that reach a busy model wait and "
        "run together (1: every photo on its own)",
    )  # fmt: skip
    worker_concurrency: int = Field(default=1, ge=1, le=64, description="processes per `picmetric worker`")
    worker_threads: int = Field(
        default=16, ge=1, le=64,
        description="jobs one worker process runs at once over its one model set: their storage, database and "
        "network waits overlap the inference of others (benchmarks/bench_hosts.py)",
    )  # fmt: skip
    worker_analyses: int = Field(
        default=2, ge=1, le=64, description="of a worker process' jobs, how many run the models at once"
    )

    #: the dashboard's address for phones (``picmetric dashboard --lan`` sets it): the class board's link and QR code
    #: name it when the teacher opened the board by localhost, which no phone can reach
    lan_url: str | None = Field(default=None, description="e.g. http://192.168.1.20:8501")

    # HTTP API: admin routes (/reset, /log) need the admin token; DeepStack routes need the API key when set.
    admin_token: SecretStr | None = None
    http_head_timeout_s: float = Field(
        default=5.0, gt=0, description="close connections that have not sent a complete request head by then"
    )
    http_body_timeout_s: float = Field(
        default=60.0, gt=0, description="a request body (an upload) must arrive whole within this many seconds"
    )
    api_key: SecretStr | None = None

    @field_validator("url_allow_networks")
    @classmethod
    def _valid_networks(cls, value: list[str]) -> list[str]:
        """Checked at start, so a typo is reported when the service starts, not at the first URL."""
        for cidr in value:
            try:
                ipaddress.ip_network(cidr, strict=True)
            except ValueError as exc:
                raise ValueError(f"PICMETRIC_URL_ALLOW_NETWORKS: {exc}") from None
        return value

    @field_validator("database_url", mode="before")
    @classmethod
    def _modern_scheme(cls, value):
        """The seed used Heroku's ``postgres://``; SQLAlchemy 2 only knows ``postgresql://``."""
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        if isinstance(raw, str) and raw.startswith("postgres://"):
            raw = "postgresql://" + raw[len("postgres://") :]
        return raw or None

    @property
    def resolved_database_url(self) -> str:
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return f"sqlite:///{(self.data_dir / 'picmetric.sqlite3').resolve()}"

    @property
    def safe_broker_url(self) -> str | None:
        """The broker URL with its password masked."""
        if self.broker_url is None:
            return None
        return make_url(self.broker_url.get_secret_value()).render_as_string(hide_password=True)

    @field_validator("broker_url", mode="before")
    @classmethod
    def _known_broker(cls, value):
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        if isinstance(raw, str) and raw and not raw.startswith(("redis://", "rediss://", "amqp://", "amqps://")):
            raise ValueError("PICMETRIC_BROKER_URL must start with redis://, rediss://, amqp:// or amqps://")
        return raw or None

    @property
    def safe_database_url(self) -> str:
        """The database URL with its password masked, for logs and the System page."""
        return make_url(self.resolved_database_url).render_as_string(hide_password=True)


def settings_from_mapping(values: Mapping[str, object]) -> Settings:
    """Settings from e.g. ``st.secrets``: keys are field names, ``PICMETRIC_`` variable names or the seed's names;
    the environment fills the rest."""
    fields: dict[str, Any] = {}
    for key, value in values.items():
        if not isinstance(value, (str, int, float, list)):
            continue  # nested sections (e.g. [connections]) are not ours
        fields[key[len("PICMETRIC_") :].lower() if key.startswith("PICMETRIC_") else key] = value
    return Settings(**fields)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def tokens_match(given: object, expected: SecretStr | None) -> bool:
    """Constant-time comparison of a token or key someone typed or sent with the configured one; anything but a
    non-empty string (a missing field, a file part) never matches."""
    return (
        isinstance(given, str)
        and bool(given)
        and expected is not None
        and hmac.compare_digest(given.encode(), expected.get_secret_value().encode())
    )
