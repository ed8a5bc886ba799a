"""How fast the detection scorer is, beside pycocotools' COCOeval (the reference) and faster-coco-eval when it is
importable (not a dependency: ``pip install --target /tmp/fce faster-coco-eval`` and ``PYTHONPATH=/tmp/fce``), on the
same synthetic predictions; and the sample dataset evaluated end to end on the embedded defaults. Prints a table;
asserts nothing.

    .venv/bin/python benchmarks/bench_scoring.py [--photos 5000] [--boxes 30]

The predictions are the truths moved by a few pixels (80 % of them), some of another class, plus false boxes, with
scores rounded to two digits so ties happen: what a detector's output looks like to the scorer.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from picmetric.core.scoring import BoxTable, coco_metrics, match  # noqa: E402


def synthetic(photos: int, boxes: int, classes: int = 80, seed: int = 0) -> tuple[BoxTable, BoxTable]:
    rng = np.random.default_rng(seed)
    image = np.repeat(np.arange(photos), boxes)
    xy = rng.uniform(0, 600, (len(image), 2))
    truth_xyxy = np.c_[xy, xy + rng.uniform(4, 250, (len(image), 2))]
    truth_class = rng.integers(0, classes, len(image))
    kept = rng.random(len(image)) < 0.8
    moved = truth_xyxy[kept] + rng.normal(0, 4, (int(kept.sum()), 4))
    moved[:, 2:] = np.maximum(moved[:, 2:], moved[:, :2] + 1)
    guess = np.where(rng.random(int(kept.sum())) < 0.9, truth_class[kept], rng.integers(0, classes, int(kept.sum())))
    false = photos * boxes // 10
    fxy = rng.uniform(0, 600, (false, 2))
    pred_xyxy = np.r_[moved, np.c_[fxy, fxy + rng.uniform(4, 200, (false, 2))]]
    pred_image = np.r_[image[kept], rng.integers(0, photos, false)]
    pred_class = np.r_[guess, rng.integers(0, classes, false)]
    scores = np.round(rng.uniform(0.05, 1, len(pred_image)), 2)
    return (
        BoxTable.of(image, truth_class, truth_xyxy),
        BoxTable.of(pred_image, pred_class, pred_xyxy, score=scores),
    )


def coco_inputs(truth: BoxTable, preds: BoxTable, photos: int, classes: int) -> tuple[dict, list[dict]]:
    def xywh(b: np.ndarray) -> list[float]:
        return [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]

    ground_truth = {
        "images": [{"id": i + 1, "width": 900, "height": 900} for i in range(photos)],
        "categories": [{"id": c + 1, "name": str(c)} for c in range(classes)],
        "annotations": [
            {"id": j + 1, "image_id": int(truth.image[j]) + 1, "category_id": int(truth.class_id[j]) + 1,
             "bbox": xywh(truth.xyxy[j]), "area": float(truth.box_area[j]),
             "iscrowd": int(truth.crowd[j]) if truth.crowd is not None else 0}
            for j in range(len(truth))
        ],
    }  # fmt: skip
    results = [
        {"image_id": int(preds.image[j]) + 1, "category_id": int(preds.class_id[j]) + 1, "bbox": xywh(preds.xyxy[j]),
         "score": float(preds.scores[j])}
        for j in range(len(preds))
    ]  # fmt: skip
    return ground_truth, results


def reference(module: str, ground_truth: dict, results: list[dict]) -> tuple[float, list[float]]:
    """COCOeval of ``module`` (pycocotools, or faster_coco_eval's drop-in): seconds, and its first seven stats."""
    if module == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    else:
        from faster_coco_eval import COCO  # type: ignore[import-not-found,no-redef]
        from faster_coco_eval import COCOeval_faster as COCOeval  # type: ignore[import-not-found,no-redef]
    with contextlib.redirect_stdout(io.StringIO()):
        started = time.perf_counter()
        truth = COCO()
        truth.dataset = ground_truth
        truth.createIndex()
        evaluation = COCOeval(truth, truth.loadRes(results), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
        took = time.perf_counter() - started
    stats = evaluation.stats
    return took, [*stats[:6], stats[8]]


def end_to_end() -> list[tuple[str, float, float]]:
    """The sample dataset on the embedded defaults (SQLite, a folder): first run (import + analyse), second run
    (every photo's analysis kept: scoring only)."""
    from picmetric.core.samples import SAMPLE_OBJECTS
    from picmetric.service.analyses import AnalysisService
    from picmetric.service.datasets import DatasetService
    from picmetric.service.evaluation import EvaluationService
    from picmetric.service.jobs import JobService
    from picmetric.settings import Settings

    service = AnalysisService(Settings(data_dir=Path(tempfile.mkdtemp())))
    service.warm_up()
    jobs = JobService(service)
    evaluation = EvaluationService(jobs, DatasetService(service))
    rows = []
    for model in evaluation.models("objects"):
        started = time.perf_counter()
        evaluation.evaluate(SAMPLE_OBJECTS, model)
        first = time.perf_counter() - started
        started = time.perf_counter()
        evaluation.evaluate(SAMPLE_OBJECTS, model)
        rows.append((model.title, first, time.perf_counter() - started))
    jobs.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--photos", type=int, default=5000)
    parser.add_argument("--boxes", type=int, default=30)
    args = parser.parse_args()
    truth, preds = synthetic(args.photos, args.boxes)
    print(f"{args.photos:,} photos x {args.boxes} boxes: {len(truth):,} truths, {len(preds):,} predictions\n")
    started = time.perf_counter()
    ours = coco_metrics(match(truth, preds, args.photos, 80))
    took = time.perf_counter() - started
    mine = [ours.map, ours.map50, ours.map75, ours.map_small, ours.map_medium, ours.map_large, ours.mar_100]
    ground_truth, results = coco_inputs(truth, preds, args.photos, 80)
    print("| scorer | seconds | mAP | largest difference from pycocotools |\n|---|---|---|---|")
    pyco_s, pyco = reference("pycocotools", ground_truth, results)
    difference = np.abs(np.subtract(mine, pyco)).max()
    print(f"| picmetric.core.scoring (numpy) | {took:.2f} | {ours.map:.4f} | {difference:.1e} |")
    print(f"| pycocotools 2.0.11 COCOeval | {pyco_s:.2f} | {pyco[0]:.4f} | 0 |")
    try:
        fast_s, fast = reference("faster_coco_eval", ground_truth, results)
        print(f"| faster-coco-eval | {fast_s:.2f} | {fast[0]:.4f} | {np.abs(np.subtract(fast, pyco)).max():.1e} |")
    except ImportError:
        print("| faster-coco-eval | not installed | | |")
    print("\nThe sample dataset (15 photos, 57 boxes), end to end on the embedded defaults:\n")
    print("| model | first run (import, analyse, score) s | again (kept analyses) s |\n|---|---|---|")
    for title, first, again in end_to_end():
        print(f"| {title} | {first:.2f} | {again:.2f} |")


if __name__ == "__main__":
    main()
