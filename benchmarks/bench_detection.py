"""How many boxes the built-in detector gets right on the shipped photos, under each way of choosing among its guesses.
Counts against the sample dataset's hand-drawn boxes (``picmetric/core/sample_data``); prints a table; asserts nothing.

    .venv/bin/python benchmarks/bench_detection.py

A detection is *true* when it has the label of an unmatched drawn box and overlaps it by IoU >= 0.5 (the best-scoring
detections match first); a *duplicate* when it overlaps an object already matched (any label: one pickup boxed as car
and as truck, one man boxed twice); *false* otherwise (a wrong label, a box on nothing). *Missed*: drawn boxes no
detection matched. Variants: the thresholds and NMS of the analysis options, class-agnostic NMS, NMS across near-synonym
classes (car, truck and bus are one object to NMS), the 608 px input, and the int8 model.

Then the int8 model against the float one on the same photos and the shipped ones (``agreement``): for every box
the float model finds, the int8 model's box of the same object (same class or near-synonym) and their IoU, by
confidence; the boxes only one of them finds. The rule int8 must pass (tests/test_models.py): every float box
scoring 0.4 or more found with IoU >= 0.85, and no fewer true or more false boxes than float.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from picmetric import load_image  # noqa: E402
from picmetric.core.models.calibration import detector_calibration_photos  # noqa: E402
from picmetric.core.models.detector import (  # noqa: E402
    COCO_SYNONYMS,
    BuiltinDetector,
    Candidates,
    class_aware_nms,
    coco_class_names,
    synonym_groups,
)
from picmetric.core.samples import hand_drawn_boxes, sample_photo_path  # noqa: E402
from picmetric.settings import Settings  # noqa: E402

VEHICLES = (("car", "truck", "bus"),)
VEHICLES_AND_ANIMALS = COCO_SYNONYMS  # the default since this benchmark


@dataclass(frozen=True)
class Variant:
    name: str
    size: int = 416
    min_confidence: float = 0.25
    iou: float = 0.45
    nms: str = "per class"  # per class | agnostic | synonyms | synonyms+animals
    precision: str = "float32"


VARIANTS = [
    Variant("before: 416, 0.25, NMS per class 0.45"),
    Variant("threshold 0.30", min_confidence=0.30),
    Variant("threshold 0.35", min_confidence=0.35),
    Variant("threshold 0.40", min_confidence=0.40),
    Variant("class-agnostic NMS 0.45", nms="agnostic"),
    Variant("class-agnostic NMS 0.60", nms="agnostic", iou=0.60),
    Variant("NMS across car/truck/bus", nms="synonyms"),
    Variant("NMS across vehicles + horse/cow/sheep, dog/cat", nms="synonyms+animals"),
    Variant("NMS IoU 0.40", iou=0.40),
    Variant("after: NMS IoU 0.40 across vehicles + animals", nms="synonyms+animals", iou=0.40),
    Variant("NMS IoU 0.35 across vehicles + animals", nms="synonyms+animals", iou=0.35),
    Variant("car/truck/bus + threshold 0.30", nms="synonyms", min_confidence=0.30),
    Variant("car/truck/bus + threshold 0.35", nms="synonyms", min_confidence=0.35),
    Variant(
        "int8: NMS IoU 0.40 across vehicles + animals (the default)", nms="synonyms+animals", iou=0.40, precision="int8"
    ),
    Variant("608 px input", size=608),
    Variant("608 px + car/truck/bus", size=608, nms="synonyms"),
]


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x1, y1 = np.maximum(box[0], boxes[:, 0]), np.maximum(box[1], boxes[:, 1])
    x2, y2 = np.minimum(box[2], boxes[:, 2]), np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    return inter / (area + (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) - inter)


def score(labels: list[str], xyxy: np.ndarray, truth: list[list]) -> dict[str, int]:
    """True, false, duplicate and missed boxes of one photo (detections sorted best first)."""
    counts = dict.fromkeys(("true", "false", "duplicate", "missed"), 0)
    truth_boxes = np.array([t[1:] for t in truth], np.float32).reshape(-1, 4)
    matched = np.zeros(len(truth), bool)
    for label, box in zip(labels, xyxy, strict=True):
        overlaps = iou(box, truth_boxes) if len(truth) else np.zeros(0)
        same = np.array([t[0] == label for t in truth], bool)
        candidates = np.flatnonzero((overlaps >= 0.5) & same & ~matched)
        if len(candidates):
            matched[candidates[np.argmax(overlaps[candidates])]] = True
            counts["true"] += 1
        elif ((overlaps >= 0.5) & matched).any():
            counts["duplicate"] += 1
        else:
            counts["false"] += 1
    counts["missed"] = int((~matched).sum())
    return counts


def main() -> None:
    argparse.ArgumentParser(description=__doc__).parse_args()
    truth = hand_drawn_boxes()
    names = coco_class_names()
    groups = {
        "per class": None,
        "agnostic": np.zeros(len(names), np.int64),
        "synonyms": synonym_groups(names, VEHICLES),
        "synonyms+animals": synonym_groups(names, VEHICLES_AND_ANIMALS),
    }
    settings = Settings(data_dir=Path("/tmp/picmetric-bench-detection"))
    detectors = {(v.size, v.precision): BuiltinDetector(v.size, v.precision) for v in VARIANTS}
    for detector in detectors.values():
        detector.settings = settings
    images = {key: load_image(sample_photo_path(key), settings=settings) for key in truth}
    drawn = sum(len(boxes) for boxes in truth.values())
    print(f"{len(images)} photos, {drawn} drawn boxes; YOLOv4-tiny; IoU >= 0.5 to count as found\n")
    print(f"| {'variant':50s} | true | false | duplicate | missed | errors | ms/photo |")
    print(f"|{'-' * 52}|-----:|------:|----------:|-------:|-------:|---------:|")
    raw = {}
    for model, detector in detectors.items():  # one run per photo and model: the variants share its candidates
        for key, image in images.items():
            started = time.perf_counter()
            boxed = detector.fit(image.pixels)
            found = detector.candidates(image.pixels, boxed, detector.raw_outputs(boxed), 0.2)
            raw[model, key] = (found, (time.perf_counter() - started) * 1000)
    for variant in VARIANTS:
        totals = dict.fromkeys(("true", "false", "duplicate", "missed"), 0)
        elapsed = 0.0
        for key, image in images.items():
            found, ms = raw[(variant.size, variant.precision), key]
            keep = found.confidence >= variant.min_confidence
            kept = Candidates(found.xyxy[keep], found.confidence[keep], found.class_id[keep])
            order = class_aware_nms(kept, variant.iou, groups[variant.nms])
            labels = [names[i] for i in kept.class_id[order]]
            for name, count in score(labels, kept.xyxy[order] * image.scale, truth[key]).items():
                totals[name] += count
            elapsed += ms
        errors = totals["false"] + totals["duplicate"] + totals["missed"]
        print(f"| {variant.name:50s} | {totals['true']:4d} | {totals['false']:5d} | {totals['duplicate']:9d} | "
              f"{totals['missed']:6d} | {errors:6d} | {elapsed / len(images):8.1f} |")  # fmt: skip

    photos = [*(image.pixels for image in images.values()), *detector_calibration_photos()[:13]]
    print(f"\nint8 against float32, {len(photos)} photos (these and the shipped ones), min_confidence 0.25:\n")
    print("| float box scores | boxes | found by int8 | of them relabelled | IoU min | IoU median |")
    print("|---|---:|---:|---:|---:|---:|")
    found = agreement(detectors[416, "float32"], detectors[416, "int8"], photos)
    for low, high in ((0.25, 0.4), (0.4, 0.6), (0.6, 1.01)):
        band = [(overlap, same) for score, overlap, same in found.matches if low <= score < high]
        hits = [overlap for overlap, _ in band if overlap >= 0.5]
        relabelled = sum(1 for overlap, same in band if overlap >= 0.5 and not same)
        median = float(np.median(hits)) if hits else 0.0
        print(f"| {low:.2f}-{min(high, 1):.2f} | {len(band)} | {len(hits)} | {relabelled} | "
              f"{min(hits, default=0):.3f} | {median:.3f} |")  # fmt: skip
    scores = ", ".join(f"{s:.2f}" for s in sorted(found.extra_scores, reverse=True))
    print(f"\nboxes int8 finds that float does not: {found.extra} (scores {scores})")


@dataclass
class Agreement:
    """For every box of the float model: its score, the IoU of the int8 model's box over the same object (0: none)
    and whether that box names the same class (or a near-synonym); and the int8 boxes no float box matched."""

    matches: list[tuple[float, float, bool]]
    extra_scores: list[float]

    @property
    def extra(self) -> int:
        return len(self.extra_scores)


def agreement(reference: BuiltinDetector, quantized: BuiltinDetector, photos: list[np.ndarray]) -> Agreement:
    """How the quantized detector's objects match the reference's on ``photos`` (default options' NMS): a box
    matches the best-overlapping unmatched box of its class group, else of any class (the same object, relabelled)."""
    matches, extra = [], []
    groups = reference.same_object
    assert groups is not None
    for pixels in photos:
        expected, found = reference.predict(pixels), quantized.predict(pixels)
        unused = np.ones(len(found), bool)
        for box, score, class_id in zip(expected.xyxy, expected.confidence, expected.class_id, strict=True):
            overlaps = np.where(unused, iou(box, found.xyxy), 0.0) if len(found) else np.zeros(0)
            same = groups[found.class_id] == groups[class_id]
            for candidates, same_class in ((overlaps * same, True), (overlaps, False)):
                if len(candidates) and candidates.max() >= 0.5:
                    best = int(np.argmax(candidates))
                    unused[best] = False
                    matches.append((float(score), float(candidates[best]), same_class))
                    break
            else:
                matches.append((float(score), 0.0, False))
        extra += [float(s) for s in found.confidence[unused]]
    return Agreement(matches, extra)


if __name__ == "__main__":
    main()
