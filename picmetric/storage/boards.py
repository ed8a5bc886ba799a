"""Class boards: the rows of a teacher's session, the photos placed on it and the class' marks on their results."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select, update

from picmetric.storage.base import StoreBase
from picmetric.storage.records import _utc
from picmetric.storage.schema import BoardMarkRow, BoardPhotoRow, BoardRow, ImageRow


@dataclass(frozen=True)
class BoardRecord:
    id: str
    title: str
    created_at: datetime


@dataclass(frozen=True)
class BoardPhotoRecord:
    id: int
    sha256: str
    name: str | None
    phone: str
    hidden: bool
    created_at: datetime


class BoardStore(StoreBase):
    def create_board(self, board_id: str, title: str) -> BoardRecord:
        with self._session("start a class board") as session:
            row = BoardRow(id=board_id, title=title)
            session.add(row)
            session.flush()
            return BoardRecord(row.id, row.title, _utc(row.created_at))

    def board(self, board_id: str) -> BoardRecord | None:
        with self._session("read the class board") as session:
            row = session.get(BoardRow, board_id)
            return BoardRecord(row.id, row.title, _utc(row.created_at)) if row is not None else None

    def add_board_photo(
        self, board_id: str, sha256: str, phone: str, address: str | None = None
    ) -> BoardPhotoRecord | None:
        """Place a stored image on a board; None when the image is gone (deleted meanwhile)."""
        with self._session("place the photo on the board") as session:
            image = session.execute(
                select(ImageRow.id, ImageRow.original_name).where(ImageRow.sha256 == sha256)
            ).first()
            if image is None:
                return None
            row = BoardPhotoRow(board_id=board_id, image_id=image.id, phone=phone, address=address)
            session.add(row)
            session.flush()
            return BoardPhotoRecord(row.id, sha256, image.original_name, phone, row.hidden, _utc(row.created_at))

    def board_photos(self, board_id: str, *, hidden: bool = False, phone: str | None = None) -> list[BoardPhotoRecord]:
        """A board's photos, newest first: the shown ones (and the hidden too with ``hidden``), of one phone."""
        with self._session("read the board's photos") as session:
            query = (
                select(BoardPhotoRow, ImageRow.sha256, ImageRow.original_name)
                .join(ImageRow, ImageRow.id == BoardPhotoRow.image_id)
                .where(BoardPhotoRow.board_id == board_id)
                .order_by(BoardPhotoRow.id.desc())
            )
            if not hidden:
                query = query.where(BoardPhotoRow.hidden.is_(False))
            if phone is not None:
                query = query.where(BoardPhotoRow.phone == phone)
            return [
                BoardPhotoRecord(row.id, sha, name, row.phone, row.hidden, _utc(row.created_at))
                for row, sha, name in session.execute(query)
            ]

    def hide_board_photo(self, photo_id: int, hidden: bool = True) -> None:
        with self._session("hide the photo") as session:
            session.execute(update(BoardPhotoRow).where(BoardPhotoRow.id == photo_id).values(hidden=hidden))

    def phone_uploads(
        self, board_id: str, phone: str, address: str | None = None, within_s: float | None = None
    ) -> int:
        """How many photos a phone, or anything at its client address, sent to a board (in the last ``within_s``
        seconds)."""
        with self._session("count the phone's photos") as session:
            sender = BoardPhotoRow.phone == phone
            if address is not None:
                sender = or_(sender, BoardPhotoRow.address == address)
            query = select(func.count(BoardPhotoRow.id)).where(BoardPhotoRow.board_id == board_id, sender)
            if within_s is not None:
                since = datetime.now().astimezone() - timedelta(seconds=within_s)
                query = query.where(BoardPhotoRow.created_at >= since)
            return int(session.scalar(query) or 0)

    def add_board_mark(
        self, photo_id: int, task: str, kind: str, what: str | None, box: list[float] | None = None,
        category: str | None = None,
    ) -> None:  # fmt: skip
        with self._session("keep the mark") as session:
            session.add(BoardMarkRow(photo_id=photo_id, task=task, kind=kind, what=what, box=box, category=category))

    def board_object_marks(self, board_id: str) -> list[tuple[int, str, list[float], str | None]]:
        """The marks on objects that name a box: (photo id, kind, [x1, y1, x2, y2], class), oldest first."""
        with self._session("read the marks") as session:
            rows = session.execute(
                select(BoardMarkRow.photo_id, BoardMarkRow.kind, BoardMarkRow.box, BoardMarkRow.category)
                .join(BoardPhotoRow, BoardPhotoRow.id == BoardMarkRow.photo_id)
                .where(
                    BoardPhotoRow.board_id == board_id, BoardMarkRow.task == "objects", BoardMarkRow.box.is_not(None)
                )
                .order_by(BoardMarkRow.id)
            ).all()
        return [(int(p), k, [float(v) for v in b], c) for p, k, b, c in rows]

    def board_marks(self, board_id: str) -> list[tuple[int, str, str, str | None]]:
        """Every mark on a board's photos: (photo id, task, kind, what)."""
        with self._session("read the marks") as session:
            rows = session.execute(
                select(BoardMarkRow.photo_id, BoardMarkRow.task, BoardMarkRow.kind, BoardMarkRow.what)
                .join(BoardPhotoRow, BoardPhotoRow.id == BoardMarkRow.photo_id)
                .where(BoardPhotoRow.board_id == board_id)
                .order_by(BoardMarkRow.id)
            ).all()
        return [(int(p), t, k, w) for p, t, k, w in rows]
