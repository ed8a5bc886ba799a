"""What each stored image looks like, for similar-photo search: its perceptual hash and its features per classifier.
Storage only keeps and lists them; the index and the judgement (same photo, similar scene) are the service's."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from picmetric.storage.base import StoreBase
from picmetric.storage.records import NewSignature
from picmetric.storage.schema import AnalysisRow, EmbeddingRow, ImageRow, RenderRow


@dataclass(frozen=True)
class Signature:
    """One image's features (float16 bytes, unit length) and pHash, as the index loads them."""

    row_id: int  # EmbeddingRow.id: grows with every row added
    image_id: int
    phash: str | None
    vector: bytes


@dataclass(frozen=True)
class Neighbour:
    """A stored image the index found, with what a result needs to show it."""

    image_id: int
    sha256: str
    name: str | None
    thumbnail_key: str | None


class SignatureStore(StoreBase):
    def save_signature(self, sha256: str, signature: NewSignature) -> None:
        """Keep an image's pHash and its features as the signature's model sees them (a vector already there for
        that model stays)."""
        with self._session("store the image's signature") as session:
            image_id = select(ImageRow.id).where(ImageRow.sha256 == sha256).scalar_subquery()
            self._add_signature(session, image_id, signature)  # deleted meanwhile: nothing is described

    def signature_stats(self, model: str) -> tuple[int, int]:
        """(row count, largest row id) of ``model``'s features: how an index knows it is behind."""
        with self._session("count image signatures") as session:
            count, largest = session.execute(
                select(func.count(EmbeddingRow.id), func.max(EmbeddingRow.id)).where(EmbeddingRow.model == model)
            ).one()
        return int(count or 0), int(largest or 0)

    def signatures_since(self, model: str, after_row_id: int, limit: int = 5000) -> list[Signature]:
        """``model``'s features with a row id above ``after_row_id``, oldest first, ``limit`` at a time."""
        with self._session("read image signatures") as session:
            rows = session.execute(
                select(EmbeddingRow.id, EmbeddingRow.image_id, ImageRow.phash, EmbeddingRow.vector)
                .join(ImageRow, ImageRow.id == EmbeddingRow.image_id)
                .where(EmbeddingRow.model == model, EmbeddingRow.id > after_row_id)
                .order_by(EmbeddingRow.id)
                .limit(limit)
            ).all()
        return [Signature(int(r[0]), int(r[1]), r[2], bytes(r[3])) for r in rows]

    def neighbours(self, image_ids: list[int]) -> dict[int, Neighbour]:
        """The images still stored among ``image_ids`` (an index may be a moment behind a deletion)."""
        if not image_ids:
            return {}
        with self._session("read similar images") as session:
            images = session.execute(
                select(ImageRow.id, ImageRow.sha256, ImageRow.original_name).where(ImageRow.id.in_(image_ids))
            ).all()
            thumbnails: dict[int, str] = dict(
                session.execute(  # type: ignore[arg-type]
                    select(AnalysisRow.image_id, func.max(RenderRow.blob_key))
                    .join(RenderRow, RenderRow.analysis_id == AnalysisRow.id)
                    .where(AnalysisRow.image_id.in_(image_ids), RenderRow.kind == "thumbnail")
                    .group_by(AnalysisRow.image_id)
                ).all()
            )
        return {int(i): Neighbour(int(i), sha, name, thumbnails.get(i)) for i, sha, name in images}

    def images_without_signature(self, model: str, limit: int = 100) -> list[str]:
        """sha256s of stored images with no features from ``model`` yet (for ``picmetric db backfill``)."""
        with self._session("list images to describe") as session:
            described = select(EmbeddingRow.image_id).where(EmbeddingRow.model == model)
            missing = select(ImageRow.sha256).where(ImageRow.id.not_in(described)).order_by(ImageRow.id).limit(limit)
            return list(session.scalars(missing))

    def image_id(self, sha256: str) -> int | None:
        with self._session("find the image") as session:
            return session.scalar(select(ImageRow.id).where(ImageRow.sha256 == sha256))
