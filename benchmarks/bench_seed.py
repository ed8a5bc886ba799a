"""PicMetric beside the seed system's stack, on the same machine in the same run, on the seed stack's own photos.
Prints a table; asserts nothing.

    cp -r ../shared/seedstack /tmp/seedstack && bash /tmp/seedstack/setup.sh     # once: TensorFlow, mtcnn, ...
    git worktree add /tmp/picmetric-before <commit>                               # optional: the code to compare
    .venv/bin/python benchmarks/bench_seed.py --seedstack /tmp/seedstack [--before-tree /tmp/picmetric-before]

The seed's stack (TensorFlow ResNet-50, Darknet YOLOv3-416 through OpenCV, ``mtcnn``, two PIL PNG renders) runs its
own ``pipeline.py``. PicMetric runs in a fresh process per row, on the same two JPEGs (1280x720 and 640x480, from the
seed stack's ``img/``): each photo end to end (decode and the three models; the ``before`` checkout also drew its two
WebP renders, as every analysis did then), ``--runs`` times after one warm-up, median and p90. ``+ pictures``: today's
analysis followed by both of its pictures drawn, as the API's image route or ``--out`` draws them when asked. Start:
process start to the first answer, models already converted. Peak: the process' peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = {"1280x720": "kite_1280x720.jpg", "640x480": "astronaut_640x480.jpg"}


def child(folder: Path, runs: int, draw: bool, launched_at: float) -> dict:
    """Runs in a process whose ``picmetric`` is the code under test."""
    from picmetric import AnalysisOptions, Analyzer, load_image
    from picmetric.settings import Settings

    analyzer = Analyzer(Settings())
    options = AnalysisOptions()
    photos = {size: (folder / name).read_bytes() for size, name in PHOTOS.items()}

    def answer(data: bytes) -> None:
        image = load_image(data)
        analysis = analyzer.analyze(image, options)
        if draw:
            from picmetric import render

            for kind in analysis.render_kinds:
                render(image, analysis, kind)

    answer(photos["1280x720"])
    found: dict = {"start_s": time.time() - launched_at}
    for size, data in photos.items():
        answer(data)
        samples = []
        for _ in range(runs):
            started = time.perf_counter()
            answer(data)
            samples.append((time.perf_counter() - started) * 1000)
        found[size] = {"median_ms": statistics.median(samples), "p90_ms": sorted(samples)[int(0.9 * (runs - 1))]}
    found["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seedstack", type=Path, required=True, help="a folder set up by the seed stack's setup.sh")
    parser.add_argument("--before-tree", type=Path, help="another checkout, measured as 'before'")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--draw", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--launched-at", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    folder = args.seedstack.resolve() / "img"
    if args.child:
        print(json.dumps(child(folder, args.runs, args.draw, args.launched_at)))
        return

    seed = subprocess.run(
        [str(args.seedstack / "venv" / "bin" / "python"), "pipeline.py"], cwd=args.seedstack, capture_output=True,
        text=True, check=True,
    )  # fmt: skip
    seed_row = json.loads(seed.stdout.strip().splitlines()[-1])
    rows = {
        "seed stack": {
            **{
                size: {"median_ms": seed_row[size]["total"]["median_ms"], "p90_ms": seed_row[size]["total"]["p90_ms"]}
                for size in PHOTOS
            },
            "start_s": seed_row["startup_total_s"] + seed_row["first_request_s"],
            "peak_rss_mb": seed_row["peak_rss_mb"],
        }  # fmt: skip
    }
    runs = [("now", ROOT, False), ("now + pictures", ROOT, True)]
    if args.before_tree:
        runs.insert(0, ("before", args.before_tree.resolve(), False))
    for label, tree, draw in runs:
        launched_at = time.time()
        measured = subprocess.run(
            [sys.executable, __file__, "--child", "1", "--seedstack", str(args.seedstack), "--runs", str(args.runs),
             "--launched-at", str(launched_at), *(["--draw"] if draw else [])],
            env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"}, cwd=tree, capture_output=True, text=True,
            check=True,
        )  # fmt: skip
        rows[label] = json.loads(measured.stdout.strip().splitlines()[-1])

    seed_ms = {size: rows["seed stack"][size]["median_ms"] for size in PHOTOS}
    print(
        f"seed stack's photos, median of {args.runs} (seed: its own pipeline.py, 10 runs); x: the seed's median / this"
    )
    print("| | " + " | ".join(f"{size} p50 / p90 ms | x" for size in PHOTOS) + " | start + first answer | peak MB |")
    print("|---|" + "---:|---:|" * len(PHOTOS) + "---:|---:|")
    for label, row in rows.items():
        cells = " | ".join(
            f"{row[size]['median_ms']:.0f} / {row[size]['p90_ms']:.0f} | {seed_ms[size] / row[size]['median_ms']:.1f}x"
            for size in PHOTOS
        )
        print(f"| {label} | {cells} | {row['start_s']:.2f} s | {row['peak_rss_mb']:.0f} |")


if __name__ == "__main__":
    main()
