"""Thumbnails for tables: a browser URL when the store has one, else a small data URI (blobs are immutable)."""

from __future__ import annotations

import base64
import io

import streamlit as st
from PIL import Image, ImageOps

from ..storage import Repository


@st.cache_data(max_entries=2000, show_spinner=False)
def _data_uri(key: str, _repository: Repository) -> str:
    return "data:image/webp;base64," + base64.b64encode(_repository.blob(key)).decode()


def thumbnail_src(repository: Repository, key: str | None) -> str | None:
    if key is None:
        return None
    return repository.blobs.url(key) or _data_uri(key, repository)


@st.cache_data(max_entries=64, show_spinner=False)
def square_thumbnail(path: str, side: int = 320) -> bytes:
    """A centre-cropped square JPEG of a photo: the sample gallery's tiles are all the same size."""
    with Image.open(path) as photo:
        tile = ImageOps.fit(ImageOps.exif_transpose(photo).convert("RGB"), (side, side), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    tile.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()
