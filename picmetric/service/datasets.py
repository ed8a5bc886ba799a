"""Datasets kept to measure models on: imported from a folder or zip (COCO, YOLO, VOC, ImageFolder), the shipped
samples, or a class board's marks. Each is checked whole before anything is kept, and kept whole or not at all."""

from __future__ import annotations

import io
import json
import logging
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

from picmetric.core.datasets import DatasetError, DatasetFiles, check_box, match_categories, read_dataset
from picmetric.core.decoding import load_image
from picmetric.core.samples import SAMPLE_DATASETS, sample_dataset
from picmetric.errors import NotFoundError, PicMetricError
from picmetric.service.analyses import AnalysisService
from picmetric.service.types import Dataset, DatasetPhoto, converted
from picmetric.storage.blobs import FORMAT_CONTENT_TYPES, original_key
from picmetric.storage.repository import NewDatasetPhoto

logger = logging.getLogger(__name__)
DATASET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
Progress = Callable[[int, int], None]
_NAME_RULE = "a dataset's name is 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"


class DatasetService:
    """Add, list, read and remove datasets; match their categories to a model's classes."""

    def __init__(self, service: AnalysisService) -> None:
        self.service = service
        self.settings = service.settings
        self._repository = service._repository

    def add(self, name: str, path: Path, on_progress: Progress | None = None) -> Dataset:
        """Import the dataset at ``path`` (a folder or a zip) as ``name``."""
        self._check_name(name)
        return self.keep(name, read_dataset(Path(path)), on_progress)

    def add_sample(self, name: str) -> Dataset:
        """The shipped sample dataset ``name``, imported the first time it is asked for."""
        found = self.get(name)
        if found is not None:
            return found
        try:
            return self.keep(name, sample_dataset(name))
        except PicMetricError:
            found = self.get(name)  # another process imported it meanwhile
            if found is None:
                raise
            return found

    def kept(self) -> list[Dataset]:
        return [converted(record, Dataset) for record in self._repository.datasets()]

    def get(self, name: str) -> Dataset | None:
        record = self._repository.dataset(name) if DATASET_NAME.fullmatch(name) else None
        return converted(record, Dataset) if record is not None else None

    def require(self, name: str) -> Dataset:
        """The dataset ``name``: the shipped samples are imported when first named."""
        if name in SAMPLE_DATASETS:
            return self.add_sample(name)
        found = self.get(name)
        if found is None:
            known = ", ".join(d.name for d in self.kept()) or "none yet"
            raise DatasetNotFoundError(f"no dataset named {name[:64]!r} (datasets: {known})")
        return found

    def photos(self, name: str) -> list[DatasetPhoto]:
        return [converted(record, DatasetPhoto) for record in self._repository.dataset_photos(name)]

    def remove(self, name: str) -> bool:
        """The dataset and the photos nothing else keeps; False when there is none of that name."""
        return DATASET_NAME.fullmatch(name) is not None and self._repository.remove_dataset(name)

    def set_synonyms(self, name: str, synonyms: dict[str, str]) -> Dataset:
        """The user's own table: a dataset category -> the model class it means (empty values are dropped)."""
        dataset = self.require(name)
        unknown = sorted(set(synonyms) - set(dataset.category_names))
        if unknown:
            raise PicMetricError(f"{', '.join(unknown[:5])} is not a category of {name}")
        table = {k: v.strip() for k, v in synonyms.items() if v and v.strip()}
        if any(len(v) > 64 for v in table.values()):
            raise PicMetricError("a class name is at most 64 characters")
        self._repository.set_dataset_synonyms(name, table)
        return self.require(name)

    def export_coco(self, name: str) -> bytes:
        """The dataset as a zip: ``annotations.json`` (COCO, with the dataset's own ids) and its photos under
        ``images/``; ``picmetric datasets add`` reads it back as it was."""
        dataset = self.require(name)
        ids = [i for i, _ in dataset.categories]
        images: list[dict] = []
        annotations: list[dict] = []
        packed = io.BytesIO()
        with zipfile.ZipFile(packed, "w", zipfile.ZIP_STORED) as archive:  # photos are compressed already
            for photo in self.photos(dataset.name):
                picture = self.service.image(photo.image.sha256)
                if picture is None:
                    raise PicMetricError(f"{photo.file_name} is no longer stored")
                archive.writestr(f"images/{photo.file_name}", picture.content)
                images.append({"id": photo.source_id, "file_name": photo.file_name, "width": photo.image.width,
                               "height": photo.image.height})  # fmt: skip
                for category, x1, y1, x2, y2, crowd, area in photo.boxes:
                    annotations.append({
                        "id": len(annotations) + 1, "image_id": photo.source_id, "category_id": ids[int(category)],
                        "bbox": [x1, y1, x2 - x1, y2 - y1], "area": area if area is not None else (x2 - x1) * (y2 - y1),
                        "iscrowd": int(crowd),
                    })  # fmt: skip
            document = {
                "info": {"description": f"{dataset.name}, exported by PicMetric ({dataset.format})"},
                "images": images, "annotations": annotations,
                "categories": [{"id": i, "name": n} for i, n in dataset.categories],
            }  # fmt: skip
            archive.writestr("annotations.json", json.dumps(document, indent=1))
        return packed.getvalue()

    def matches(self, dataset: Dataset, classes: list[list[str]]) -> dict[str, int | None]:
        """Each category's class among ``classes`` (each class by all its names), or None when it has none."""
        return match_categories(dataset.category_names, classes, dataset.synonyms)

    # -- keeping -----------------------------------------------------------------------------------------------

    def _check_name(self, name: str) -> None:
        if not DATASET_NAME.fullmatch(name):
            raise PicMetricError(
                "a dataset's name is 1-64 letters, digits, '.', '_' or '-', starting with one of the first two"
            )
        if self.get(name) is not None:
            raise PicMetricError(f"a dataset named {name!r} exists already; remove it or pick another name")

    def keep(
        self, name: str, files: DatasetFiles, on_progress: Progress | None = None, *, replace: bool = False
    ) -> Dataset:
        """Keep ``files`` as the dataset ``name`` (``replace``: instead of the one of that name, e.g. a board's truth
        made again after more marks). Every photo is decoded and every box checked first; then the blobs, then
        every row in one transaction."""
        if not DATASET_NAME.fullmatch(name):
            raise PicMetricError(_NAME_RULE)
        index = {category: i for i, (_, category) in enumerate(files.categories)}
        pending: list[tuple[NewDatasetPhoto, bytes]] = []
        for number, photo in enumerate(files.photos, 1):
            try:
                image = load_image(photo.read(), settings=self.settings, origin="dataset", name=photo.file_name)
            except PicMetricError as exc:
                raise DatasetError(f"{photo.file_name}: {exc}") from None
            boxes = []
            for box in photo.boxes:
                checked = check_box(box, image.width, image.height, photo.file_name)
                boxes.append([index[box.category], *checked.xyxy, int(checked.crowd), checked.area])
            content_type = FORMAT_CONTENT_TYPES.get(image.format, "application/octet-stream")
            new = NewDatasetPhoto(
                image.facts, original_key(image.sha256, content_type), content_type, photo.file_name,
                photo.source_id, photo.label, boxes,
            )  # fmt: skip
            pending.append((new, image.data))
            if on_progress:
                on_progress(number, len(files.photos))
        created: list[str] = []
        try:
            for new, data in pending:
                if not self._repository.blobs.exists(new.blob_key):
                    self._repository.blobs.put(new.blob_key, data, new.content_type)
                    created.append(new.blob_key)
            self._repository.add_dataset(
                name,
                files.task,
                files.format,
                files.categories,
                files.notes,
                [new for new, _ in pending],
                replace=replace,
            )
        except BaseException:
            self._repository.undo(None, None, created)  # blobs no row uses go; a row's are kept
            raise
        logger.info("dataset %s: %d photos (%s) kept", name, len(pending), files.format)
        return self.require(name)


class DatasetNotFoundError(NotFoundError):
    """No dataset of that name."""
