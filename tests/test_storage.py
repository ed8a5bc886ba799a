"""Storage guarantees, against SQLite + a local folder and against PostgreSQL + a real S3 server (SeaweedFS)."""

from __future__ import annotations

import io
import multiprocessing
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select, update

from picmetric import AnalysisOptions, Analyzer, InvalidImageError, load_image
from picmetric.core.models import YuNetDetector
from picmetric.errors import AnalysisFailedError, PicMetricError
from picmetric.interfaces.api.errors import status_of
from picmetric.service.analyses import AnalysisService, options_key
from picmetric.settings import Settings
from picmetric.storage import (
    DatabaseError,
    HistoryFilter,
    Repository,
    StorageError,
)
from picmetric.storage.db import current_revision, head_revision, make_engine, upgrade
from picmetric.storage.schema import AnalysisRow, ImageRow, ObjectRow

from .conftest import imagenet_samples, photo_variants, s3_settings
from .services import PostgresDatabase


def _count(service: AnalysisService, column) -> int:
    with service._repository.engine.connect() as conn:
        return conn.scalar(select(func.count(column)))


def test_same_image_twice_runs_the_models_once(service, zidane_path, analyzer):
    data = zidane_path.read_bytes()
    first = service.submit(data, name="zidane.jpg")
    second = service.submit(data, name="again.jpg")
    assert analyzer.calls == 1
    assert not first.cached and second.cached
    assert first.id == second.id
    assert len(second.analysis.faces) == 2
    np.testing.assert_allclose(second.analysis.detections.xyxy, first.analysis.detections.xyxy, atol=0.01)
    assert second.analysis.classification.names == first.analysis.classification.names
    assert second.analysis.name == "zidane.jpg"  # the first upload's name is the image's name


def test_weaker_candidates_are_stored_beside_the_result_and_rows_without_them_still_load(service, zidane_path):
    first = service.submit(zidane_path.read_bytes())
    again = service.get(first.sha256).analysis
    assert again.floors == {"objects": 0.05, "faces": 0.3}
    assert len(again.weaker_objects) == len(first.analysis.weaker_objects) > 0
    np.testing.assert_allclose(again.weaker_objects.xyxy, first.analysis.weaker_objects.xyxy, atol=0.1)
    np.testing.assert_allclose(again.weaker_objects.confidence, first.analysis.weaker_objects.confidence, atol=1e-6)
    assert again.weaker_objects.labels == first.analysis.weaker_objects.labels
    assert len(again.objects_from(0.05)) == len(first.analysis.detections) + len(first.analysis.weaker_objects)
    assert _count(service, ObjectRow.id) == len(first.analysis.detections)  # never searched as objects
    with service._repository.engine.begin() as conn:  # a row stored before candidates were kept
        conn.execute(update(AnalysisRow).values(candidates=None))
    older = service.get(first.sha256).analysis
    assert older.weaker_objects is None and older.floor("objects") == 0.25 and older.floor("faces") == 0.8
    assert len(older.objects_from(0.05)) == len(first.analysis.detections)


def test_other_options_are_a_new_analysis_of_the_same_image(service, zidane_path, analyzer):
    data = zidane_path.read_bytes()
    service.submit(data)
    service.submit(data, options=AnalysisOptions(min_confidence=0.5))
    assert analyzer.calls == 2
    assert _count(service, ImageRow.id) == 1 and _count(service, AnalysisRow.id) == 2


def test_eight_threads_same_new_image_store_it_once(service, bus_path, analyzer):
    data = bus_path.read_bytes()
    barrier = threading.Barrier(8)

    def submit(_):
        barrier.wait()
        return service.submit(data)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(submit, range(8)))
    assert analyzer.calls == 1
    assert len({r.id for r in results}) == 1
    assert _count(service, ImageRow.id) == 1 and _count(service, AnalysisRow.id) == 1
    assert len(service._repository.blobs.keys()) == 2  # original, thumbnail (the results are drawn when asked for)


def test_blobs_are_readable_and_content_typed(service, zidane_path):
    stored = service.submit(zidane_path.read_bytes(), name="zidane.jpg")
    assert set(stored.blob_keys) == {"original", "thumbnail"} and stored.image_kinds[2:] == ["objects", "faces"]
    assert service._repository.blob(stored.blob_keys["original"]) == zidane_path.read_bytes()
    faces = service.image(stored.sha256, "faces")  # drawn now, the first time it is asked for
    data, content_type = faces.content, faces.content_type
    assert content_type == "image/webp" and Image.open(io.BytesIO(data)).size == (1280, 720)
    kept = service.get(stored.sha256)
    assert set(kept.blob_keys) == {"original", "thumbnail", "faces"}  # kept: the next request reads it
    again = service.image(stored.sha256, "faces")
    assert (again.content, again.content_type, again.etag) == (data, content_type, faces.etag)
    assert len(service._repository.blobs.keys()) == 3
    assert service._repository.image_bytes(stored.sha256, "original")[1] == "image/jpeg"
    assert service._repository.image_bytes("0" * 64) is None


def test_an_image_is_found_by_sha256_md5_or_a_unique_prefix(service, zidane_path, bus_path):
    from picmetric.errors import PicMetricError

    stored = service.submit(zidane_path.read_bytes())
    other = service.submit(bus_path.read_bytes())
    assert service.get(stored.sha256).id == stored.id
    for text in (
        stored.sha256,
        stored.sha256.upper(),
        stored.analysis.md5,
        stored.sha256[:8],
        stored.analysis.md5[:10],
    ):
        assert service.find(text).id == stored.id, text
    assert service.find(other.sha256[:12]).id == other.id
    for text in ("f" * 64, stored.sha256[:7], "not-hex-at-all", ""):
        assert service.find(text) is None, text
    from picmetric.core.results import ImageFacts

    for twin in ("abcdef01" + "0" * 56, "abcdef01" + "1" * 56):  # two images whose hashes start alike
        info = ImageFacts(sha256=twin, md5=twin[:32], format="JPEG", width=1, height=1, size_bytes=1)
        service._repository.ensure_image(info, f"originals/{twin}.jpg", "image/jpeg")
    with pytest.raises(PicMetricError, match="several images"):
        service.find("abcdef01")
    assert service._repository.resolve_image("abcdef01" + "1" * 4) == "abcdef01" + "1" * 56


def test_bad_input_stores_nothing(service):
    with pytest.raises(InvalidImageError):
        service.submit(b"definitely not an image")
    assert _count(service, ImageRow.id) == 0 and service._repository.blobs.keys() == []


def test_delete_removes_rows_and_blobs_but_keeps_shared_ones(service, zidane_path, bus_path):
    zidane = service.submit(zidane_path.read_bytes())
    bus = service.submit(bus_path.read_bytes())
    assert service._repository.delete(zidane.sha256)
    assert service.get(zidane.sha256) is None
    assert service.get(bus.sha256) is not None
    assert sorted(service._repository.blobs.keys()) == sorted(bus.blob_keys.values())
    assert not service._repository.delete(zidane.sha256)


def test_reset_removes_everything(service, zidane_path):
    service.submit(zidane_path.read_bytes())
    service._repository.reset()
    assert service._repository.stats()["images"] == 0
    assert service._repository.blobs.keys() == []


def test_sweep_removes_only_orphans(service, zidane_path):
    stored = service.submit(zidane_path.read_bytes())
    service._repository.blobs.put("renders/orphan.webp", b"left by a crash", "image/webp")
    assert service._repository.sweep_orphans() == []  # too young: it may belong to an upload still in flight
    assert service._repository.sweep_orphans(min_age_s=0) == ["renders/orphan.webp"]
    assert sorted(service._repository.blobs.keys()) == sorted(stored.blob_keys.values())


def test_failed_analysis_is_recorded_and_retried(service, tmp_path, zidane_path, analyzer):
    broken = tmp_path / "broken-yunet.onnx"
    broken.write_bytes(b"this is not an ONNX model")
    healthy = analyzer.face_detector()
    analyzer.use(YuNetDetector(weights_path=broken))
    try:
        with pytest.raises(AnalysisFailedError, match="analysis failed"):
            service.submit(zidane_path.read_bytes())
    finally:
        analyzer.use(healthy)
    history = service._repository.history(HistoryFilter(status="failed"))
    assert history.total == 1 and history.items[0].status == "failed" and history.items[0].error
    assert service._repository.stats()["failed"] == 1
    retried = service.submit(zidane_path.read_bytes())  # models fixed: the next submission succeeds
    assert retried.status == "done" and len(retried.analysis.faces) == 2
    assert service._repository.stats()["failed"] == 0


def test_stats_and_health(service, zidane_path):
    service.submit(zidane_path.read_bytes())
    stats = service._repository.stats()
    assert stats["images"] == 1 and stats["analyses"] == 1 and stats["faces"] == 2 and stats["labels"] == 5
    assert stats["original_bytes"] == len(zidane_path.read_bytes())
    assert service._repository.health() == {"database": "ok", "storage": "ok"}


# --- history filters on a database holding 200+ real analyses --------------------------------------------------


@pytest.fixture(scope="module", params=["sqlite-local", "postgres-s3"])
def full_history(request, tmp_path_factory, analyzer):
    """200+ stored analyses, built once per backend for the filter tests."""
    from .conftest import backend_settings

    tmp = tmp_path_factory.mktemp(f"history-{request.param}")
    repo = AnalysisService(backend_settings(request, tmp), analyzer=analyzer)
    if request.param == "postgres-s3":
        repo._repository.blobs.ensure_bucket()
    repo._repository.reset()
    stored = [repo.submit(data, source="url" if i % 5 == 0 else "upload") for i, data in enumerate(photo_variants(210))]
    yield repo, stored
    repo._repository.reset()
    repo._repository.engine.dispose()


def _expected(stored, keep) -> set[str]:
    return {s.sha256 for s in stored if keep(s.analysis)}


def _found(repo: AnalysisService, filters: HistoryFilter) -> set[str]:
    page, found = 1, set()
    while True:
        result = repo._repository.history(filters, page=page, page_size=50)
        found |= {item.sha256 for item in result.items}
        if page * 50 >= result.total:
            assert result.total == len(found)
            return found
        page += 1


def test_history_filters_return_exactly_the_right_rows(full_history):
    repo, stored = full_history
    assert repo._repository.stats()["analyses"] >= 200
    # a word that several photos' labels share (which one depends on the classifier's numbers, not on the filter)
    words = Counter(w for s in stored for n in s.analysis.classification.names for w in set(n.lower().split()))
    word = next(w for w, count in words.most_common() if len(w) > 3 and 3 <= count < len(stored))
    cases = [
        (HistoryFilter(object_class="person"), lambda a: "person" in a.detections.labels),
        (HistoryFilter(label=word), lambda a: any(word in n.lower() for n in a.classification.names)),
        (
            HistoryFilter(text="car"),
            lambda a: (
                any("car" in n.lower() for n in a.classification.names) or any("car" in n for n in a.detections.labels)
            ),
        ),
        (HistoryFilter(min_faces=1), lambda a: len(a.faces) >= 1),
        (HistoryFilter(min_faces=2), lambda a: len(a.faces) >= 2),
        (HistoryFilter(source="url"), lambda a: a.source == "url"),
    ]
    for filters, keep in cases:
        expected = _expected(stored, keep)
        assert expected, f"the data set should contain matches for {filters}"
        assert _found(repo, filters) == expected, filters


def test_history_text_search_treats_like_wildcards_as_text(full_history):
    """'%' and '_' are LIKE wildcards: typed into the search box they must match only themselves."""
    repo, stored = full_history
    assert _found(repo, HistoryFilter(text="%")) == set() and _found(repo, HistoryFilter(label="_")) == set()
    assert _found(repo, HistoryFilter(text="c%r")) == set()  # would match "car" unescaped
    assert _found(repo, HistoryFilter(text="c_r")) == set()
    assert _found(repo, HistoryFilter(text="\\")) == set()
    assert _found(repo, HistoryFilter(text="car")), "the plain search still finds cars"


def test_history_date_range_and_order(full_history):
    repo, stored = full_history
    moments = sorted(s.analysis.created_at for s in stored)
    middle = moments[len(moments) // 2]
    newer = _found(repo, HistoryFilter(date_from=middle))
    assert newer == {s.sha256 for s in stored if s.analysis.created_at >= middle}
    assert _found(repo, HistoryFilter(date_to=middle - timedelta(microseconds=1))) == {
        s.sha256 for s in stored if s.analysis.created_at < middle
    }
    first_page = repo.history(page=1, page_size=50)
    assert len(first_page.items) == 50 and first_page.total == len(stored)
    dates = [item.created_at for item in first_page.items]
    assert dates == sorted(dates, reverse=True)
    assert first_page.items[0].thumbnail is not None and first_page.items[0].thumbnail.content[:4] == b"RIFF"
    future = datetime.now(UTC) + timedelta(days=1)
    assert repo._repository.history(HistoryFilter(date_from=future)).total == 0


# --- failures of the real services ------------------------------------------------------------------------------


def test_s3_down_mid_test_fails_clearly_and_leaves_no_row(seaweed, postgres, tmp_path, analyzer, zidane_path):
    repo = AnalysisService(s3_settings(seaweed, tmp_path, database_url=postgres.url), analyzer=analyzer)
    repo._repository.blobs.ensure_bucket()
    repo._repository.reset()
    seaweed.stop()
    try:
        with pytest.raises(StorageError, match="object storage") as failure:
            repo.submit(zidane_path.read_bytes())
        assert "test-secret-value" not in str(failure.value) and "test-access" not in str(failure.value)
        assert _count(repo, ImageRow.id) == 0 and _count(repo, AnalysisRow.id) == 0
    finally:
        seaweed.start()
    stored = repo.submit(zidane_path.read_bytes())
    assert stored.status == "done" and repo._repository.blobs.exists(stored.blob_keys["original"])
    repo._repository.reset()


def test_database_down_fails_clearly_and_leaves_no_orphan_blob(seaweed, postgres, tmp_path, analyzer, bus_path):
    repo = AnalysisService(s3_settings(seaweed, tmp_path, database_url=postgres.url), analyzer=analyzer)
    repo._repository.blobs.ensure_bucket()
    repo._repository.reset()
    postgres.block_connections()
    try:
        with pytest.raises(DatabaseError, match="database could not") as failure:
            repo.submit(bus_path.read_bytes())
        assert "postgres" not in str(failure.value).lower() or "@" not in str(failure.value)
        assert repo._repository.blobs.keys() == []
    finally:
        postgres.allow_connections()
    repo._repository.engine.dispose()
    assert repo.submit(bus_path.read_bytes()).status == "done"
    repo._repository.reset()


def test_presigned_and_public_urls(seaweed, tmp_path, analyzer, zidane_path):
    import httpx

    repo = AnalysisService(s3_settings(seaweed, tmp_path), analyzer=analyzer)
    repo._repository.blobs.ensure_bucket()
    repo._repository.reset()
    stored = repo.submit(zidane_path.read_bytes())
    response = httpx.get(stored.urls["original"])  # presigned: a browser can open it
    assert response.status_code == 200 and response.content == zidane_path.read_bytes()
    assert response.headers["content-type"] == "image/jpeg"
    public_settings = s3_settings(seaweed, tmp_path, s3_public_base_url="https://cdn.example/img")
    public = AnalysisService(public_settings, analyzer=analyzer)
    public.image(stored.sha256, "faces")  # drawn once
    assert public.get(stored.sha256).urls["faces"].startswith("https://cdn.example/img/renders/")
    repo._repository.reset()


# --- migrations and configuration -----------------------------------------------------------------------------


def _upgrade_in_subprocess(url: str, queue) -> None:
    try:
        upgrade(make_engine(url))
        queue.put("ok")
    except Exception as exc:  # reported to the parent, which fails the test
        queue.put(repr(exc))


@pytest.fixture(params=["sqlite", "postgres"])
def empty_database_url(request, tmp_path) -> str:
    """A database that has never seen a migration, on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
    database = PostgresDatabase()
    request.addfinalizer(database.drop)
    return database.url


def test_migrations_are_safe_when_processes_start_together(empty_database_url):
    url = empty_database_url
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    processes = [context.Process(target=_upgrade_in_subprocess, args=(url, queue)) for _ in range(4)]
    for p in processes:
        p.start()
    for p in processes:
        p.join(60)
    assert [queue.get(timeout=5) for _ in processes] == ["ok"] * 4
    engine = make_engine(url)
    assert current_revision(engine) == head_revision()
    assert upgrade(engine) == head_revision()  # again: a no-op
    engine.dispose()


def test_seed_variable_names_and_secret_hygiene(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgres://picuser:hunter2@db.example:5432/picmetric")
    monkeypatch.setenv("S3_KEY", "AKIAEXAMPLE")
    monkeypatch.setenv("S3_SECRET", "very-secret")
    monkeypatch.setenv("S3_BUCKET", "stonks3")
    monkeypatch.setenv("S3_LOCATION", "http://stonks3.s3.amazonaws.com/")
    settings = Settings()
    assert settings.resolved_database_url.startswith("postgresql://picuser:hunter2@")
    assert settings.safe_database_url == "postgresql://picuser:***@db.example:5432/picmetric"
    assert settings.s3_bucket == "stonks3" and settings.s3_public_base_url.startswith("http://stonks3")
    text = repr(settings) + str(settings)
    assert "hunter2" not in text and "very-secret" not in text and "AKIAEXAMPLE" not in text


def test_settings_from_streamlit_style_secrets():
    from picmetric.settings import settings_from_mapping

    settings = settings_from_mapping({"DATABASE_URL": "sqlite:///x.db", "PICMETRIC_MAX_PIXELS": 1000, "section": {}})
    assert settings.resolved_database_url == "sqlite:///x.db" and settings.max_pixels == 1000


def test_migrations_build_exactly_the_schema_the_code_uses(empty_database_url):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from picmetric.storage.schema import Base

    engine = make_engine(empty_database_url)
    upgrade(engine)
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    engine.dispose()


def test_file_names_with_control_characters_are_stored_cleaned(service, zidane_path):
    """PostgreSQL refuses NUL in text: a name as a client sent it must never turn an upload into an error."""
    stored = service.submit(zidane_path.read_bytes(), name="zi\x00da\nne.jpg")
    assert stored.analysis.name == "zidane.jpg"
    assert service.get(stored.sha256).analysis.name == "zidane.jpg"


def test_a_fresh_deployment_creates_its_bucket(seaweed, tmp_path, analyzer, zidane_path):
    settings = s3_settings(seaweed, tmp_path, bucket=f"fresh-{uuid.uuid4().hex[:12]}")
    service = AnalysisService(settings, analyzer=analyzer)
    assert service._repository.health()["storage"] == "ok"
    assert service.submit(zidane_path.read_bytes()).status == "done"


def test_a_missing_bucket_is_named_when_it_may_not_be_created(seaweed, tmp_path, analyzer, zidane_path):
    bucket = f"absent-{uuid.uuid4().hex[:12]}"
    service = AnalysisService(s3_settings(seaweed, tmp_path, bucket=bucket, s3_create_bucket=False), analyzer=analyzer)
    health = service._repository.health()["storage"]
    assert f"bucket {bucket!r} does not exist" in health and "PICMETRIC_S3_CREATE_BUCKET" in health
    with pytest.raises(StorageError, match=f"bucket {bucket!r} does not exist"):
        service.submit(zidane_path.read_bytes())


def test_sweep_during_an_upload_keeps_the_blobs_its_rows_will_point_to(service, zidane_path, analyzer):
    """An upload writes its blobs first and its rows after the models ran: a sweep in between must not take them."""
    swept: list[list[str]] = []
    original_analyze = analyzer.analyze

    def analyze_then_sweep(image, options=None, **kwargs):  # the moment between blob write and row write
        swept.append(service._repository.sweep_orphans())
        return original_analyze(image, options, **kwargs)

    analyzer.analyze = analyze_then_sweep
    try:
        stored = service.submit(zidane_path.read_bytes())
    finally:
        del analyzer.analyze
    assert swept == [[]]
    for key in stored.blob_keys.values():
        assert service._repository.blobs.get(key)  # every row points to a blob that exists


def test_a_blob_missing_from_the_store_is_missing_not_an_outage(service, zidane_path):
    from picmetric.errors import MissingBlobError

    stored = service.submit(zidane_path.read_bytes())
    key = service.image(stored.sha256, "faces").etag.strip('"')  # drawn and kept; its tag names its blob
    service._repository.blobs.delete(key)  # removed behind PicMetric's back
    with pytest.raises(MissingBlobError, match="missing") as refused:
        _ = service.image(stored.sha256, "faces").content
    assert not refused.value.retryable and status_of(type(refused.value)) == 410


def test_a_delete_racing_an_upload_leaves_nothing_and_answers_cleanly(service, zidane_path, analyzer):
    """DELETE of an image while it is being analysed: the upload gets a clear 409, no row or blob dangles."""
    from picmetric.storage import ImageDeletedError

    sha = load_image(zidane_path).sha256
    original_analyze = analyzer.analyze

    def delete_then_analyze(image, options=None, **kwargs):  # the DELETE lands while the models run
        assert service._repository.delete(sha)
        return original_analyze(image, options, **kwargs)

    analyzer.analyze = delete_then_analyze
    try:
        with pytest.raises(ImageDeletedError, match="deleted while it was being analysed") as refused:
            service.submit(zidane_path.read_bytes())
    finally:
        del analyzer.analyze
    assert status_of(type(refused.value)) == 409  # the API's answer to it
    assert service.get(sha) is None and service._repository.stats()["images"] == 0
    assert service._repository.blobs.keys() == []
    assert service.submit(zidane_path.read_bytes()).status == "done"  # sending it again works


# --- claims across processes: a live holder is waited for, a dead one is taken over within its lease -------------


def _plain_settings(settings: Settings) -> dict:
    """Settings as plain values a spawned process can rebuild (secrets included)."""
    values = settings.model_dump()
    return {k: v.get_secret_value() if hasattr(v, "get_secret_value") else v for k, v in values.items()}


def _hold_claim_then_die(values: dict, photo: bytes, hold_s: float, ready) -> None:
    """A worker that claims the analysis, renews its claim for ``hold_s`` seconds and then is killed mid-job."""
    import os

    from picmetric.storage.blobs import original_key

    settings = Settings(**values)
    repository = Repository(settings, migrate=False)
    image = load_image(photo)
    image_id = repository.ensure_image(image.facts, original_key(image.sha256, "image/jpeg"), "image/jpeg")
    options = AnalysisOptions()
    key = options_key(options, Analyzer(settings).model_identity(options))  # the key the service's submit uses
    analysis_id = repository.claim(image_id, key, options.to_dict())
    assert analysis_id is not None
    with repository.heartbeat(analysis_id):
        ready.set()
        time.sleep(hold_s)
    os._exit(9)  # no undo, no cleanup: as SIGKILL would leave it


@pytest.mark.parametrize("backend", ["sqlite-local", "postgres-s3"])
def test_a_live_claim_in_another_process_is_waited_for_and_a_dead_one_taken_over(request, tmp_path, analyzer, backend):
    if backend == "sqlite-local":
        settings = Settings(data_dir=tmp_path, claim_lease_s=1.0)
    else:
        seaweed, postgres = request.getfixturevalue("seaweed"), request.getfixturevalue("postgres")
        settings = s3_settings(seaweed, tmp_path, database_url=postgres.url, claim_lease_s=1.0)
    service = AnalysisService(settings, analyzer=analyzer)
    service._repository.reset()
    photo = imagenet_samples()[3][0].read_bytes()
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    holder = context.Process(target=_hold_claim_then_die, args=(_plain_settings(settings), photo, 3.0, ready))
    holder.start()
    try:
        assert ready.wait(60), "the holder did not claim"
        started, calls = time.monotonic(), analyzer.calls
        stored = service.submit(photo)  # waits while the holder renews, takes over once its lease lapses
        waited = time.monotonic() - started
    finally:
        holder.join(30)
    assert holder.exitcode == 9
    assert stored.status == "done" and analyzer.calls == calls + 1
    assert 1.5 < waited < 3.0 + 1.0 + 5.0, waited  # not before the holder died; within its lease after that
    assert service._repository.stats()["analyses"] == 1
    service._repository.engine.dispose()


def test_one_requests_undo_keeps_blobs_another_analysis_of_the_image_may_share(service, zidane_path, analyzer):
    """Two analyses of one image with other options share its original, thumbnail and often renders (same
    content, same key): when one fails, its undo must not delete them under the other, still in flight."""
    photo = zidane_path.read_bytes()
    other_started, other_may_finish = threading.Event(), threading.Event()
    original_analyze = analyzer.analyze

    def hold_the_other(image, options=None, **kwargs):
        if options is not None and options.classifier == "mobilenet_v2":  # the other request: stays in flight
            other_started.set()
            assert other_may_finish.wait(60)
        return original_analyze(image, options, **kwargs)

    analyzer.analyze = hold_the_other
    try:
        with ThreadPoolExecutor(1) as pool:
            other = pool.submit(service.submit, photo, options=AnalysisOptions(classifier="mobilenet_v2"))
            assert other_started.wait(60)
            failing_write = DatabaseError("the database could not store the results (simulated)")
            service._repository.complete = lambda *args: (_ for _ in ()).throw(failing_write)  # type: ignore  # fails
            try:
                with pytest.raises(DatabaseError, match="simulated"):
                    service.submit(photo)
            finally:
                del service._repository.complete
            kept = service._repository.blobs.keys()
            assert any(key.startswith("originals/") for key in kept) and len(kept) >= 2  # original and renders stay
            other_may_finish.set()
            finished = other.result(timeout=120)
    finally:
        del analyzer.analyze
    assert finished.status == "done"
    for key in finished.blob_keys.values():
        assert service._repository.blobs.get(key)


def test_a_sweep_keeps_the_staged_upload_of_a_queued_job(service, zidane_path):
    """A job waiting in the broker for an hour still finds its upload: the sweep knows job rows."""
    from picmetric.storage import NewJob

    repository = service._repository
    _, (job_id,) = repository.create_jobs(
        [NewJob(source="upload", options=AnalysisOptions().to_dict(), input_key="incoming/queued")], batch=False
    )
    repository.blobs.put("incoming/queued", zidane_path.read_bytes(), "application/octet-stream")
    repository.blobs.put("incoming/abandoned", b"left by a crash", "application/octet-stream")
    assert repository.sweep_orphans(min_age_s=0) == ["incoming/abandoned"]
    repository.finish_job(job_id, sha256=None, error="stopped", error_kind="DatabaseError")
    assert not repository.blobs.exists("incoming/queued")  # a finished job's staged upload goes with it


def test_a_reset_during_an_upload_leaves_no_row_pointing_to_a_deleted_blob(service, zidane_path, analyzer):
    """Reset removes every row and then every blob; an upload in flight must not write rows afterwards that point
    to the blobs reset just removed: it is answered 409 and leaves nothing."""
    from picmetric.storage import ImageDeletedError

    original_analyze = analyzer.analyze

    def reset_then_analyze(image, options=None, **kwargs):  # the reset lands while the models run
        service._repository.reset()
        return original_analyze(image, options, **kwargs)

    analyzer.analyze = reset_then_analyze
    try:
        with pytest.raises(ImageDeletedError):
            service.submit(zidane_path.read_bytes())
    finally:
        del analyzer.analyze
    assert service._repository.stats()["images"] == 0 and service._repository.blobs.keys() == []
    assert service.submit(zidane_path.read_bytes()).status == "done"


def test_board_limits_count_by_device_and_by_address(service, zidane_path, bus_path, monkeypatch):
    """A phone's limits hold whichever tab or cookie it sends from: a second device key at the same address waits
    like the first; another address does not; a cookie is this server's only when its signature is."""
    from picmetric.errors import ServerBusyError
    from picmetric.service import board as board_module
    from picmetric.service.board import ClassBoard

    boards = ClassBoard(service)
    board = boards.start("limits")
    boards.send(board.id, zidane_path.read_bytes(), "a" * 16, address="192.0.2.7")
    with pytest.raises(ServerBusyError, match="one photo every 5 seconds"):
        boards.send(board.id, bus_path.read_bytes(), "b" * 16, address="192.0.2.7")  # a new tab's new key
    boards.send(board.id, bus_path.read_bytes(), "c" * 16, address="192.0.2.8")  # another phone
    monkeypatch.setattr(board_module, "PHONE_PAUSE_S", 0.0)
    monkeypatch.setattr(board_module, "PHONE_MAX_PHOTOS", 1)
    with pytest.raises(PicMetricError, match="has sent 1 photos"):
        boards.send(board.id, bus_path.read_bytes(), "d" * 16, address="192.0.2.8")
    device = boards.new_device()
    token = boards.device_token(device)
    assert boards.device_of(token) == device and ClassBoard(service).device_of(token) == device  # kept in a file
    tampered = token[:-1] + ("1" if token.endswith("0") else "0")
    for forged in (f"{'e' * 16}.{token.split('.')[1]}", tampered, "", None, device, f"{device}.{'0' * 32}"):
        assert boards.device_of(forged) is None, forged
