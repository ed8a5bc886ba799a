"""Jobs on real Celery workers: two ``picmetric worker`` processes, a real broker (a private Redis with an
append-only file, and the machine's RabbitMQ), PostgreSQL and SeaweedFS S3, the API in front.

What must hold under faults: every image analysed exactly once, no row pointing to a missing blob and no blob
without a row, a killed worker's job finished by the other, a broker restart answered with 503s and then
recovered without restarting anything."""

from __future__ import annotations

import io
import random
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from PIL import Image
from sqlalchemy import select

from picmetric.interfaces.api import create_app
from picmetric.service.analyses import AnalysisService
from picmetric.service.jobs import CeleryQueue, celery_app
from picmetric.settings import Settings
from picmetric.storage.schema import AnalysisRow, ImageRow, JobRow

from .conftest import photo_variants, s3_settings
from .services import ApiServer, FaultyProxy, PostgresDatabase, WorkerProcess, free_port, wait_for_http
from .stack import Stack, batch_through_fault, deployment_environment

LEASE_S = 3.0
JOB_LEASE_S = 6.0


def _stack(tmp_path_factory, analyzer, seaweed, broker_url: str, workers: int, *, fast: bool = True, proxy=False):
    """The stack on its own database and bucket; ``fast``: short claim and job leases (else the
    defaults); ``proxy``: PostgreSQL reached through a FaultyProxy (``stack.proxy``) that can cut or stall it."""
    database = PostgresDatabase()
    tmp = tmp_path_factory.mktemp("stack")
    faulty = FaultyProxy("127.0.0.1", 5432) if proxy else None
    url = database.url if faulty is None else database.url.replace(":5432/", f":{faulty.port}/")
    quick = {"claim_lease_s": LEASE_S, "job_lease_s": JOB_LEASE_S} if fast else {}
    settings = s3_settings(
        seaweed, tmp, bucket=f"jobs-{uuid.uuid4().hex[:10]}", database_url=url, broker_url=broker_url,
        job_queue=f"picmetric-test-{uuid.uuid4().hex[:8]}", broker_timeout_s=2.0, **quick,
    )  # fmt: skip
    service = AnalysisService(settings, analyzer=analyzer)
    with ApiServer(create_app(settings, service)) as api_url, httpx.Client(base_url=api_url, timeout=180) as client:
        stack = Stack(settings, service, client, tmp)
        stack.proxy = faulty
        for _ in range(workers):
            stack.start_worker()
        try:
            stack.wait_for_workers(workers)
            yield stack
        finally:
            stack.stop()
            service._repository.engine.dispose()
            if faulty is not None:
                faulty.close()
            _delete_queue(settings)
            seaweed.drop_bucket(settings.s3_bucket)
            database.drop()


def _delete_queue(settings: Settings) -> None:
    """Tests leave no queue of theirs in the broker (RabbitMQ keeps declared queues for good)."""
    with celery_app(settings).connection_for_write() as connection:
        connection.default_channel.queue_delete(settings.job_queue)


@pytest.fixture(scope="module")
def redis_stack(tmp_path_factory, analyzer, seaweed, redis_broker):
    yield from _stack(tmp_path_factory, analyzer, seaweed, redis_broker.url, workers=2)


@pytest.fixture(scope="module")
def rabbit_stack(tmp_path_factory, analyzer, seaweed):
    yield from _stack(tmp_path_factory, analyzer, seaweed, "amqp://guest:guest@127.0.0.1:5672//", workers=2)


def _submit(client: httpx.Client, photo: bytes, name: str, wait: bool) -> tuple[str, int]:
    """One submission; the job id (asynchronous) or the image's sha256 (synchronous), and the status."""
    response = client.post(
        "/api/v1/analyses", params={"wait": str(wait).lower()}, files={"file": (name, photo, "image/jpeg")}
    )
    if response.status_code == 202:
        return response.json()["job"], 202
    assert response.status_code in (200, 201), response.text
    return response.json()["analysis"]["image"]["sha256"], response.status_code


def _exactly_once(stack: Stack, submissions: int, distinct: int) -> None:
    photos = photo_variants(distinct)
    order = [i % distinct for i in range(submissions)]
    random.Random(8).shuffle(order)
    with ThreadPoolExecutor(8) as pool:
        answers = list(
            pool.map(
                lambda n: _submit(stack.client, photos[order[n]], f"p{order[n]}.jpg", wait=n % 2 == 0),
                range(submissions),
            )  # fmt: skip
        )
    for job_id, status in answers:
        if status != 202:
            continue
        deadline = time.monotonic() + 180
        while (job := stack.client.get(f"/api/v1/jobs/{job_id}").json())["state"] in ("queued", "running"):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert job["state"] == "done" and job["result"]["status"] == "done", job
    assert stack.count(JobRow.id) == submissions
    assert stack.count(JobRow.id, JobRow.state == "done") == submissions
    assert stack.count(ImageRow.id) == distinct
    assert stack.count(AnalysisRow.id, AnalysisRow.status == "done") == distinct
    # the models ran once per image: exactly one job per image analysed it, every other found it stored
    assert stack.count(JobRow.id, JobRow.cached.is_(False)) == distinct
    with stack.repository.engine.connect() as connection:
        analysed = list(connection.scalars(select(JobRow.sha256).where(JobRow.cached.is_(False))))
    assert len(set(analysed)) == distinct
    stack.assert_store_consistent()


def test_a_hundred_submissions_on_two_redis_workers_analyse_each_image_once(redis_stack):
    _exactly_once(redis_stack, submissions=100, distinct=40)
    workers = {w for w in _job_workers(redis_stack)}
    assert len({w.rsplit(":", 1)[1] for w in workers}) >= 2, "both workers took jobs"


def test_rabbitmq_works_the_same(rabbit_stack):
    _exactly_once(rabbit_stack, submissions=30, distinct=12)


def _job_workers(stack: Stack) -> set[str]:
    with stack.repository.engine.connect() as connection:
        return {w for w in connection.scalars(select(JobRow.worker)) if w}


def _big_photos(count: int) -> list[bytes]:
    """Large photos (decoding and rendering take a while): a job is caught while it runs."""
    out = []
    for i, data in enumerate(photo_variants(count)):
        image = Image.open(io.BytesIO(data)).resize((3200 + 16 * i, 2400), Image.Resampling.BICUBIC)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=92)
        out.append(buffer.getvalue())
    return out


def test_the_dashboard_queues_a_batch_for_the_workers_and_shows_them(redis_stack, monkeypatch, bus_path):
    from streamlit.testing.v1 import AppTest

    from .test_dashboard import APP

    for name, value in deployment_environment(redis_stack.settings).items():
        monkeypatch.setenv(name, value)
    app = AppTest.from_file(APP, default_timeout=120)
    app.run()
    photos = [
        ("b1.jpg", photo_variants(60)[55]),
        ("b2.jpg", photo_variants(60)[56]),
        ("bus.jpg", bus_path.read_bytes()),
    ]
    app.file_uploader[0].set_value([(name, data, "image/jpeg") for name, data in photos])
    app.run()
    assert not app.exception
    batch_id = app.session_state["batch"]
    answer = redis_stack.wait_for_batch(batch_id)
    assert answer["counts"]["done"] == 3
    assert {j.worker for j in redis_stack.repository.batch(batch_id) or []} - {None}  # run by the workers
    app.run()
    assert list(app.dataframe[0].value["state"]) == ["analysed", "analysed", "analysed"]
    app.switch_page("pages/system.py").run()
    assert any("Broker: ok · redis://127.0.0.1" in note.value for note in app.success)
    assert sum("picmetric-" in c.value for c in app.caption) == 1  # the workers that answered a ping
    log = next(block.value for block in app.code if "worker ready" in block.value)  # shipped through the database
    pids = {int(line.rsplit(":", 1)[1].rstrip("]")) for line in log.splitlines() if "worker ready" in line}
    assert any(worker.owns(pid) for worker in redis_stack.workers for pid in pids), log


def test_the_cli_sends_a_folder_to_the_workers_and_follows_it(redis_stack, tmp_path):
    """`picmetric analyze DIR --store` with a broker: one batch, run by the workers, followed to the end."""
    import json
    import os
    import subprocess
    import sys

    folder = tmp_path / "class" / "day1"
    folder.mkdir(parents=True)
    for i, data in enumerate(photo_variants(64)[61:64]):
        (folder / f"cli{i}.jpg").write_bytes(data)
    result = subprocess.run(
        [sys.executable, "-m", "picmetric", "analyze", str(tmp_path / "class"), "--store", "--json"],
        env={**os.environ, **deployment_environment(redis_stack.settings)}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    answers = json.loads(result.stdout)
    assert [a["input"].rsplit("/", 1)[1] for a in answers] == ["cli0.jpg", "cli1.jpg", "cli2.jpg"]
    assert all(a["faces"] is not None for a in answers) and "image/s" in result.stderr  # the progress bar
    with redis_stack.repository.engine.connect() as connection:
        runners = set(
            connection.scalars(select(JobRow.worker).where(JobRow.name.in_(["cli0.jpg", "cli1.jpg", "cli2.jpg"])))
        )
    pids = [int(w.rsplit(":", 1)[1]) for w in runners if w]
    assert pids and all(any(worker.owns(pid) for worker in redis_stack.workers) for pid in pids)  # not the CLI


def test_a_broker_restart_mid_batch_answers_503_then_recovers(redis_stack, redis_broker):
    photos = photo_variants(52)[40:52]
    files = [("files", (f"r{i}.jpg", data, "image/jpeg")) for i, data in enumerate(photos)]
    batch_id = redis_stack.client.post("/api/v1/batches", files=files).json()["batch"]
    time.sleep(0.5)
    redis_broker.kill()
    try:
        refused = redis_stack.client.post(
            "/api/v1/analyses", params={"wait": "false"}, files={"file": ("x.jpg", photos[0], "image/jpeg")}
        )
        assert refused.status_code == 503 and "job queue" in refused.json()["detail"]
        ready = redis_stack.client.get("/readyz")
        assert ready.status_code == 503 and "unreachable" in ready.json()["checks"]["broker"]
        assert "picmetric_broker_up 0.0" in redis_stack.client.get("/metrics").text
    finally:
        redis_broker.start()
    answer = redis_stack.wait_for_batch(batch_id, timeout_s=JOB_LEASE_S + 180)
    for item in answer["items"]:  # completes, or says clearly why not
        assert item["state"] == "done" or item["error"], item
    assert answer["counts"]["done"] >= 1
    again = redis_stack.client.post(
        "/api/v1/analyses", files={"file": ("again.jpg", photo_variants(53)[52], "image/jpeg")}
    )  # the API recovered without a restart, and so did the workers
    assert again.status_code == 201, again.text
    assert redis_stack.client.get("/readyz").status_code == 200
    redis_stack.assert_store_consistent()


# -- faults with the default settings: every job ends done within 60 s after the fault ends -----------------------

RECOVERY_S = 60.0


@pytest.fixture(scope="module")
def healing_stack(tmp_path_factory, analyzer, seaweed, redis_broker):
    """Two workers on the default job and claim leases; PostgreSQL behind a proxy."""
    yield from _stack(tmp_path_factory, analyzer, seaweed, redis_broker.url, workers=2, fast=False, proxy=True)


def test_a_worker_machine_dies_mid_job_and_the_other_finishes_it_within_the_lease(healing_stack):
    """SIGKILL of the whole worker (a machine gone): the job's lease lapses and it is sent again at once (nothing in
    Redis waits for an acknowledgement: workers take a message and forget it); the other worker finishes it."""
    stack = healing_stack
    killed: list[WorkerProcess] = []

    def kill(victim) -> None:
        pid = int(victim.worker.rsplit(":", 1)[1])
        killed.append(next(w for w in stack.workers if w.owns(pid)))
        killed[0].kill()

    victim, jobs = batch_through_fault(stack, "kill", _big_photos(4), kill, lambda: None, fault_s=0)
    finished = next(job for job in jobs if job.id == victim.id)
    assert finished.attempts == 2 and finished.worker != victim.worker
    stack.workers.remove(killed[0])
    stack.start_worker()
    stack.wait_for_workers(2)


def test_postgresql_cut_for_15_s_mid_batch_heals_without_a_restart(healing_stack):
    proxy = healing_stack.proxy
    assert proxy is not None
    batch_through_fault(healing_stack, "cut", photo_variants(24), lambda _: proxy.cut(), proxy.heal)


def test_postgresql_stalled_for_15_s_mid_batch_heals(healing_stack):
    proxy = healing_stack.proxy
    assert proxy is not None
    batch_through_fault(healing_stack, "stall", photo_variants(48)[24:], lambda _: proxy.stall(), proxy.heal)


def test_a_worker_killed_while_postgresql_is_down(healing_stack):
    stack = healing_stack
    proxy = stack.proxy
    assert proxy is not None
    killed: list[WorkerProcess] = []

    def cut_then_kill(victim) -> None:
        proxy.cut()
        pid = int(victim.worker.rsplit(":", 1)[1])
        killed.append(next(w for w in stack.workers if w.owns(pid)))
        killed[0].kill()

    batch_through_fault(stack, "cutkill", photo_variants(60)[48:], cut_then_kill, proxy.heal)
    stack.workers.remove(killed[0])
    stack.start_worker()
    stack.wait_for_workers(2)


def test_the_embedded_default_picks_up_a_batch_after_the_api_is_killed(tmp_path):
    """No broker: the API SIGKILLed mid-batch; started again, it sends the jobs the dead process held again."""
    import os
    import signal
    import subprocess
    import sys

    port = free_port()
    env = {**os.environ, "PICMETRIC_DATA_DIR": str(tmp_path), "PICMETRIC_INTRA_OP_THREADS": "1"}
    env.pop("PICMETRIC_BROKER_URL", None)

    def serve() -> subprocess.Popen:
        log = open(tmp_path / "api.log", "ab")  # noqa: SIM115 (open while the API runs)
        process = subprocess.Popen(
            [sys.executable, "-m", "picmetric", "serve", "--port", str(port), "--log-level", "warning"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        assert wait_for_http(f"http://127.0.0.1:{port}/readyz", 180), (tmp_path / "api.log").read_text()
        return process

    api = serve()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            photos = photo_variants(24)
            files = [("files", (f"k{i}.jpg", data, "image/jpeg")) for i, data in enumerate(photos)]
            batch_id = client.post("/api/v1/batches", files=files).json()["batch"]
            while client.get(f"/api/v1/batches/{batch_id}").json()["counts"]["done"] < 4:
                time.sleep(0.05)
            os.killpg(api.pid, signal.SIGKILL)
            api.wait(10)
            api = serve()
            restarted = time.monotonic()
            while not (answer := client.get(f"/api/v1/batches/{batch_id}").json())["finished"]:
                assert time.monotonic() - restarted < RECOVERY_S, answer["counts"]
                time.sleep(0.2)
            recovery_s = time.monotonic() - restarted
            assert answer["counts"] == {"queued": 0, "running": 0, "done": 24, "failed": 0}, answer
            assert not list((tmp_path / "blobs" / "incoming").glob("*")), "staged uploads left behind"
            print(f"FAULT in-process API killed: 24 done, recovery {recovery_s:.1f} s after the restart")
    finally:
        os.killpg(api.pid, signal.SIGKILL)
        api.wait(10)


def _one_photo() -> dict:
    return {"file": ("x.jpg", photo_variants(1)[0], "image/jpeg")}


def test_the_brokers_own_words_reach_the_admin_only(tmp_path, analyzer, redis_broker):
    """A Redis URL with a database index the server does not have: /readyz says why to the admin, not just
    'unreachable'; a visitor and a refused upload learn the broker's kind, never its address or its words."""
    address = redis_broker.url.rsplit("/", 1)[0].removeprefix("redis://")
    settings = Settings(data_dir=tmp_path, broker_url=f"redis://{address}/99", admin_token="the-admin-token")
    assert "DB index is out of range" in (CeleryQueue(settings).status().error or "")
    with ApiServer(create_app(settings, AnalysisService(settings, analyzer=analyzer))) as url:
        admin = httpx.get(f"{url}/readyz", headers={"Authorization": "Bearer the-admin-token"})
        visitor = httpx.get(f"{url}/readyz")
        refused = httpx.post(f"{url}/api/v1/analyses", params={"wait": "false"}, files=_one_photo())
    assert admin.status_code == 503 and "DB index is out of range" in admin.json()["checks"]["broker"]
    assert address in admin.json()["queue"]["broker"]
    assert visitor.status_code == 503 and visitor.json()["checks"]["broker"] == "redis: unreachable", visitor.text
    assert refused.status_code == 503 and "the job queue (redis) is unreachable" in refused.json()["detail"]
    for answer in (visitor, refused):
        assert address not in answer.text and "DB index" not in answer.text, answer.text
