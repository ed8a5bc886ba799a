"""Class boards: a teacher starts one, students' phones send photos to it (no account), every photo is analysed and
stored like any other (source "board"), the teacher can hide any, and the class marks what the models got wrong:
a tally per model, the "mistake museum"."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import math
import os
import re
import secrets
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from picmetric.core.datasets import DatasetFiles, DatasetPhoto, TruthBox
from picmetric.errors import NotFoundError, PicMetricError, ServerBusyError
from picmetric.service.analyses import AnalysisService, StoredAnalysis
from picmetric.service.types import Board, BoardEntry, converted

MARK_KINDS = {"false": "a false box", "duplicate": "a duplicate box", "missed": "something missed"}
MARK_TASKS = ("objects", "faces", "labels")
#: per phone: one photo every few seconds, a few dozen a lesson, each no larger than this
PHONE_PAUSE_S = 5.0
PHONE_MAX_PHOTOS = 20
PHONE_MAX_BYTES = 15_000_000
_DEVICE = re.compile(r"[0-9a-f]{16}")


@dataclass(frozen=True)
class BoardPhoto:
    """A photo on a board with its analysis (None when that is gone from the history)."""

    id: int
    entry: BoardEntry
    stored: StoredAnalysis | None


class ClassBoard:
    def __init__(self, service: AnalysisService) -> None:
        self.service = service
        self._repository = service._repository

    def start(self, title: str) -> Board:
        title = " ".join(title.split())[:120] or "Class board"
        return converted(self._repository.create_board(secrets.token_urlsafe(9), title), Board)

    def board(self, board_id: str) -> Board:
        found = self._repository.board(board_id) if board_id and len(board_id) <= 32 else None
        if found is None:
            raise NotFoundError("no class board at this address: ask for the QR code again")
        return converted(found, Board)

    def send(
        self, board_id: str, data: bytes, phone: str, name: str | None = None, address: str | None = None
    ) -> BoardPhoto:
        """A phone's photo: checked against the limits of the phone (its device key) and of its client address
        (None on this machine itself), analysed and stored, placed on the board."""
        self.board(board_id)
        if len(data) > PHONE_MAX_BYTES:
            raise PicMetricError(f"the photo is larger than {PHONE_MAX_BYTES / 1e6:.0f} MB: send a smaller one")
        if self._repository.phone_uploads(board_id, phone, address) >= PHONE_MAX_PHOTOS:
            raise PicMetricError(f"this phone has sent {PHONE_MAX_PHOTOS} photos to this board, the most it may")
        if self._repository.phone_uploads(board_id, phone, address, within_s=PHONE_PAUSE_S):
            raise ServerBusyError(f"one photo every {PHONE_PAUSE_S:.0f} seconds: wait a moment and send it again")
        stored = self.service.submit(data, source="board", name=name)
        record = self._repository.add_board_photo(board_id, stored.sha256, phone, address)
        if record is None:
            raise PicMetricError("the photo was deleted while it was being placed on the board; send it again")
        return BoardPhoto(record.id, converted(record, BoardEntry), stored)

    def device_token(self, device: str) -> str:
        """``device`` signed, for the phone's cookie: a phone keeps its key across tabs and reloads, and cannot
        make up a fresh one to start its limits afresh."""
        return f"{device}.{self._signature(device)}"

    def device_of(self, token: str | None) -> str | None:
        """The device key a cookie names, when its signature is this server's; else None."""
        if not isinstance(token, str):
            return None
        device, _, signature = token.partition(".")
        if not _DEVICE.fullmatch(device) or not hmac.compare_digest(signature, self._signature(device)):
            return None
        return device

    @staticmethod
    def new_device() -> str:
        return secrets.token_hex(8)

    def _signature(self, device: str) -> str:
        return hmac.new(self._device_secret, device.encode(), hashlib.sha256).hexdigest()[:32]

    @functools.cached_property
    def _device_secret(self) -> bytes:
        """This installation's key for device cookies, made once in the data folder (readable by this user only)."""
        path = self.service.settings.data_dir / "board-device.key"
        with contextlib.suppress(FileNotFoundError):
            return path.read_bytes()
        path.parent.mkdir(parents=True, exist_ok=True)
        staged = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
        staged.touch(mode=0o600)
        staged.write_bytes(secrets.token_bytes(32))
        with contextlib.suppress(FileExistsError):
            os.link(staged, path)  # whole or not at all; another process's, when it was first, is kept
        staged.unlink()
        return path.read_bytes()

    def records(self, board_id: str, *, hidden: bool = False, phone: str | None = None) -> list[BoardEntry]:
        """The board's photos, newest first, without their analyses (counting and listing cost one query)."""
        return [converted(r, BoardEntry) for r in self._repository.board_photos(board_id, hidden=hidden, phone=phone)]

    def with_analyses(self, records: list[BoardEntry]) -> list[BoardPhoto]:
        """These photos, each with its stored analysis (read one by one: ask only for the ones shown)."""
        return [BoardPhoto(record.id, record, self.service.get(record.sha256)) for record in records]

    def photos(self, board_id: str, *, hidden: bool = False, phone: str | None = None) -> list[BoardPhoto]:
        """The board's photos, newest first, each with its stored analysis."""
        return self.with_analyses(self.records(board_id, hidden=hidden, phone=phone))

    def hide(self, photo_id: int, hidden: bool = True) -> None:
        self._repository.hide_board_photo(photo_id, hidden)

    def mark(
        self, photo_id: int, task: str, kind: str, what: str | None = None, *,
        box: Sequence[float] | None = None, category: str | None = None,
    ) -> None:  # fmt: skip
        """A student's verdict. On objects it may name the box (the one found false or duplicate, or the one drawn
        around what was missed, in the photo's pixels) and its class: the board's ground truth (``ground_truth``)."""
        if task not in MARK_TASKS or kind not in MARK_KINDS:
            raise PicMetricError(f"a mark is one of {', '.join(MARK_KINDS)} for one of {', '.join(MARK_TASKS)}")
        if box is not None:
            values = [float(v) for v in box]
            if task != "objects" or len(values) != 4 or not all(math.isfinite(v) for v in values):
                raise PicMetricError("a marked box is four numbers x1, y1, x2, y2 on an object")
            if values[2] <= values[0] or values[3] <= values[1]:
                raise PicMetricError("a marked box needs a width and a height")
            box = values
        if category is not None and not (0 < len(category) <= 64 and category.isprintable()):
            raise PicMetricError("a class name is 1-64 printable characters")
        self._repository.add_board_mark(
            photo_id, task, kind, (what or "")[:120] or None, list(box) if box is not None else None, category
        )

    def ground_truth(self, board_id: str) -> DatasetFiles:
        """The board as labelled photos: on each shown photo, the objects the detector found, less those the class
        marked false or duplicate, plus those it drew around what was missed. A photo nobody marked keeps the
        model's answers: the class saw them and let them stand."""
        marks: dict[int, list[tuple[str, list[float], str | None]]] = {}
        for photo_id, kind, box, category in self._repository.board_object_marks(board_id):
            marks.setdefault(photo_id, []).append((kind, box, category))
        photos: list[DatasetPhoto] = []
        names: dict[str, None] = {}
        for photo in self.photos(board_id):
            analysis = photo.stored.analysis if photo.stored else None
            if analysis is None or analysis.detections is None:
                continue
            wrong = [box for kind, box, _ in marks.get(photo.id, []) if kind in ("false", "duplicate")]
            boxes = [
                TruthBox(label, tuple(float(v) for v in xyxy))  # type: ignore[arg-type]
                for label, xyxy in zip(analysis.detections.labels, analysis.detections.xyxy, strict=True)
                if not any(_same_box(xyxy, marked) for marked in wrong)
            ]
            boxes += [
                TruthBox(category, tuple(box))  # type: ignore[arg-type]
                for kind, box, category in marks.get(photo.id, []) if kind == "missed" and category
            ]  # fmt: skip
            names.update((b.category, None) for b in boxes)
            sha = photo.entry.sha256
            suffix = analysis.format.lower().replace("jpeg", "jpg")
            photos.append(DatasetPhoto(f"photo-{photo.id}.{suffix}", functools.partial(self._original, sha), photo.id,
                                       tuple(boxes)))  # fmt: skip
        if not photos:
            raise PicMetricError("the board has no photo with objects found yet")
        return DatasetFiles("objects", "board", photos[::-1], list(enumerate(names, 1)))

    def _original(self, sha256: str) -> bytes:
        picture = self.service.image(sha256)
        if picture is None:
            raise PicMetricError(f"photo {sha256[:12]} is no longer stored")
        return picture.content

    def tally(self, board_id: str) -> dict[str, Counter[str]]:
        """The mistake museum: per model (task), how many false, duplicate and missed marks the class made."""
        counts: dict[str, Counter[str]] = {task: Counter() for task in MARK_TASKS}
        for _photo, task, kind, _what in self._repository.board_marks(board_id):
            counts[task][kind] += 1
        return counts

    def exhibits(self, board_id: str) -> list[tuple[int, str, str, str | None]]:
        """Every mark, oldest first: (photo id, task, kind, what), for the museum's labels."""
        return self._repository.board_marks(board_id)


def _same_box(found: Sequence[float], marked: Sequence[float]) -> bool:
    """Whether a marked box is this found one (stored as floats: equal within half a pixel)."""
    return all(abs(float(a) - float(b)) <= 0.5 for a, b in zip(found, marked, strict=True))
