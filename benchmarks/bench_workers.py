"""Throughput of the job queue: N photos through Celery workers in several configurations, with today's code and
(``--before-tree``) another checkout's workers in the same run. Prints a table; asserts nothing.

    git worktree add /tmp/picmetric-before <commit>      # the code to compare with (same database schema)
    .venv/bin/python benchmarks/bench_workers.py [--photos 200] [--before-tree /tmp/picmetric-before]
                                                 [--broker-url redis://127.0.0.1:6379/0] [--database-url postgresql://...]

Configurations: one worker process running 2 jobs side by side (the default), two processes of one job and one
ONNX Runtime thread each, jobs whose models run one after another (``PICMETRIC_ANALYSIS_THREADS=1``), and batch
inference across the jobs in one worker (``PICMETRIC_INFERENCE_BATCH`` 4 and 8, with as many jobs side by side).
Workers are started and their models loaded before the clock starts. Without --database-url a throwaway PostgreSQL
database is created on 127.0.0.1:5432 (trust auth) and dropped. Blobs go to a local folder every process on this
machine shares. Latency per job: from submission to its end (queue wait + run), and the run alone.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_history import photos  # noqa: E402
from picmetric.core.analyzer import Analyzer  # noqa: E402
from picmetric.service.analyses import AnalysisService  # noqa: E402
from picmetric.service.jobs import CeleryQueue, JobInput, JobService  # noqa: E402
from picmetric.service.types import Job  # noqa: E402
from picmetric.settings import Settings  # noqa: E402


def throwaway_database() -> tuple[str, Callable[[], None]]:
    import psycopg2

    name = f"picmetric_bench_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres")
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()

    return f"postgresql://postgres@127.0.0.1:5432/{name}", drop


def run_batch(jobs: JobService, data: list[bytes]) -> tuple[float, list[Job]]:
    jobs._repository.reset()
    started = time.perf_counter()
    batch_id, _ = jobs.submit([JobInput(source="upload", name=f"{i}.jpg", data=d) for i, d in enumerate(data)],
                              batch=True)  # fmt: skip
    assert batch_id is not None
    while True:
        records = jobs.batch(batch_id) or []
        if all(job.state in ("done", "failed") for job in records):
            return time.perf_counter() - started, records
        time.sleep(0.1)


@dataclass(frozen=True)
class WorkerSetup:
    """How to start the workers of one row: processes, jobs per process, and settings for each."""

    name: str
    processes: int = 1
    threads: int = 2
    environment: tuple[tuple[str, str], ...] = ()
    tree: Path | None = None  # another checkout's code; None: this one


def start_workers(setup: WorkerSetup, settings: Settings, log_dir: Path) -> list[subprocess.Popen]:
    env = {
        **os.environ,
        "PICMETRIC_DATABASE_URL": settings.resolved_database_url,
        "PICMETRIC_DATA_DIR": str(settings.data_dir),
        "PICMETRIC_BROKER_URL": settings.broker_url.get_secret_value() if settings.broker_url else "",
        "PICMETRIC_JOB_QUEUE": settings.job_queue,
        **dict(setup.environment),
    }
    if setup.tree is not None:
        env["PYTHONPATH"] = str(setup.tree)  # ahead of the editable install: that checkout's picmetric runs
    workers = []
    for i in range(setup.processes):
        log = open(log_dir / f"worker-{i}.log", "ab")  # noqa: SIM115 (open while the worker runs)
        workers.append(
            subprocess.Popen(
                [sys.executable, "-m", "picmetric", "worker", f"--threads={setup.threads}", "--log-level=warning"],
                env=env,
                cwd=setup.tree or ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        )
    queue = CeleryQueue(settings)
    deadline = time.monotonic() + 300
    while len(queue.status(ping_workers=True).workers) < setup.processes:
        assert time.monotonic() < deadline, f"workers did not start; see {log_dir}"
    return workers


def stop(workers: list[subprocess.Popen]) -> None:
    for worker in workers:
        os.killpg(worker.pid, signal.SIGTERM)
    for worker in workers:
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)


def row(name: str, seconds: float, records: list[Job]) -> str:
    done = [j for j in records if j.state == "done" and j.finished_at]
    total = sorted((j.finished_at - j.created_at).total_seconds() * 1000 for j in done)  # type: ignore[operator]
    runs = sorted(
        (j.finished_at - j.started_at).total_seconds() * 1000  # type: ignore[operator]
        for j in done
        if j.started_at
    )
    q = lambda values, p: values[min(len(values) - 1, int(p * len(values)))] if values else float("nan")  # noqa: E731
    failed = len(records) - len(done)
    return (
        f"| {name:44s} | {len(records) / seconds:8.2f} | {q(total, 0.5):8.0f} | {q(total, 0.95):8.0f} "
        f"| {statistics.median(runs) if runs else float('nan'):7.0f} | {q(runs, 0.95):7.0f} | {failed:6d} |"
    )


def setups(cores: int, before: Path | None) -> list[WorkerSetup]:
    one_thread = (("PICMETRIC_INTRA_OP_THREADS", "1"),)
    rows = []
    if before is not None:
        rows += [
            WorkerSetup("before: 1 process x 2 jobs (its default)", tree=before),
            WorkerSetup(f"before: {cores} processes x 1 job x 1 ORT thread", cores, 1, one_thread, before),
        ]
    return [
        *rows,
        WorkerSetup("now: 1 process x 2 jobs (the default)"),
        WorkerSetup(f"now: {cores} processes x 1 job x 1 ORT thread", cores, 1, one_thread),
        WorkerSetup("now: 1 process x 2 jobs, models in turn", environment=(("PICMETRIC_ANALYSIS_THREADS", "1"),)),
        *(
            WorkerSetup(
                f"now: 1 process x {n} jobs, batches of up to {n}",
                threads=n,
                environment=(("PICMETRIC_INFERENCE_BATCH", str(n)),),
            )
            for n in (4, 8)
        ),  # fmt: skip
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--photos", type=int, default=200)
    parser.add_argument("--broker-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--database-url")
    parser.add_argument("--before-tree", type=Path, help="a checkout whose workers run the 'before' rows")
    args = parser.parse_args()
    cores = os.cpu_count() or 2
    database_url, drop = (args.database_url, lambda: None) if args.database_url else throwaway_database()
    data = photos(args.photos, side=640, exact=True)
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        base = {"data_dir": Path(tmp), "database_url": database_url, "job_queue": f"bench-{uuid.uuid4().hex[:8]}"}
        try:
            queued = Settings(**base, broker_url=args.broker_url)
            publisher = JobService(AnalysisService(queued, analyzer=Analyzer(queued)))
            for setup in setups(cores, args.before_tree):
                workers = start_workers(setup, queued, Path(tmp))
                try:
                    seconds, records = run_batch(publisher, data)
                finally:
                    stop(workers)
                lines.append(row(setup.name, seconds, records))
                print(lines[-1], flush=True)
        finally:
            drop()
    print(f"\n{args.photos} photos (640 px, all three models, stored in PostgreSQL + a local folder), {cores} cores")
    print(f"| {'configuration':44s} | photos/s | p50 ms   | p95 ms   | run p50 | run p95 | failed |")
    print(f"|{'-' * 46}|----------|----------|----------|---------|---------|--------|")
    print("\n".join(lines))
    print("p50/p95: submission to end of job (all queued at once, so mostly queue wait); run: the job itself.")


if __name__ == "__main__":
    main()
