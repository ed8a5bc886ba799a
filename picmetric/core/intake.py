"""Image intake: bytes, a path or a URL in; a checked, oriented, RGB working copy out.

Everything a user can hand us is refused here with a typed, readable error, before any model sees it.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import io
import ipaddress
import re
import socket
import threading
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args
from urllib.parse import urljoin, urlsplit

import anyio
import anyio.to_thread
import httpx
import numpy as np
import pillow_heif
import simplejpeg
from PIL import Image, UnidentifiedImageError

from picmetric.core.results import ImageFacts
from picmetric.errors import (
    FetchError,
    ImageTooLargeError,
    InvalidImageError,
    ServerBusyError,
    URLRefusedError,
    URLTooLongError,
)
from picmetric.settings import Settings, get_settings

pillow_heif.register_heif_opener()
# Pillow's own decompression-bomb guard (Image.MAX_IMAGE_PIXELS) stays on for the whole process; our pixel limit
# below is checked first and says more, and a bomb Pillow refuses is reported as ImageTooLargeError.

#: where a stored image came from; the History filters (dashboard, API, CLI) offer these
ImageSource = Literal["upload", "url", "s3", "sample", "camera", "board"]
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


# --- URL intake ---------------------------------------------------------------------------------------------------

_ACCEPTED_CONTENT_TYPES = ("image/", "application/octet-stream", "binary/octet-stream")
#: longer than any image address needs; the URL is stored as the image's name and a job's input
MAX_URL_LENGTH = 4096


def check_url(url: str, settings: Settings) -> str:
    """A URL a client sent, stripped and checked before anything is read: http(s) with a valid host name and port,
    or s3:// inside a location of ``s3_read_allow``. An s3:// URL reads with the server's own credentials, so
    without that allow-list a caller could have the server fetch (and then serve) any object they reach: a
    confused deputy. ``picmetric ingest`` reads buckets without this check; it is the operator's own command."""
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise URLTooLongError(f"the URL is {len(url):,} characters long; the limit is {MAX_URL_LENGTH:,}")
    if url.lower().startswith("s3://"):
        bucket, key = check_s3_location(url[5:])
        if not any(_s3_allows(entry, bucket, key) for entry in settings.s3_read_allow):
            raise URLRefusedError(
                "s3:// URLs are not accepted here: only locations listed in PICMETRIC_S3_READ_ALLOW "
                "(bucket/prefix) may be read; `picmetric ingest` reads a bucket"
            )
        return f"s3://{bucket}/{key}"
    check_http_url(url)
    return url


#: characters an S3 key sent by a client may not hold: a URL's query and fragment marks (servers and clients read
#: them as such, not as part of the key), a backslash (a path separator to some servers) and control characters
_S3_KEY_REFUSED = re.compile(r"[?#\\\x00-\x1f\x7f]")


def check_s3_location(location: str) -> tuple[str, str]:
    """``bucket/key`` of an s3:// URL, split and refused (400) when the key could name something other than it
    says: ``.`` or ``..`` segments, empty segments, ``?``, ``#``, backslashes or control characters. Such keys
    never reach the object store, where they were answered as outages or read elsewhere."""
    bucket, _, key = location.partition("/")
    if not bucket or not key:
        raise URLRefusedError("an s3:// URL names a bucket and an object in it: s3://bucket/path/to/photo.jpg")
    if found := _S3_KEY_REFUSED.search(location):
        raise URLRefusedError(f"an s3:// URL may not contain {found.group()!r}")
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise URLRefusedError("an s3:// key may not contain '.' or '..' segments or an empty one ('//')")
    return bucket, key


def _s3_allows(entry: str, bucket: str, key: str) -> bool:
    """Whether the allow-list entry ``bucket[/prefix]`` covers ``bucket/key``: the bucket matched exactly and the
    prefix on ``/`` boundaries (``pub`` is not ``pub-secret``, ``pub/2026`` is not ``pub/2026-private/``); an entry
    naming one object allows that object."""
    allowed_bucket, _, prefix = entry.strip().strip("/").partition("/")
    if not allowed_bucket or allowed_bucket != bucket:
        return False
    prefix = prefix.strip("/")
    return not prefix or key == prefix or key.startswith(prefix + "/")


def check_http_url(url: str) -> None:
    """Refuse what is not a well-formed http(s) URL with a readable message (a port out of range, two ports,
    an empty or over-long label in the host name), so it never reaches a socket."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. brackets that hold no IPv6 address
        raise URLRefusedError(f"the URL is malformed ({exc})") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise URLRefusedError(f"only http and https URLs are accepted, not {parts.scheme or 'a bare path'!r}")
    if parts.username or parts.password:
        raise URLRefusedError("URLs with a user name or password are not accepted")
    host = parts.hostname
    if not host:
        raise URLRefusedError("the URL has no host name")
    try:
        parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except ValueError:
        raise URLRefusedError("the URL's port must be one number from 1 to 65535") from None
    if parts.port == 0:
        raise URLRefusedError("the URL's port must be one number from 1 to 65535")
    if ":" in host:  # an IPv6 literal: urlsplit already checked its brackets
        try:
            ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            raise URLRefusedError(f"{host!r} is not a valid IPv6 address") from None
        return
    labels = host[:-1].split(".") if host.endswith(".") else host.split(".")
    for label in labels:
        if not label:
            raise URLRefusedError(f"the host name {host!r} has an empty part (two dots, or a dot at its start)")
        if len(label) > 63:
            raise URLRefusedError(f"a part of the host name {host[:100]!r} is longer than 63 characters")
        try:
            label.encode("idna")  # also refuses an internationalised label whose ASCII form is over 63
        except UnicodeError:
            raise URLRefusedError(f"the host name {host[:100]!r} is not a valid name") from None
    if len(host) > 253:
        raise URLRefusedError("the host name is longer than 253 characters")


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


async def _read_body(response: httpx.Response, url: str, limit: int) -> bytes:
    if response.status_code >= 400:
        raise FetchError(f"the server answered HTTP {response.status_code} for {url}")
    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type and not content_type.startswith(_ACCEPTED_CONTENT_TYPES):
        raise FetchError(f"the URL returned {content_type}, not an image")
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise FetchError(f"the image is {int(declared) / 1e6:.1f} MB; the limit is {limit / 1e6:.0f} MB")
    chunks, received = [], 0
    async for chunk in response.aiter_raw():  # as sent: httpx would inflate a compressed body unbounded
        received += len(chunk)
        if received > limit:
            raise FetchError(f"the download exceeded the {limit / 1e6:.0f} MB limit")
        chunks.append(chunk)
    encodings = [e.strip().lower() for e in response.headers.get("content-encoding", "").split(",") if e.strip()]
    return _inflate(b"".join(chunks), encodings, limit)


def _inflate(data: bytes, encodings: list[str], limit: int) -> bytes:
    """Undo gzip/deflate content encodings (outermost last in the header), never producing more than ``limit``
    bytes at any layer: 1.8 KB of gzip inside gzip expands to 1 GiB in one unbounded call."""
    for encoding in reversed(encodings):
        if encoding == "identity":
            continue
        if encoding not in ("gzip", "x-gzip", "deflate"):
            raise FetchError(f"the server sent the image {encoding}-encoded, which PicMetric does not decode")
        inflater = zlib.decompressobj(wbits=zlib.MAX_WBITS | 32)  # gzip or zlib, recognised by their header
        try:
            data = inflater.decompress(data, limit + 1)
        except zlib.error:
            raise FetchError(f"the server's {encoding} data is damaged") from None
        if len(data) > limit or inflater.unconsumed_tail:
            raise FetchError(f"the download exceeded the {limit / 1e6:.0f} MB limit once decompressed")
    return data


def fetch_image_bytes(url: str, *, settings: Settings | None = None) -> bytes:
    """``fetch_image_bytes_async`` for callers without an event loop (workers, the CLI, the dashboard)."""
    return anyio.run(functools.partial(fetch_image_bytes_async, url, settings=settings))


async def fetch_image_bytes_async(url: str, *, settings: Settings | None = None) -> bytes:
    """Download an image over http(s) with SSRF protection, redirect checks, a byte limit and one deadline for
    the whole download: every DNS lookup, connection, response head (a server may send it a line a second),
    redirect and body read together."""
    settings = settings or get_settings()
    timeout_s = settings.url_timeout_s
    try:
        with anyio.fail_after(timeout_s):
            return await _fetch(url.strip(), settings)
    except TimeoutError:
        raise FetchError(f"the download of {url[:200]} did not finish within {timeout_s:g} s") from None


async def _fetch(url: str, settings: Settings) -> bytes:
    current = url
    async with httpx.AsyncClient(follow_redirects=False, trust_env=False, timeout=settings.url_timeout_s) as client:
        for _hop in range(settings.url_max_redirects + 1):
            check_http_url(current)  # the URL given, and each redirect's target
            parts = urlsplit(current)
            assert parts.hostname is not None
            port = parts.port or (443 if parts.scheme == "https" else 80)
            address = await anyio.to_thread.run_sync(_resolve, parts.hostname, port, settings, abandon_on_cancel=True)
            # Connect to the address we checked (no second DNS lookup to rebind), but speak to the named host.
            netloc = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
            request = client.build_request(
                "GET",
                parts._replace(netloc=netloc).geturl(),
                headers={
                    "Host": parts.netloc.rsplit("@", 1)[-1],
                    "User-Agent": "PicMetric/1.0",
                    "Accept-Encoding": "identity",  # photos are compressed already
                },
                extensions={"sni_hostname": parts.hostname} if parts.scheme == "https" else {},
            )
            try:
                response = await client.send(request, stream=True)
                try:
                    if not response.is_redirect:
                        return await _read_body(response, url, settings.max_upload_bytes)
                    location = response.headers.get("location")
                finally:
                    await response.aclose()
            except httpx.HTTPError as exc:
                raise FetchError(f"could not fetch {url[:200]}: {exc.__class__.__name__}") from None
            if not location:
                raise FetchError("the server sent a redirect without a location")
            current = urljoin(current, location)
    raise FetchError(f"too many redirects (more than {settings.url_max_redirects})")


def fetch_image(url: str, *, settings: Settings | None = None) -> LoadedImage:
    """Fetch a URL and decode it like an upload; the URL is kept as the image's name."""
    data = fetch_image_bytes(url, settings=settings)
    return load_image(data, settings=settings, origin="url", name=url)
