"""Datasets: labelled photos kept to measure models on. The photos are images like any other (content-addressed
blobs, one ``images`` row each); a dataset's rows place them in it with their truth."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, exists, func, select
from sqlalchemy.exc import IntegrityError

from picmetric.core.results import ImageFacts
from picmetric.errors import PicMetricError
from picmetric.storage.base import StoreBase
from picmetric.storage.records import _utc
from picmetric.storage.schema import AnalysisRow, BoardPhotoRow, DatasetPhotoRow, DatasetRow, ImageRow


@dataclass(frozen=True)
class DatasetRecord:
    name: str
    task: str
    format: str
    categories: list[tuple[int, str]]  # (the dataset's own id, name)
    synonyms: dict[str, str]
    notes: list[str]
    photo_count: int
    created_at: datetime


@dataclass(frozen=True)
class DatasetPhotoRecord:
    image: ImageFacts
    file_name: str
    source_id: int
    label: str | None
    boxes: list[list]  # [category index, x1, y1, x2, y2, crowd, area]


@dataclass(frozen=True)
class NewDatasetPhoto:
    """A photo to keep in a dataset: its original's blob (stored first) and its truth."""

    image: ImageFacts
    blob_key: str
    content_type: str
    file_name: str
    source_id: int
    label: str | None
    boxes: list[list]


class DatasetNameTakenError(PicMetricError):
    """A dataset of that name exists already."""


class DatasetStore(StoreBase):
    def add_dataset(
        self,
        name: str,
        task: str,
        format: str,
        categories: list[tuple[int, str]],
        notes: list[str],
        photos: list[NewDatasetPhoto],
        *,
        replace: bool = False,
    ) -> None:
        """The dataset, its photos' image rows (inserted, or those already there) and its truth, in one
        transaction: a dataset is kept whole or not at all (``replace``: in place of the one of that name)."""
        try:
            with self._session("keep the dataset") as session:
                if replace:
                    session.execute(delete(DatasetRow).where(DatasetRow.name == name))
                    session.flush()
                row = DatasetRow(
                    name=name, task=task, format=format, categories=[list(c) for c in categories], synonyms={},
                    notes=notes,
                )  # fmt: skip
                session.add(row)
                session.flush()
                for photo in photos:
                    session.execute(self._image_insert(photo.image, photo.blob_key, photo.content_type))
                ids: dict[str, int] = dict(
                    session.execute(  # type: ignore[arg-type]
                        select(ImageRow.sha256, ImageRow.id).where(
                            ImageRow.sha256.in_({p.image.sha256 for p in photos})
                        )
                    ).all()
                )
                session.add_all(
                    DatasetPhotoRow(
                        dataset_id=row.id,
                        image_id=ids[p.image.sha256],
                        file_name=p.file_name,
                        source_id=p.source_id,
                        label=p.label,
                        boxes=p.boxes,
                    )  # fmt: skip
                    for p in photos
                )
        except IntegrityError:
            raise DatasetNameTakenError(
                f"a dataset named {name!r} exists already; remove it or pick another name"
            ) from None

    def datasets(self) -> list[DatasetRecord]:
        with self._session("list the datasets") as session:
            counts: dict[int, int] = dict(
                session.execute(  # type: ignore[arg-type]
                    select(DatasetPhotoRow.dataset_id, func.count()).group_by(DatasetPhotoRow.dataset_id)
                ).all()
            )
            rows = session.scalars(select(DatasetRow).order_by(DatasetRow.name)).all()
            return [_record(row, counts.get(row.id, 0)) for row in rows]

    def dataset(self, name: str) -> DatasetRecord | None:
        with self._session("read the dataset") as session:
            row = session.scalar(select(DatasetRow).where(DatasetRow.name == name))
            if row is None:
                return None
            count = session.scalar(select(func.count()).where(DatasetPhotoRow.dataset_id == row.id)) or 0
            return _record(row, count)

    def dataset_photos(self, name: str) -> list[DatasetPhotoRecord]:
        """The dataset's photos with their truth, in the order they were imported."""
        with self._session("read the dataset's photos") as session:
            rows = session.execute(
                select(DatasetPhotoRow, ImageRow)
                .join(ImageRow, ImageRow.id == DatasetPhotoRow.image_id)
                .join(DatasetRow, DatasetRow.id == DatasetPhotoRow.dataset_id)
                .where(DatasetRow.name == name)
                .order_by(DatasetPhotoRow.id)
            ).all()
            return [
                DatasetPhotoRecord(image.facts(), photo.file_name, photo.source_id, photo.label, photo.boxes)
                for photo, image in rows
            ]

    def set_dataset_synonyms(self, name: str, synonyms: dict[str, str]) -> bool:
        with self._session("keep the synonyms") as session:
            row = session.scalar(select(DatasetRow).where(DatasetRow.name == name))
            if row is None:
                return False
            row.synonyms = dict(synonyms)
            return True

    def remove_dataset(self, name: str) -> bool:
        """The dataset's rows, then the photos that nothing else keeps (no analysis, no other dataset, no board)
        with their blobs. False when there is no such dataset."""
        with self._session("remove the dataset") as session:
            row = session.scalar(select(DatasetRow).where(DatasetRow.name == name))
            if row is None:
                return False
            image_ids = set(
                session.scalars(select(DatasetPhotoRow.image_id).where(DatasetPhotoRow.dataset_id == row.id))
            )
            session.delete(row)
            session.flush()
            unused = session.execute(
                select(ImageRow.id, ImageRow.blob_key).where(
                    ImageRow.id.in_(image_ids),
                    ~exists().where(AnalysisRow.image_id == ImageRow.id),
                    ~exists().where(DatasetPhotoRow.image_id == ImageRow.id),
                    ~exists().where(BoardPhotoRow.image_id == ImageRow.id),
                )
            ).all()
            session.execute(delete(ImageRow).where(ImageRow.id.in_([i for i, _ in unused])))
            session.flush()
            keys = {key for _, key in unused} - self._referenced_keys(session, among=[key for _, key in unused])
        for key in keys:  # rows are gone first: nothing can point to a blob we are about to remove
            self.blobs.delete(key)
        return True


def _record(row: DatasetRow, count: int) -> DatasetRecord:
    return DatasetRecord(
        row.name, row.task, row.format, [(int(i), str(n)) for i, n in row.categories], dict(row.synonyms),
        list(row.notes), count, _utc(row.created_at),
    )  # fmt: skip
