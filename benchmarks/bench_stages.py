"""Where one photo's time goes, stage by stage, from its bytes to the three models' results: decode to the working
copy, each model's input tensor, each model's run, decoding its outputs. Prints a table; asserts nothing.

    .venv/bin/python benchmarks/bench_stages.py [--runs 15] [--before-tree /tmp/picmetric-before]

Photos: the seed stack's 1280x720 kite (``../shared/seedstack``'s own input, made from Debian darknet's kite.jpg and
copied here as ``data/kite_1280x720.jpg``) and a 4032x3024 phone photo (``bench_intake.phone_photo``). Each stage is
timed alone, one after another, on one thread of ONNX Runtime per model as the defaults give it (the cores), median
of ``--runs``. With ``--before-tree`` the same stages run with that checkout's code in a second process, side by
side (stages it does not have are left empty).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KITE = ROOT / "benchmarks" / "data" / "kite_1280x720.jpg"


def stages(runs: int) -> dict[str, dict[str, float]]:
    """Runs in a child process whose ``picmetric`` is the code under test: median ms per stage and photo."""
    from picmetric import AnalysisOptions, Analyzer, load_image
    from picmetric.settings import Settings

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_intake import phone_photo

    analyzer = Analyzer(Settings())
    options = AnalysisOptions()
    analyzer.warm_up(options)
    classifier = analyzer.classifier(options.classifier, getattr(options, "classifier_precision", options.precision))
    detector = analyzer.detector(options.detector_size)
    if hasattr(options, "detector_precision"):
        detector = analyzer.detector(options.detector_size, precision=options.detector_precision)
    faces = analyzer.face_detector(options.face_detector)

    def median_ms(step: Callable[[], object]) -> float:
        step()
        samples = []
        for _ in range(runs):
            started = time.perf_counter()
            step()
            samples.append((time.perf_counter() - started) * 1000)
        return round(statistics.median(samples), 2)

    def photo_stages(data: bytes) -> dict[str, float]:
        image = load_image(data)
        pixels = image.pixels
        tensor = classifier.preprocess(pixels)
        boxed = detector.fit(pixels)
        raw = detector.raw_outputs(boxed)
        scale = faces.scales(*pixels.shape[:2], options.min_face_size)[0]
        return {
            "decode to the working copy": median_ms(lambda: load_image(data)),
            "labels: input tensor": median_ms(lambda: classifier.preprocess(pixels)),
            "labels: network": median_ms(lambda: classifier.logits(tensor)),
            "objects: input tensor": median_ms(lambda: detector.fit(pixels)),
            "objects: network": median_ms(lambda: detector.raw_outputs(boxed)),
            "objects: candidates + NMS": median_ms(
                lambda: detector.candidates(pixels, boxed, raw, options.min_confidence)
            ),
            "faces: first pass (input, network, decode)": median_ms(
                lambda: faces.detect_at(pixels, scale, options.face_score)
            ),
            "faces: whole detector": median_ms(lambda: faces.predict(pixels, options.face_score)),
            "all three, concurrently": median_ms(lambda: analyzer.analyze(image, options)),
        }

    found = {
        name: photo_stages(data) for name, data in (("1280x720", KITE.read_bytes()), ("4032x3024 phone", phone_photo()))
    }
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--before-tree", type=Path)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(stages(args.runs)))
        return
    trees = {"now": ROOT, **({"before": args.before_tree} if args.before_tree else {})}
    results = {}
    for label, tree in trees.items():
        child = subprocess.run(
            [sys.executable, __file__, "--child", "--runs", str(args.runs)],
            env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"}, cwd=tree, capture_output=True, text=True,
            check=True,
        )  # fmt: skip
        results[label] = json.loads(child.stdout.strip().splitlines()[-1])
    labels = list(reversed(results))  # before first
    for photo in results["now"]:
        print(f"\n{photo}, median ms of {args.runs}")
        print(f"| stage | {' | '.join(labels)} |")
        print(f"|---|{'---:|' * len(labels)}")
        for stage in results["now"][photo]:
            cells = " | ".join(f"{results[label][photo].get(stage, float('nan')):.1f}" for label in labels)
            print(f"| {stage} | {cells} |")


if __name__ == "__main__":
    main()
