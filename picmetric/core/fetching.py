"""Fetching: an image URL in, its bytes out, with the guards a server that fetches for strangers needs: public
addresses only (checked at every redirect, also through IPv6 forms that carry an IPv4 address), one deadline for
the whole download, a byte limit, and s3:// only inside the allow-list."""

from __future__ import annotations

import functools
import ipaddress
import re
import socket
import zlib
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import anyio
import anyio.to_thread
import httpx

from picmetric.core.decoding import LoadedImage, load_image
from picmetric.errors import FetchError, URLRefusedError, URLTooLongError
from picmetric.settings import Settings

_ACCEPTED_CONTENT_TYPES = ("image/", "application/octet-stream", "binary/octet-stream")
_VIDEO_CONTENT_TYPES = ("video/", "application/octet-stream", "binary/octet-stream", "application/mp4")
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


@dataclass(frozen=True)
class _Wanted:
    """What a download is for: named in messages, its byte limit, the content types a server may call it."""

    noun: str
    limit: int
    content_types: tuple[str, ...]


async def _read_body(response: httpx.Response, url: str, wanted: _Wanted) -> bytes:
    limit = wanted.limit
    if response.status_code >= 400:
        raise FetchError(f"the server answered HTTP {response.status_code} for {url}")
    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type and not content_type.startswith(wanted.content_types):
        raise FetchError(f"the URL returned {content_type}, not {wanted.noun}")
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


def fetch_image_bytes(url: str, *, settings: Settings, video: bool = False) -> bytes:
    """``fetch_image_bytes_async`` for callers without an event loop (workers, the CLI, the dashboard)."""
    return anyio.run(functools.partial(fetch_image_bytes_async, url, settings=settings, video=video))


async def fetch_image_bytes_async(url: str, *, settings: Settings, video: bool = False) -> bytes:
    """Download an image (``video``: a clip, with its own byte limit and content types) over http(s) with SSRF
    protection, redirect checks, a byte limit and one deadline for the whole download: every DNS lookup,
    connection, response head (a server may send it a line a second), redirect and body read together."""
    timeout_s = settings.url_timeout_s
    wanted = (
        _Wanted("a video", settings.max_video_bytes, _VIDEO_CONTENT_TYPES)
        if video
        else _Wanted("an image", settings.max_upload_bytes, _ACCEPTED_CONTENT_TYPES)
    )
    try:
        with anyio.fail_after(timeout_s):
            return await _fetch(url.strip(), settings, wanted)
    except TimeoutError:
        raise FetchError(f"the download of {url[:200]} did not finish within {timeout_s:g} s") from None


async def _fetch(url: str, settings: Settings, wanted: _Wanted) -> bytes:
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
                        return await _read_body(response, url, wanted)
                    location = response.headers.get("location")
                finally:
                    await response.aclose()
            except httpx.HTTPError as exc:
                raise FetchError(f"could not fetch {url[:200]}: {exc.__class__.__name__}") from None
            if not location:
                raise FetchError("the server sent a redirect without a location")
            current = urljoin(current, location)
    raise FetchError(f"too many redirects (more than {settings.url_max_redirects})")


def fetch_image(url: str, *, settings: Settings) -> LoadedImage:
    """Fetch a URL and decode it like an upload; the URL is kept as the image's name."""
    data = fetch_image_bytes(url, settings=settings)
    return load_image(data, settings=settings, origin="url", name=url)
