"""URL intake against a real local HTTP server: SSRF refusals, redirects, limits, timeouts, content types."""

from __future__ import annotations

import contextlib
import gzip
import io
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from picmetric import FetchError, URLRefusedError, fetch_image
from picmetric.core.fetching import check_address, check_url
from picmetric.settings import Settings

from .services import send_trickling


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), (10, 200, 30)).save(buffer, "PNG")
    return buffer.getvalue()


PNG = _png()


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def _send(self, status: int, body: bytes, content_type: str, extra: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client stopped reading (size limit)
            self.wfile.write(body)

    def do_GET(self) -> None:
        port = self.server.server_address[1]
        routes = {
            "/image.png": lambda: self._send(200, PNG, "image/png"),
            "/image-no-type": lambda: self._send(200, PNG, "application/octet-stream"),
            "/page.html": lambda: self._send(200, b"<html>hello</html>", "text/html; charset=utf-8"),
            "/missing": lambda: self._send(404, b"nope", "text/plain"),
            "/to-image": lambda: self._send(302, b"", "text/plain", {"Location": "/image.png"}),
            "/to-other-host": lambda: self._send(
                302, b"", "text/plain", {"Location": f"http://127.0.0.2:{port}/image.png"}
            ),
            "/loop": lambda: self._send(302, b"", "text/plain", {"Location": "/loop"}),
            "/declared-big": lambda: self._send(200, b"x" * 5000, "image/png"),
        }
        if self.path == "/streamed-big":  # no Content-Length: the limit must hold while streaming
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.end_headers()
            try:
                for _ in range(50):
                    self.wfile.write(b"\xff" * 1024)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client hung up at its limit, as it should
            return
        if self.path == "/trickle":  # a byte every 0.2 s, for 10 s
            return send_trickling(self, "image/png", PNG[:50])
        if self.path == "/slow":
            time.sleep(2)
            return self._send(200, PNG, "image/png")
        if self.path == "/slow-head":  # the response head a line at a time: every read gets data in time
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                for i in range(20):
                    self.wfile.flush()
                    time.sleep(0.2)
                    self.wfile.write(f"X-Slow-{i}: yes\r\n".encode())
            return
        if self.path == "/gzip-bomb":  # gzip inside gzip: 1 MB of zeros sent as a few hundred bytes
            bomb = gzip.compress(gzip.compress(bytes(1_000_000)))
            return self._send(200, bomb, "image/png", {"Content-Encoding": "gzip, gzip"})
        if self.path == "/gzip-image":
            return self._send(200, gzip.compress(PNG), "image/png", {"Content-Encoding": "gzip"})
        routes.get(self.path, lambda: self._send(404, b"", "text/plain"))()


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture()
def local_ok() -> Settings:
    """Settings that allow exactly this machine's 127.0.0.1 (the test server) and nothing else private."""
    return Settings(url_allow_networks=["127.0.0.1/32"], url_timeout_s=0.5, max_upload_bytes=4096)


def test_loopback_is_refused_by_default(server):
    with pytest.raises(URLRefusedError, match="127.0.0.1"):
        fetch_image(f"{server}/image.png", settings=Settings())


def test_allowed_network_fetches_an_image(server, local_ok):
    loaded = fetch_image(f"{server}/image.png", settings=local_ok)
    assert loaded.pixels.shape == (24, 32, 3)
    assert loaded.source == "url" and loaded.name.endswith("/image.png")


def test_octet_stream_is_accepted_and_decoded(server, local_ok):
    assert fetch_image(f"{server}/image-no-type", settings=local_ok).format == "PNG"


def test_redirects_are_followed_and_each_hop_is_checked(server, local_ok):
    assert fetch_image(f"{server}/to-image", settings=local_ok).format == "PNG"
    with pytest.raises(URLRefusedError, match="127.0.0.2"):
        fetch_image(f"{server}/to-other-host", settings=local_ok)


def test_redirect_loop_stops(server, local_ok):
    with pytest.raises(FetchError, match="too many redirects"):
        fetch_image(f"{server}/loop", settings=local_ok)


def test_html_is_refused_with_its_content_type(server, local_ok):
    with pytest.raises(FetchError, match="text/html, not an image"):
        fetch_image(f"{server}/page.html", settings=local_ok)


def test_http_errors_are_reported(server, local_ok):
    with pytest.raises(FetchError, match="HTTP 404"):
        fetch_image(f"{server}/missing", settings=local_ok)


def test_size_limits_hold_declared_and_streamed(server, local_ok):
    with pytest.raises(FetchError, match="limit"):
        fetch_image(f"{server}/declared-big", settings=local_ok)
    with pytest.raises(FetchError, match="limit"):
        fetch_image(f"{server}/streamed-big", settings=local_ok)


def test_slow_server_times_out(server, local_ok):
    started = time.monotonic()
    with pytest.raises(FetchError, match="did not finish within"):
        fetch_image(f"{server}/slow", settings=local_ok)
    assert time.monotonic() - started < 1.9


def test_unreachable_port_is_a_fetch_error(local_ok):
    with pytest.raises(FetchError):
        fetch_image("http://127.0.0.1:9/x.png", settings=local_ok)


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost/x.png",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/x.png",
        "http://10.1.2.3/x.png",
        "http://192.168.0.1/x.png",
        "http://0.0.0.0/x.png",
    ],
)
def test_internal_addresses_are_refused(url):
    with pytest.raises(URLRefusedError, match="not a public internet address"):
        fetch_image(url, settings=Settings())


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/x.png", "only http and https"),
        ("file:///etc/passwd", "only http and https"),
        ("example.com/x.png", "only http and https"),
        ("http://user:secret@example.com/x.png", "user name or password"),
    ],
)
def test_bad_urls_are_refused(url, message):
    with pytest.raises(URLRefusedError, match=message):
        fetch_image(url, settings=Settings())


@pytest.mark.parametrize(
    "address",
    [
        "::ffff:127.0.0.1", "100.64.0.1", "fe80::1", "224.0.0.1", "fd00::1",
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254, the cloud metadata address
        "64:ff9b:1::a00:1",  # local-use NAT64 of 10.0.0.1
        "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
        "::127.0.0.1",  # IPv4-compatible
        "::ffff:0:a9fe:a9fe",  # IPv4-translated
        "2001:0:4136:e378:8000:63bf:f5ff:fffe",  # Teredo, client 10.0.0.1
    ],
)  # fmt: skip
def test_address_policy_refuses_disguised_internal_addresses(address):
    with pytest.raises(URLRefusedError, match="PICMETRIC_URL_ALLOW_NETWORKS"):
        check_address(address, Settings())


def test_invalid_allow_network_is_refused_when_settings_load():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="PICMETRIC_URL_ALLOW_NETWORKS"):
        Settings(url_allow_networks=["10.0.0.0/33"])
    with pytest.raises(ValidationError, match="PICMETRIC_URL_ALLOW_NETWORKS"):
        Settings(url_allow_networks=["10.0.0.1/8"])  # host bits set: probably a typo for 10.0.0.0/8


@pytest.mark.parametrize("address", ["8.8.8.8", "2606:4700:4700::1111", "64:ff9b::808:808", "2002:808:808::1"])
def test_address_policy_allows_public_addresses(address):
    check_address(address, Settings())


def test_trickling_server_meets_one_total_deadline(server, local_ok):
    """A byte every 0.2 s never trips a per-read timeout; the whole download still ends at url_timeout_s."""
    started = time.monotonic()
    with pytest.raises(FetchError, match="did not finish within 0.5 s"):
        fetch_image(f"{server}/trickle", settings=local_ok)
    assert time.monotonic() - started < 1.2


def test_a_slow_response_head_meets_the_same_deadline(server, local_ok):
    """A head sent a line every 0.2 s: each read is quick, the whole is not; the deadline covers the head too."""
    started = time.monotonic()
    with pytest.raises(FetchError, match="did not finish within 0.5 s"):
        fetch_image(f"{server}/slow-head", settings=local_ok)
    assert time.monotonic() - started < 1.2


def test_compressed_bodies_are_inflated_within_the_limit(server, local_ok):
    """The decoded size counts: nested gzip that would expand past the limit is refused, not inflated first."""
    with pytest.raises(FetchError, match="limit once decompressed"):
        fetch_image(f"{server}/gzip-bomb", settings=local_ok)
    assert fetch_image(f"{server}/gzip-image", settings=local_ok).width == 32


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://example.com:99999/x.jpg", "port"),
        ("http://127.0.0.1:8080:80/x.jpg", "port"),
        ("http://example.com:0/x.jpg", "port"),
        (f"http://{'a' * 64}.example.com/x.jpg", "longer than 63"),
        ("http://a..b/x.jpg", "empty part"),
        ("http://.example/x.jpg", "empty part"),
        ("http://[::zz]/x.jpg", "malformed"),
        ("ftp://example.com/x.jpg", "only http and https"),
        ("http://user:pw@example.com/x.jpg", "user name"),
        ("https://example.com/" + "a" * 70_000, "the limit is 4,096"),
        ("s3://another-bucket/private/secret.jpg", "PICMETRIC_S3_READ_ALLOW"),
    ],
)
def test_malformed_and_refused_urls_are_named_before_anything_is_read(url, message):
    with pytest.raises(URLRefusedError, match=message):
        check_url(url, Settings())


def test_s3_urls_are_read_only_inside_the_allow_list():
    allowed = Settings(s3_read_allow=["class-photos/2026/"])
    assert check_url(" s3://class-photos/2026/a.jpg ", allowed) == "s3://class-photos/2026/a.jpg"
    for elsewhere in ("s3://class-photos/2025/a.jpg", "s3://class-photos-private/2026/a.jpg", "s3://other/a.jpg"):
        with pytest.raises(URLRefusedError, match="PICMETRIC_S3_READ_ALLOW"):
            check_url(elsewhere, allowed)
