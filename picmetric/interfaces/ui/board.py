"""What the class board and the phone page both show of a photo on a board."""

from __future__ import annotations

import io
import ipaddress
import json
from urllib.parse import urlsplit

import streamlit as st
from PIL import Image, ImageDraw, ImageOps

from picmetric.core.analyzer import Analysis
from picmetric.interfaces.ui.charts import top_label_text
from picmetric.interfaces.ui.resources import app_settings
from picmetric.service.analyses import AnalysisService
from picmetric.service.board import BoardPhoto, ClassBoard
from picmetric.service.types import Picture

#: the signed device key a phone keeps for a year: its limits and "Your photos" outlive tabs and reloads
DEVICE_COOKIE = "picmetric_device"


def phone_key(boards: ClassBoard) -> str:
    """This phone's device key: from its signed cookie (sent with the page's connection), else a new one that a
    cookie keeps from now on, for every tab and reload of this browser."""
    from_cookie = boards.device_of(st.context.cookies.get(DEVICE_COOKIE))
    device = st.session_state.get("phone-id") or from_cookie or boards.new_device()
    st.session_state["phone-id"] = device
    if from_cookie != device:
        cookie = f"{DEVICE_COOKIE}={boards.device_token(device)}; path=/; max-age=31536000; SameSite=Lax"
        # Streamlit has no cookie setter: a script in a same-origin frame writes it for this site (st.iframe runs it)
        st.iframe(f"<script>document.cookie = {json.dumps(cookie)};</script>", height=1)
    return device


def join_address(board_id: str) -> tuple[str, bool]:
    """The address phones open to join a board, and whether no phone can reach it. It names the host the teacher
    typed, unless that is this machine's own name for itself (localhost): then the network address
    ``picmetric dashboard --lan`` found, when there is one."""
    typed = urlsplit(st.context.url or "http://localhost:8501/board")
    base = f"{typed.scheme}://{typed.netloc}"
    loopback = typed.hostname in (None, "localhost") or _is_loopback(typed.hostname or "")
    lan = app_settings().lan_url
    if loopback and lan:
        base = lan.rstrip("/")
    return f"{base}/join?board={board_id}", loopback and not lan


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def client_address() -> str | None:
    """The browser's address as this server sees it; None on this machine itself (Streamlit gives none there)."""
    address = st.context.ip_address
    return address if isinstance(address, str) else None


def photo_picture(service: AnalysisService, photo: BoardPhoto) -> bytes | None:
    """The photo with its boxes (the stored render), else the photo itself. The bytes are kept by their ETag,
    which names their content: the board, redrawn every second, reads each picture from the store once."""
    found = service.image(photo.entry.sha256, "objects") or service.image(photo.entry.sha256, "original")
    return _content(found.etag, found) if found else None


@st.cache_data(max_entries=256, show_spinner=False)
def _content(etag: str, _image: Picture) -> bytes:
    """A picture's bytes, kept by its ETag (it names the content)."""
    return _image.content


def board_photo_caption(photo: BoardPhoto) -> str:
    analysis = photo.stored.analysis if photo.stored else None
    if analysis is None:
        return f"Photo {photo.id}: no longer in the history"
    objects = sorted(set(analysis.detections.labels)) if analysis.detections is not None else []
    faces = len(analysis.faces) if analysis.faces is not None else 0
    parts = [
        top_label_text(analysis.classification),
        ", ".join(objects[:4]),
        f"{faces} face{'s' if faces != 1 else ''}",
    ]
    return f"Photo {photo.id} · " + " · ".join(p for p in parts if p)


def answers(analysis: Analysis | None) -> list[str]:
    """What the three models answered, one line each ("person 87%", "face 92%", "suit 20%"), to mark one wrong."""
    if analysis is None:
        return []
    found = []
    if analysis.detections is not None:
        found += [f"{label} {p:.0%}" for label, p in zip(analysis.detections.labels, analysis.detections.confidence,
                                                         strict=True)]  # fmt: skip
    if analysis.faces is not None:
        found += [f"face {p:.0%}" for p in analysis.faces.confidence]
    if analysis.classification is not None:
        labels = analysis.classification
        found += [f"{name} {p:.0%}" for name, p in zip(labels.names, labels.confidence, strict=True)]
    return found


def drawn_box(across: tuple[int, int], down: tuple[int, int], width: int, height: int) -> list[float] | None:
    """A box a student drew with two range sliders (percent of the photo), in the photo's pixels; None when it
    has no width or height."""
    if across[1] <= across[0] or down[1] <= down[0]:
        return None
    return [across[0] / 100 * width, down[0] / 100 * height, across[1] / 100 * width, down[1] / 100 * height]


@st.cache_data(max_entries=64, show_spinner=False)
def box_preview(etag: str, _picture: Picture, box: list[float] | None) -> bytes:
    """The photo (at most 640 px) with the box being drawn, so the sliders are seen to move it."""
    with Image.open(io.BytesIO(_picture.content)) as opened:
        photo = ImageOps.exif_transpose(opened).convert("RGB")
    scale = min(1.0, 640 / max(photo.size))
    photo = photo.resize((round(photo.width * scale), round(photo.height * scale)))
    if box is not None:
        ImageDraw.Draw(photo).rectangle([v * scale for v in box], outline=(255, 150, 0), width=4)
    out = io.BytesIO()
    photo.save(out, "JPEG", quality=85)
    return out.getvalue()
