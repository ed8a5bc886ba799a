"""Decoding: bytes or a file in; a checked, oriented, RGB working copy out.

Everything a user can hand us is refused here with a typed, readable error, before any model sees it. (URLs are
``picmetric.core.fetching``'s.)
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import io
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import pillow_heif
import simplejpeg
from PIL import Image, UnidentifiedImageError

from picmetric.core.results import ImageFacts
from picmetric.errors import (
    ImageTooLargeError,
    InvalidImageError,
    ServerBusyError,
)
from picmetric.settings import Settings

pillow_heif.register_heif_opener()
# Pillow's own decompression-bomb guard (Image.MAX_IMAGE_PIXELS) stays on for the whole process; our pixel limit
# below is checked first and says more, and a bomb Pillow refuses is reported as ImageTooLargeError.

#: where a stored image came from; the History filters (dashboard, API, CLI) offer these
ImageSource = Literal["upload", "url", "s3", "sample", "camera", "board", "dataset"]
IMAGE_SOURCES: tuple[str, ...] = get_args(ImageSource)
#: file names a folder or bucket walk takes for photos (the content is still checked when it is decoded)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".heic", ".heif", ".avif")
_EXIF_ORIENTATION = 0x0112
#: how to turn the stored pixels upright for each EXIF orientation (as ``ImageOps.exif_transpose`` does)
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_TRANSPOSING_ORIENTATIONS = {5, 6, 7, 8}  # orientations that swap width and height
#: libjpeg warnings that say nothing about the picture: bytes after its last scan (some cameras write them)
_HARMLESS_JPEG_WARNINGS = ("extraneous bytes",)
_HIGH_BIT_DEPTH_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


@dataclass(frozen=True, kw_only=True, eq=False)
class LoadedImage(ImageFacts):
    """A decoded image: its facts, its bytes as sent, and ``pixels``, the working copy (RGB uint8, longest side
    capped); ``scale`` maps working-copy coordinates to original ones (``original = working * scale``)."""

    data: bytes
    pixels: np.ndarray
    scale: float


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB; transparency is flattened onto white, 16-bit values are scaled, not clipped."""
    if image.mode in _HIGH_BIT_DEPTH_MODES:
        values = np.asarray(image, dtype=np.float32)
        peak = 65535.0 if image.mode != "F" else max(float(values.max()), 1.0)
        if image.mode == "I" and values.max() <= 255:
            peak = 255.0
        gray = np.clip(values / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(gray, "L").convert("RGB")
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB") if image.mode != "RGB" else image


class _PixelBudget:
    """Pixels being decoded at once in this process, across threads: a full-size decode costs 3-4 bytes a pixel
    however small the file, so large decodes wait for each other instead of adding up."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._in_use = 0

    @contextmanager
    def reserve(self, pixels: int, settings: Settings) -> Iterator[None]:
        budget = settings.decode_pixel_budget
        pixels = min(pixels, budget)  # one image alone may use the whole budget
        with self._changed:
            if not self._changed.wait_for(lambda: self._in_use + pixels <= budget, timeout=settings.decode_wait_s):
                raise ServerBusyError("other large images are being decoded right now; please retry in a moment")
            self._in_use += pixels
        try:
            yield
        finally:
            with self._changed:
                self._in_use -= pixels
                self._changed.notify_all()


_DECODING = _PixelBudget()
_LARGE_DECODE = 10_000_000  # pixels; after such a decode, freed memory is handed back to the system


def _return_memory() -> None:
    """glibc keeps freed memory in its arenas; after a large decode, give it back so RSS falls again."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _decode(image: Image.Image, data: bytes, max_side: int) -> Image.Image | np.ndarray:
    """The stored pixels, decoded once. RGB and greyscale JPEGs go through libjpeg-turbo (simplejpeg), scaled in
    the decoder towards ``max_side`` like Pillow's draft, and strictly: a JPEG's entropy-coded data has no
    checksum, so a damaged middle would otherwise decode as grey blocks and be analysed as if whole. Pillow's own
    decoders refuse damaged PNG, TIFF, GIF, HEIC and AVIF data, and every format cut short."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Corrupt EXIF data": the picture itself is fine
            if image.format == "JPEG" and image.mode in ("RGB", "L"):
                return _decode_jpeg(data, image.mode, image.size, max_side)
            image.seek(0)  # first frame of an animation
            image.load()
            return image
    except (OSError, ValueError, SyntaxError, EOFError, RuntimeError) as exc:  # RuntimeError: AVIF's decoder
        raise InvalidImageError(f"the image data is damaged or truncated ({exc})") from None


def _decode_jpeg(data: bytes, mode: str, size: tuple[int, int], max_side: int) -> Image.Image | np.ndarray:
    width, height = size
    # the smallest decoder scale whose longest side still reaches the working size
    wanted = {"min_width": min(width, max_side)} if width >= height else {"min_height": min(height, max_side)}
    colorspace = "GRAY" if mode == "L" else "RGB"
    try:
        pixels = simplejpeg.decode_jpeg(data, colorspace=colorspace, strict=True, **wanted)
    except ValueError as exc:
        if not any(harmless in str(exc) for harmless in _HARMLESS_JPEG_WARNINGS):
            raise
        pixels = simplejpeg.decode_jpeg(data, colorspace=colorspace, strict=False, **wanted)
    return Image.fromarray(pixels[:, :, 0], "L") if mode == "L" else pixels  # RGB: the decoder's own array


def _working_copy(decoded: Image.Image | np.ndarray, orientation: int, max_side: int) -> np.ndarray:
    """Orient and shrink a decoded image to the copy the models see (read-only RGB), holding at most one extra
    full-size image. An upright RGB array from the JPEG decoder that is small enough is that copy already: it is
    used as it is (a 1280x720 photo was copied into Pillow and out again, twice 2.8 MB, for nothing)."""
    if isinstance(decoded, np.ndarray):
        if orientation not in _UPRIGHT and max(decoded.shape[:2]) <= max_side:
            decoded.flags.writeable = False
            return decoded
        decoded = Image.fromarray(decoded)
    return np.asarray(_upright_and_small(decoded, orientation, max_side), dtype=np.uint8)


def _upright_and_small(image: Image.Image, orientation: int, max_side: int) -> Image.Image:
    oriented = image.transpose(_UPRIGHT[orientation]) if orientation in _UPRIGHT else image
    rgb = _to_rgb(oriented)
    del oriented
    longest = max(rgb.size)
    if longest > max_side:
        factor = max_side / longest
        rgb = rgb.resize(
            (max(1, round(rgb.width * factor)), max(1, round(rgb.height * factor))),
            Image.Resampling.BILINEAR,
            reducing_gap=2.0,
        )
    return rgb


def display_name(name: str | None) -> str | None:
    """A file name as a person gave it, safe to store and show: control characters (NUL breaks PostgreSQL text)
    dropped, 255 characters at most; None when nothing is left."""
    if name is None:
        return None
    cleaned = "".join(ch for ch in name if ch.isprintable()).strip()[:255]
    return cleaned or None


def load_image(
    source: bytes | str | Path,
    *,
    settings: Settings,
    origin: str = "upload",
    name: str | None = None,
) -> LoadedImage:
    """Decode an image from bytes or a file path and prepare the working copy the models see (its size and the
    upload limits are ``settings``')."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise InvalidImageError(f"no such file: {path}")
        if path.stat().st_size > settings.max_upload_bytes:
            raise ImageTooLargeError(
                f"{path.name} is {path.stat().st_size / 1e6:.1f} MB; "
                f"the limit is {settings.max_upload_bytes / 1e6:.0f} MB"
            )
        name = name or path.name
        data = path.read_bytes()
    else:
        data = bytes(source)
    if not data:
        raise InvalidImageError("the file is empty (0 bytes)")
    if len(data) > settings.max_upload_bytes:
        raise ImageTooLargeError(
            f"the file is {len(data) / 1e6:.1f} MB; the limit is {settings.max_upload_bytes / 1e6:.0f} MB"
        )
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:  # Pillow refuses more than twice its MAX_IMAGE_PIXELS at open
        limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
        raise ImageTooLargeError(
            f"the image has more than {limit / 1e6:.0f} megapixels; the limit is {settings.max_pixels / 1e6:.0f}"
        ) from None
    except UnidentifiedImageError:
        raise InvalidImageError(
            "this is not an image PicMetric can read (JPEG, PNG, WebP, GIF, BMP, TIFF, HEIC)"
        ) from None
    except Exception as exc:  # a damaged header can raise almost anything inside a decoder
        raise InvalidImageError(f"the image header is damaged ({exc})") from None

    width, height = image.size
    if width < 1 or height < 1:
        raise InvalidImageError(f"the image has no pixels ({width}x{height})")
    if width > settings.max_dimension or height > settings.max_dimension:
        raise ImageTooLargeError(
            f"the image is {width}x{height}; each side must be at most {settings.max_dimension} pixels"
        )
    if width * height > settings.max_pixels:
        raise ImageTooLargeError(
            f"the image has {width * height / 1e6:.0f} megapixels; the limit is {settings.max_pixels / 1e6:.0f}"
        )

    image_format = (image.format or "unknown").upper()
    try:
        orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:  # unreadable EXIF: treat as upright, as viewers do
        orientation = 1
    cap = settings.working_max_side
    if image_format == "JPEG" and image.mode not in ("RGB", "L"):
        # CMYK and other Pillow decodes: let libjpeg decode at a reduced scale when the working copy is smaller
        image.draft(image.mode, (cap, cap) if max(width, height) > cap else (width, height))
    decoded_pixels = image.size[0] * image.size[1]  # an upper bound where the decoder scales down
    with _DECODING.reserve(decoded_pixels, settings):
        pixels = _working_copy(_decode(image, data, cap), orientation, cap)
    del image
    if decoded_pixels >= _LARGE_DECODE:
        _return_memory()
    # Original dimensions after EXIF orientation (the draft above may have shrunk the decoded size).
    orig_w, orig_h = (height, width) if orientation in _TRANSPOSING_ORIENTATIONS else (width, height)
    return LoadedImage(
        data=data,
        sha256=hashlib.sha256(data).hexdigest(),
        md5=hashlib.md5(data).hexdigest(),
        format=image_format,
        width=orig_w,
        height=orig_h,
        size_bytes=len(data),
        pixels=pixels,
        scale=orig_w / pixels.shape[1],
        source=origin,
        name=display_name(name),
    )
