"""Thumbnails for tables: a browser URL when the store has one, else a small data URI (blobs are immutable)."""

from __future__ import annotations

import base64
import io

import streamlit as st
from PIL import Image, ImageOps

from picmetric.service.types import Picture


@st.cache_data(max_entries=2000, show_spinner=False)
def _data_uri(etag: str, _image: Picture) -> str:
    return f"data:{_image.content_type};base64," + base64.b64encode(_image.content).decode()


def thumbnail_src(thumbnail: Picture | None) -> str | None:
    """The store's own URL for a thumbnail, else a data URI (kept by its ETag: it names the content)."""
    if thumbnail is None:
        return None
    return thumbnail.url or _data_uri(thumbnail.etag, thumbnail)


@st.cache_data(max_entries=64, show_spinner=False)
def square_thumbnail(path: str, side: int = 320) -> bytes:
    """A centre-cropped square JPEG of a photo: the sample gallery's tiles are all the same size."""
    with Image.open(path) as photo:
        tile = ImageOps.fit(ImageOps.exif_transpose(photo).convert("RGB"), (side, side), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    tile.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()
