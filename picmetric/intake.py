"""Image intake: bytes, a path or a URL in; a checked, oriented, RGB working copy out.

Everything a user can hand us is refused here with a typed, readable error, before any model sees it.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import io
import ipaddress
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args
from urllib.parse import urljoin, urlsplit

import httpx
import numpy as np
import pillow_heif
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import FetchError, ImageTooLargeError, InvalidImageError, ServerBusyError, URLRefusedError
from .settings import Settings, get_settings

pillow_heif.register_heif_opener()
# Pillow's own decompression-bomb guard (Image.MAX_IMAGE_PIXELS) stays on for the whole process; our pixel limit
# below is checked first and says more, and a bomb Pillow refuses is reported as ImageTooLargeError.

#: file names a folder or bucket walk takes for photos (the content is still checked when it is decoded)
#: where a stored image came from; the History filters (dashboard, API, CLI) offer these
ImageSource = Literal["upload", "url", "s3", "sample", "camera"]
IMAGE_SOURCES: tuple[str, ...] = get_args(ImageSource)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".heic", ".heif", ".avif")
_EXIF_ORIENTATION = 0x0112
_TRANSPOSING_ORIENTATIONS = {5, 6, 7, 8}  # orientations that swap width and height
_HIGH_BIT_DEPTH_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


@dataclass(frozen=True)
class LoadedImage:
    """A decoded image. ``pixels`` is the working copy (RGB uint8, longest side capped); ``scale`` maps
    working-copy coordinates to original ones (``original = working * scale``)."""

    data: bytes
    sha256: str
    md5: str
    format: str
    width: int
    height: int
    pixels: np.ndarray
    scale: float
    source: str = "upload"
    name: str | None = None

    @property
    def working_size(self) -> tuple[int, int]:
        return self.pixels.shape[1], self.pixels.shape[0]


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


def _working_copy(image: Image.Image, orientation: int, max_side: int) -> Image.Image:
    """Decode, orient and shrink to the copy the models see, holding at most one extra full-size image."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Corrupt EXIF data": the picture itself is fine
            image.seek(0)  # first frame of an animation
            image.load()
            # exif_transpose copies even an upright image: call it only when there is something to turn
            oriented = ImageOps.exif_transpose(image) if orientation != 1 else image
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise InvalidImageError(f"the image data is damaged or truncated ({exc})") from None
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
    settings: Settings | None = None,
    origin: str = "upload",
    name: str | None = None,
) -> LoadedImage:
    """Decode an image from bytes or a file path and prepare the working copy the models see."""
    settings = settings or get_settings()
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
    if image_format == "JPEG":
        # Let libjpeg decode at a reduced scale when the working copy will be smaller anyway.
        cap = settings.working_max_side
        image.draft("RGB", (cap, cap) if max(width, height) > cap else (width, height))
    decoded_pixels = image.size[0] * image.size[1]
    with _DECODING.reserve(decoded_pixels, settings):
        rgb = _working_copy(image, orientation, settings.working_max_side)
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
        pixels=np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8)),
        scale=orig_w / rgb.width,
        source=origin,
        name=display_name(name),
    )


# --- URL intake ---------------------------------------------------------------------------------------------------

_ACCEPTED_CONTENT_TYPES = ("image/", "application/octet-stream", "binary/octet-stream")


def _allowed_networks(settings: Settings) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(cidr, strict=True) for cidr in settings.url_allow_networks]


# IPv6 prefixes whose last 32 bits are an IPv4 address that the network delivers to: IPv4-translated (RFC 2765),
# NAT64 well-known and local-use (RFC 6052, 8215), and the deprecated IPv4-compatible form (::a.b.c.d).
_IPV4_IN_LAST_32_BITS = [
    ipaddress.IPv6Network(n) for n in ("::ffff:0:0:0/96", "64:ff9b::/96", "64:ff9b:1::/48", "::/96")
]


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """Every IPv4 address an IPv6 address carries: mapped, translated, NAT64, IPv4-compatible, 6to4, Teredo."""
    found = []
    if ip.ipv4_mapped:
        found.append(ip.ipv4_mapped)
    if (
        any(ip in net for net in _IPV4_IN_LAST_32_BITS)
        and int(ip) & 0xFFFFFFFF
        and ip not in (ipaddress.IPv6Address("::"), ipaddress.IPv6Address("::1"))
    ):
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    if ip.sixtofour:
        found.append(ip.sixtofour)
    if ip.teredo:
        found.extend(ip.teredo)  # (server, client)
    return found


def check_address(address: str, settings: Settings) -> None:
    """Refuse addresses that are not public internet ones (loopback, private, link-local and cloud metadata,
    multicast, reserved), also when an IPv6 address embeds such an IPv4 one (NAT64, 6to4, Teredo, ...), unless a
    configured network explicitly allows them."""
    ip = ipaddress.ip_address(address)
    candidates: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        candidates += _embedded_ipv4(ip)
    allowed = _allowed_networks(settings)
    for candidate in candidates:
        if any(candidate.version == net.version and candidate in net for net in allowed):
            continue
        if not candidate.is_global or candidate.is_multicast:
            shown = f"{ip} (carrying {candidate})" if candidate != ip else str(ip)
            raise URLRefusedError(
                f"refusing to fetch from {shown}: it is not a public internet address "
                "(PICMETRIC_URL_ALLOW_NETWORKS can allow a network)"
            )


def _resolve(host: str, port: int, settings: Settings) -> str:
    """Resolve ``host`` once and check every address; the connection then goes to the checked address only."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise FetchError(f"cannot resolve host {host!r}") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    for address in addresses:
        check_address(address, settings)
    return addresses[0]


def _read_body(response: httpx.Response, url: str, limit: int, deadline: float, timeout_s: float) -> bytes:
    if response.status_code >= 400:
        raise FetchError(f"the server answered HTTP {response.status_code} for {url}")
    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type and not content_type.startswith(_ACCEPTED_CONTENT_TYPES):
        raise FetchError(f"the URL returned {content_type}, not an image")
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise FetchError(f"the image is {int(declared) / 1e6:.1f} MB; the limit is {limit / 1e6:.0f} MB")
    chunks, received = [], 0
    for chunk in response.iter_bytes():
        received += len(chunk)
        if received > limit:
            raise FetchError(f"the download exceeded the {limit / 1e6:.0f} MB limit")
        if time.monotonic() > deadline:  # a server trickling bytes never trips a per-read timeout
            raise FetchError(f"the download did not finish within {timeout_s:g} s")
        chunks.append(chunk)
    return b"".join(chunks)


def fetch_image_bytes(url: str, *, settings: Settings | None = None) -> bytes:
    """Download an image over http(s) with SSRF protection, redirect checks, a byte limit and one deadline for
    the whole download (every redirect, connection and read together)."""
    settings = settings or get_settings()
    current = url.strip()
    timeout_s = settings.url_timeout_s
    deadline = time.monotonic() + timeout_s
    with httpx.Client(follow_redirects=False, trust_env=False) as client:
        for _hop in range(settings.url_max_redirects + 1):
            parts = urlsplit(current)
            if parts.scheme not in ("http", "https"):
                raise URLRefusedError(f"only http and https URLs are accepted, not {parts.scheme or 'a bare path'!r}")
            if not parts.hostname:
                raise URLRefusedError("the URL has no host name")
            if parts.username or parts.password:
                raise URLRefusedError("URLs with a user name or password are not accepted")
            port = parts.port or (443 if parts.scheme == "https" else 80)
            address = _resolve(parts.hostname, port, settings)
            # Connect to the address we checked (no second DNS lookup to rebind), but speak to the named host.
            netloc = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
            request = client.build_request(
                "GET",
                parts._replace(netloc=netloc).geturl(),
                headers={"Host": parts.netloc.rsplit("@", 1)[-1], "User-Agent": "PicMetric/1.0"},
                extensions={
                    "timeout": httpx.Timeout(max(0.001, deadline - time.monotonic())).as_dict(),
                    **({"sni_hostname": parts.hostname} if parts.scheme == "https" else {}),
                },
            )
            try:
                response = client.send(request, stream=True)
                try:
                    if not response.is_redirect:
                        return _read_body(response, url, settings.max_upload_bytes, deadline, timeout_s)
                    location = response.headers.get("location")
                finally:
                    response.close()
            except httpx.TimeoutException:
                raise FetchError(f"the server at {parts.hostname} did not answer within {timeout_s:g} s") from None
            except httpx.HTTPError as exc:
                raise FetchError(f"could not fetch {url}: {exc.__class__.__name__}") from None
            if not location:
                raise FetchError("the server sent a redirect without a location")
            current = urljoin(current, location)
    raise FetchError(f"too many redirects (more than {settings.url_max_redirects})")


def fetch_image(url: str, *, settings: Settings | None = None) -> LoadedImage:
    """Fetch a URL and decode it like an upload; the URL is kept as the image's name."""
    data = fetch_image_bytes(url, settings=settings)
    return load_image(data, settings=settings, origin="url", name=url)
