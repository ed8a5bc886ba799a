"""What the job queue costs a synchronous caller: N clients posting photos to ``POST /api/v1/analyses`` (each
waits for its answer) for D seconds, against the API on the embedded in-process queue and against the API with
Redis and two ``picmetric worker`` processes (each running ``--worker-threads`` jobs at once). Prints a table;
asserts nothing.

    .venv/bin/python benchmarks/bench_queue.py [--seconds 60] [--clients 16] [--before REV] [--worker-threads 1,2]

Every configuration runs on the same machine with the same services: PostgreSQL (a throwaway database each),
SeaweedFS S3 (a bucket each, started here) and a private Redis. Workers get one ONNX Runtime thread each (two
processes on two cores). With ``--before REV`` the same configurations also run from a git worktree of REV, so a
change's before and after come from one run on one machine. CPU seconds are read from /proc for the API process
and for the workers (all their processes), over the measured window only.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_history import photos  # noqa: E402
from tests.services import PostgresDatabase, RedisServer, SeaweedS3, free_port, wait_for_http  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Outcome:
    name: str
    answered: int
    seconds: float
    latencies_ms: list[float]
    errors: int
    api_cpu_s: float
    workers_cpu_s: float

    def row(self) -> str:
        lat = sorted(self.latencies_ms) or [float("nan")]
        p90 = lat[min(len(lat) - 1, int(0.9 * len(lat)))]
        per_minute = 60 / self.seconds
        return (
            f"| {self.name:44s} | {self.answered / self.seconds:10.2f} | {statistics.median(lat):7.0f} | {p90:7.0f} "
            f"| {self.errors:6d} | {self.api_cpu_s * per_minute:13.1f} | {self.workers_cpu_s * per_minute:17.1f} |"
        )


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of these processes and all their descendants still alive."""
    seen: set[int] = set()
    total = 0.0
    stack = list(pids)
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / TICKS
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        stack += [int(child) for child in children]
    return total


def spawn(code: Path, args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "picmetric", *args], cwd=code, env={**env, "PYTHONPATH": str(code)},
        stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True,  # noqa: SIM115
    )  # fmt: skip


def stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def load(url: str, data: list[bytes], clients: int, seconds: float) -> tuple[int, float, list[float], int]:
    """``clients`` threads posting distinct photos until ``seconds`` pass; answers, time, latencies, errors."""
    lock = threading.Lock()
    next_photo = iter(range(len(data)))
    latencies: list[float] = []
    errors = [0]
    deadline = time.monotonic() + seconds

    def client() -> None:
        with httpx.Client(base_url=url, timeout=300) as http:
            while time.monotonic() < deadline:
                with lock:
                    i = next(next_photo, None)
                if i is None:  # every photo sent once (a new photo each time, never a stored one)
                    return
                started = time.monotonic()
                answer = http.post("/api/v1/analyses", files={"file": (f"{i}.jpg", data[i], "image/jpeg")})
                with lock:
                    if answer.status_code in (200, 201):
                        latencies.append((time.monotonic() - started) * 1000)
                    else:
                        errors[0] += 1

    started = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(latencies), time.monotonic() - started, latencies, errors[0]


def run(
    name: str, code: Path, env: dict[str, str], workers: int, threads: int, data: list[bytes], args, log_dir: Path
) -> Outcome:
    database = PostgresDatabase()
    env = {
        **env, "PICMETRIC_DATABASE_URL": database.url, "PICMETRIC_S3_BUCKET": f"bench-{uuid.uuid4().hex[:10]}",
        "PICMETRIC_JOB_QUEUE": f"bench-{uuid.uuid4().hex[:8]}", "PICMETRIC_DATA_DIR": str(log_dir),
    }  # fmt: skip
    if not workers:
        env.pop("PICMETRIC_BROKER_URL")
    port = free_port()
    slug = name.replace(" ", "-").replace(",", "")
    processes = [spawn(code, ["serve", "--port", str(port), "--log-level", "warning"], env, log_dir / f"{slug}.log")]
    worker_env = {**env, "PICMETRIC_INTRA_OP_THREADS": "1", "PICMETRIC_WORKER_THREADS": str(threads)}
    processes += [
        spawn(code, ["worker", "--concurrency=1", "--log-level=warning"], worker_env, log_dir / f"{slug}-w{i}.log")
        for i in range(workers)
    ]
    try:
        url = f"http://127.0.0.1:{port}"
        assert wait_for_http(f"{url}/readyz", 300), f"{name}: the API did not get ready; see {log_dir}"
        if workers:  # every worker warm: one photo each through the queue first
            load(url, data[-workers * 4 :], workers * 2, 10)
        api_before, workers_before = cpu_seconds([processes[0].pid]), cpu_seconds([p.pid for p in processes[1:]])
        answered, seconds, latencies, errors = load(url, data, args.clients, args.seconds)
        api_cpu = cpu_seconds([processes[0].pid]) - api_before
        workers_cpu = cpu_seconds([p.pid for p in processes[1:]]) - workers_before
    finally:
        stop(processes)
        database.drop()
    return Outcome(name, answered, seconds, latencies, errors, api_cpu, workers_cpu)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--before", help="also run a git revision's code (a worktree), for a before/after")
    parser.add_argument("--worker-threads", default="1,2", help="jobs per worker process to try (comma-separated)")
    args = parser.parse_args()
    data = photos(1200, side=640, exact=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        seaweed, redis = SeaweedS3(tmp_path / "weed"), RedisServer(tmp_path / "redis")
        seaweed.start()
        redis.start()
        env = {
            **os.environ, "PICMETRIC_S3_ENDPOINT_URL": seaweed.endpoint, "PICMETRIC_S3_ACCESS_KEY": "bench",
            "PICMETRIC_S3_SECRET_KEY": "bench-secret", "PICMETRIC_BROKER_URL": redis.url,
        }  # fmt: skip
        codes = [("now", ROOT)]
        if args.before:
            worktree = tmp_path / "before"
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(worktree), args.before],
                           check=True, capture_output=True)  # fmt: skip
            codes.insert(0, (args.before[:10], worktree))
        outcomes = []
        try:
            variants = [(0, 1)] + [(2, int(t)) for t in args.worker_threads.split(",")]
            for label, code in codes:
                for workers, threads in variants if code == ROOT else variants[:2]:  # older code: one job each
                    name = f"{label}: " + (f"Redis + {workers} workers x {threads} job(s)" if workers else "in-process")
                    outcomes.append(run(name, code, env, workers, threads, data, args, tmp_path))
                    print(outcomes[-1].row(), flush=True)
        finally:
            seaweed.stop()
            redis.kill()
            if args.before:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tmp_path / "before")])
    print(f"\n{args.clients} synchronous clients for {args.seconds:.0f} s, distinct 640 px photos, all three models;")
    print(f"PostgreSQL + SeaweedFS S3 (+ Redis), {os.cpu_count()} cores")
    print(f"| {'configuration':44s} | analyses/s | p50 ms  | p90 ms  | errors | API CPU s/min | workers CPU s/min |")
    print(f"|{'-' * 46}|------------|---------|---------|--------|---------------|-------------------|")
    for outcome in outcomes:
        print(outcome.row())


if __name__ == "__main__":
    main()
