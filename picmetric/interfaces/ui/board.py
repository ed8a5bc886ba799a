"""What the class board and the phone page both show of a photo on a board."""

from __future__ import annotations

from picmetric.service.analyses import AnalysisService
from picmetric.service.board import BoardPhoto


def photo_picture(service: AnalysisService, photo: BoardPhoto) -> bytes | None:
    """The photo with its boxes (the stored render), else the photo itself."""
    found = service.image_bytes(photo.record.sha256, "objects") or service.image_bytes(photo.record.sha256, "original")
    return found[0] if found else None


def board_photo_caption(photo: BoardPhoto) -> str:
    analysis = photo.stored.analysis if photo.stored else None
    if analysis is None:
        return f"Photo {photo.id}: no longer in the history"
    top = analysis.classification.top if analysis.classification else None
    objects = sorted(set(analysis.detections.labels)) if analysis.detections is not None else []
    faces = len(analysis.faces) if analysis.faces is not None else 0
    parts = [
        f"{top[0]} {top[1]:.0%}" if top else "",
        ", ".join(objects[:4]),
        f"{faces} face{'s' if faces != 1 else ''}",
    ]
    return f"Photo {photo.id} · " + " · ".join(p for p in parts if p)
