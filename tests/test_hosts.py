"""PicMetric across hosts: the API, two workers, PostgreSQL, SeaweedFS S3 and Redis each on a host of its own
(network namespaces joined by ``tests/hostnet.py``'s switch), every link 20 ms +- 5 ms apart, with loss, cuts and
a worker host that dies. Each scenario sends photos and has them in flight when its fault begins; every one asserts
that every job is done within 120 s of the heal, each image analysed once, no blob missing or orphaned and no staged
upload left, and prints what it took."""

from __future__ import annotations

import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from picmetric.service.analyses import AnalysisService

from .conftest import photo_variants
from .hostnet import Deployment
from .stack import Stack, batch_through_fault

RTT_MS, JITTER_MS = 20.0, 5.0
RECOVERY_S = 120.0
CUT_S = 30.0
PHOTOS = 16  # per scenario, none shared with another


class HostStack(Stack):
    deployment: Deployment


@pytest.fixture(scope="module")
def hosts(tmp_path_factory, analyzer):
    # timeouts as a deployment across a network would set them (docs/deployment.md)
    deployment = Deployment(
        tmp_path_factory.mktemp("hosts"), workers=2, db_timeout_s=5.0, broker_timeout_s=3.0, s3_timeout_s=8.0
    )
    service = AnalysisService(deployment.settings, analyzer=analyzer)  # the schema, made once, before anyone
    try:
        deployment.start_api()
        for worker in deployment.workers:
            deployment.start_worker(worker)
        client = httpx.Client(base_url=deployment.api_url, timeout=180)
        stack = HostStack(deployment.settings, service, client, deployment.log_dir)
        stack.deployment = deployment
        stack.wait_for_workers(len(deployment.workers))
        deployment.network.shape(RTT_MS, JITTER_MS)
        yield stack
        client.close()
    finally:
        service._repository.engine.dispose()
        deployment.close()


def _photos(scenario: int) -> list[bytes]:
    return photo_variants(PHOTOS * (scenario + 1))[PHOTOS * scenario :]


def _host_of(deployment: Deployment, job) -> str:
    """The host whose worker process ran ``job`` (its row names host:pid)."""
    pid = int(job.worker.rsplit(":", 1)[1])
    for host in deployment.workers:
        for process in deployment.network.processes[host]:
            try:
                if os.getpgid(pid) == process.pid:
                    return host
            except ProcessLookupError:
                continue
    raise AssertionError(f"no worker host runs pid {pid}")


def _cut_for(deployment: Deployment, a_of, b: str):
    """A fault and its heal: the host ``a_of(victim)`` cut from ``b`` (both directions)."""
    cut: list[str] = []

    def fault(victim) -> None:
        cut.append(a_of(victim))
        deployment.network.cut(cut[0], b)

    return fault, lambda: deployment.network.heal(cut[0], b)


def test_every_link_is_20_ms_apart(hosts):
    deployment: Deployment = hosts.deployment
    taken = deployment.network.round_trip_ms("pg", Deployment.PORTS["pg"])
    print(f"HOSTS round trip client -> pg: median {statistics.median(taken):.1f} ms, "
          f"{min(taken):.1f}-{max(taken):.1f} ms")  # fmt: skip
    assert RTT_MS - JITTER_MS - 1 <= statistics.median(taken) <= RTT_MS + JITTER_MS + 3


def test_photos_in_flight_over_20_ms_links_with_synchronous_uploads_beside(hosts):
    photos = _photos(0)
    with ThreadPoolExecutor(4) as pool:
        waits = [
            pool.submit(hosts.client.post, "/api/v1/analyses", params={"wait": "true"},
                        files={"file": (f"sync{i}.jpg", photo, "image/jpeg")})
            for i, photo in enumerate(photo_variants(PHOTOS * 8)[-4:])
        ]  # fmt: skip
        batch_through_fault(hosts, "20ms", photos, lambda _: None, lambda: None, fault_s=0, recovery_s=RECOVERY_S)
        for answer in waits:
            assert answer.result().status_code in (200, 201), answer.result().text


def test_2_percent_loss_on_every_link(hosts):
    network = hosts.deployment.network
    network.shape(RTT_MS, JITTER_MS, loss=0.02)
    try:
        batch_through_fault(hosts, "loss", _photos(1), lambda _: None, lambda: None, fault_s=0,
                            recovery_s=RECOVERY_S)  # fmt: skip
        counts = network.shape(RTT_MS, JITTER_MS, loss=0.02)
        assert counts["lost"] > 0, counts
    finally:
        network.shape(RTT_MS, JITTER_MS)


def test_a_worker_cut_from_postgresql_for_30_s(hosts):
    deployment = hosts.deployment
    fault, heal = _cut_for(deployment, lambda victim: _host_of(deployment, victim), "pg")
    batch_through_fault(hosts, "worker-pg", _photos(2), fault, heal, fault_s=CUT_S, recovery_s=RECOVERY_S)


def test_a_worker_cut_from_redis_for_30_s(hosts):
    deployment = hosts.deployment
    fault, heal = _cut_for(deployment, lambda victim: _host_of(deployment, victim), "redis")
    batch_through_fault(hosts, "worker-redis", _photos(3), fault, heal, fault_s=CUT_S, recovery_s=RECOVERY_S)


def test_the_api_cut_from_redis_refuses_new_work_at_once_and_heals(hosts):
    deployment = hosts.deployment
    refused: list[float] = []

    def cut_then_submit(_victim) -> None:
        deployment.network.cut("api", "redis")
        started = time.monotonic()
        answer = hosts.client.post("/api/v1/analyses", params={"wait": "false"},
                                   files={"file": ("late.jpg", _photos(4)[-1], "image/jpeg")})  # fmt: skip
        refused.append(time.monotonic() - started)
        assert answer.status_code == 503, answer.text

    heal = lambda: deployment.network.heal("api", "redis")  # noqa: E731
    batch_through_fault(
        hosts, "api-redis", _photos(4)[:-1], cut_then_submit, heal, fault_s=CUT_S, recovery_s=RECOVERY_S
    )
    print(f"HOSTS api cut from redis: a new photo refused (503) in {refused[0]:.1f} s")
    # the broker's timeout, a publish retry and the refusal's own round trips
    assert refused[0] < 2 * hosts.settings.broker_timeout_s + 2
    answer = hosts.client.post("/api/v1/analyses", params={"wait": "true"},
                               files={"file": ("late.jpg", _photos(4)[-1], "image/jpeg")})  # fmt: skip
    assert answer.status_code in (200, 201), answer.text
    hosts.assert_store_consistent()


def test_the_api_cut_from_postgresql_or_s3_answers_503_within_its_timeout(hosts):
    """The limit is the documented timeout plus 2 s (a batch: plus 2 s more for sending its 16 photos and a retry's
    back-off); a batch's uploads go up 8 at once, and the rest are dropped at the first failure: still one timeout,
    not one per 8 photos. An upload the API sent into the cut may still reach the store once the link heals,
    after the 503: nothing names it, and ``picmetric db sweep`` removes it (checked here)."""
    deployment = hosts.deployment
    photos = _photos(5)
    batch = [("files", (f"{i}.jpg", data, "image/jpeg")) for i, data in enumerate(photos)]
    for server, limit_s, request in (
        ("pg", hosts.settings.db_timeout_s + 2, lambda: hosts.client.get("/api/v1/analyses")),
        ("s3", hosts.settings.s3_timeout_s + 2,
         lambda: hosts.client.post("/api/v1/analyses", files={"file": ("s3.jpg", photos[0], "image/jpeg")})),
        ("s3", hosts.settings.s3_timeout_s + 4, lambda: hosts.client.post("/api/v1/batches", files=batch)),
    ):  # fmt: skip
        deployment.network.cut("api", server)
        started = time.monotonic()
        try:
            answer = request()
        finally:
            deployment.network.heal("api", server)
        took = time.monotonic() - started
        print(f"HOSTS api cut from {server}: 503 in {took:.1f} s (limit {limit_s:.0f} s)")
        assert answer.status_code == 503, answer.text
        assert took < limit_s
    time.sleep(3)  # what the cut held back arrives
    late = hosts.repository.sweep_orphans(min_age_s=0)
    print(f"HOSTS api cut from s3: {len(late)} refused uploads reached the store after the heal; swept")
    assert all(key.startswith("incoming/") for key in late), late
    answer = hosts.client.post("/api/v1/analyses", files={"file": ("s3.jpg", photos[0], "image/jpeg")})
    assert answer.status_code in (200, 201), answer.text
    hosts.assert_store_consistent()


def test_a_worker_host_powered_off_for_good(hosts):
    """Last: the host never comes back. Its jobs lapse (job lease) and the other worker takes them."""
    deployment = hosts.deployment
    gone: list[str] = []

    def power_off(victim) -> None:
        gone.append(_host_of(deployment, victim))
        deployment.network.power_off(gone[0])

    batch_through_fault(hosts, "power-off", _photos(6), power_off, lambda: None, fault_s=0, recovery_s=RECOVERY_S)
