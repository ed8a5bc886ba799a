"""One worker's photos per second when PostgreSQL, S3 and Redis are on other hosts: the same deployment as
``tests/test_hosts.py`` (network namespaces joined by its switch; run as root), with the links at 0 ms and at
20 ms +- 5 ms round trip, and optionally another checkout's worker (``--before-tree``) in the same run. Prints a
table; asserts nothing.

    git worktree add /tmp/picmetric-before <commit>
    .venv/bin/python benchmarks/bench_hosts.py [--photos 48] [--before-tree /tmp/picmetric-before]

A batch of distinct photos is queued through the API; the clock runs from the submission to the last job's end.
The worker runs with its defaults (one process, ``worker_threads`` jobs side by side, one ONNX Runtime thread).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from picmetric.service.analyses import AnalysisService  # noqa: E402
from tests.conftest import photo_variants  # noqa: E402
from tests.hostnet import Deployment  # noqa: E402
from tests.stack import Stack  # noqa: E402


@dataclass(frozen=True)
class BatchRun:
    queued_s: float  # the API's answer to the upload: staged, recorded and published
    total_s: float  # from the upload to the last job's end
    worker_s: float  # from the first job's start to the last one's end: the worker's own rate
    job_runs_s: list[float]


def run_batch(stack: Stack, photos: list[bytes]) -> BatchRun:
    stack.repository.reset()
    files = [("files", (f"{i}.jpg", data, "image/jpeg")) for i, data in enumerate(photos)]
    started = time.perf_counter()
    answer = stack.client.post("/api/v1/batches", files=files)
    queued = time.perf_counter() - started
    assert answer.status_code == 202, answer.text
    batch = stack.wait_for_batch(answer.json()["batch"], timeout_s=600)
    total = time.perf_counter() - started
    assert batch["counts"]["done"] == len(photos), batch["counts"]
    jobs = stack.repository.batch(batch["batch"]) or []
    starts = [job.started_at for job in jobs if job.started_at]
    ends = [job.finished_at for job in jobs if job.finished_at]
    runs = [(job.finished_at - job.started_at).total_seconds() for job in jobs if job.started_at and job.finished_at]
    return BatchRun(queued, total, (max(ends) - min(starts)).total_seconds(), runs)


MIGRATIONS = Path("picmetric/storage/migrations/versions")


def add_later_migrations(tree: Path) -> None:
    """The database is migrated by this tree; an older worker refuses a revision it does not know. Give its (throwaway)
    worktree the later migration files: they only add what it does not use."""
    for migration in sorted((ROOT / MIGRATIONS).glob("[0-9]*.py")):
        if not (tree / MIGRATIONS / migration.name).exists():
            (tree / MIGRATIONS / migration.name).write_bytes(migration.read_bytes())
            print(f"  {tree}: added {migration.name}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=48)
    parser.add_argument("--before-tree", type=Path, help="another checkout whose worker runs the same batches")
    parser.add_argument("--threads", default="", help="this tree's worker also with these --threads (comma-separated)")
    args = parser.parse_args()
    runs: list[tuple[str, Path | None, tuple[str, ...]]] = [("this tree", None, ())]
    runs += [(f"this tree, {n} threads", None, ("--threads", n)) for n in args.threads.split(",") if n]
    if args.before_tree:
        runs.insert(0, ("before", args.before_tree.resolve(), ()))
        add_later_migrations(args.before_tree.resolve())
    photos = photo_variants(args.photos)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-hosts-") as folder:
        deployment = Deployment(Path(folder), workers=1)
        try:
            service = AnalysisService(deployment.settings)
            deployment.start_api()
            with httpx.Client(base_url=deployment.api_url, timeout=600) as client:
                stack = Stack(deployment.settings, service, client, deployment.log_dir)
                for label, tree, extra in runs:
                    deployment.start_worker("worker1", *extra, tree=tree)
                    stack.wait_for_workers(1)
                    run_batch(stack, photos[:4])  # warm: connections opened, first-run costs paid
                    for rtt in (0.0, 20.0):
                        deployment.network.shape(rtt, rtt / 4)
                        run = run_batch(stack, photos)
                        rows.append((label, rtt, run))
                        print(f"  {label}, {rtt:.0f} ms: {run}", file=sys.stderr)
                    deployment.network.shape()
                    deployment.network.kill("worker1")
            service._repository.engine.dispose()
        finally:
            deployment.close()
    print(f"\nOne worker, {args.photos} photos per batch, PostgreSQL, S3 and Redis on hosts of their own\n")
    print("| worker | round trip | worker's photos/s | vs 0 ms | batch photos/s (upload to last) | upload queued in "
          "| median job run |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    base = {label: len(photos) / run.worker_s for label, rtt, run in rows if rtt == 0}
    for label, rtt, run in rows:
        rate = len(photos) / run.worker_s
        print(f"| {label} | {rtt:.0f} ms | {rate:.2f} | {rate / base[label]:.0%} | {len(photos) / run.total_s:.2f} "
              f"| {run.queued_s:.2f} s | {statistics.median(run.job_runs_s) * 1000:.0f} ms |")  # fmt: skip


if __name__ == "__main__":
    main()
