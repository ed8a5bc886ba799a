"""The HTTP API through real HTTP: uvicorn on a free port, httpx as the client."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from PIL import Image

from picmetric.interfaces.api import create_app
from picmetric.interfaces.api.server import HeadTimeoutH11Protocol
from picmetric.service.analyses import AnalysisService
from picmetric.settings import Settings

from .conftest import imagenet_samples
from .services import ApiServer, free_port, send_trickling, wait_for_http

ADMIN = "admin-secret-token"
SEED_FIELDS = ["error", "hash", "original", "resnet", "yolov3", "yolov3_source", "faces_source"]


@pytest.fixture(scope="module")
def photo_server(zidane_path):
    """A local web server with a photo and an HTML page, for the URL routes."""
    photo = zidane_path.read_bytes()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            if self.path.startswith("/trickle"):  # an image one byte every 0.2 s: 40 s in all
                return send_trickling(self, "image/jpeg", photo[:200])
            body, kind = (photo, "image/jpeg") if self.path == "/zidane.jpg" else (b"<html>hi</html>", "text/html")
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def _settings(tmp_path, **extra) -> Settings:
    return Settings(
        data_dir=tmp_path, admin_token=ADMIN, url_allow_networks=["127.0.0.1/32"], max_upload_bytes=2_000_000, **extra
    )


@pytest.fixture(scope="module")
def api(tmp_path_factory, analyzer):
    settings = _settings(tmp_path_factory.mktemp("api"))
    service = AnalysisService(settings, analyzer=analyzer)
    with ApiServer(create_app(settings, service)) as url, httpx.Client(base_url=url, timeout=120) as client:
        client.service = service
        yield client


@pytest.fixture()
def clean(api):
    api.service._repository.reset()
    return api


def _file(path, field="file", mime="image/jpeg"):
    return {field: (path.name, path.read_bytes(), mime)}


# --- seed compatibility ----------------------------------------------------------------------------------------


def test_upload_form_and_root_redirect(api):
    page = api.get("/upload")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'action="/do_data_science"' in page.text and 'name="file"' in page.text and 'name="url"' in page.text
    root = api.get("/", follow_redirects=False)
    assert root.status_code in (302, 307) and root.headers["location"] == "/upload"


def test_seed_shape_field_by_field(clean, zidane_path):
    response = clean.post("/do_data_science", files=_file(zidane_path))
    assert response.status_code == 200
    body = response.json()
    assert list(body) == SEED_FIELDS
    assert all(isinstance(body[k], str) for k in SEED_FIELDS)
    assert body["error"] == ""
    import hashlib

    assert body["hash"] == hashlib.md5(zidane_path.read_bytes()).hexdigest()
    resnet = json.loads(body["resnet"])
    assert len(resnet) == 3 and all(0 < float(v) <= 1 for v in resnet.values())
    yolo = json.loads(body["yolov3"])
    assert set(yolo) == {"person", "tie"} and 90 < float(yolo["person"]) <= 100
    for key, kind in (("original", "image/jpeg"), ("yolov3_source", "image/webp"), ("faces_source", "image/webp")):
        image = httpx.get(body[key])
        assert image.status_code == 200 and image.headers["content-type"] == kind and len(image.content) > 1000


def test_seed_url_route_accepts_form_and_json(clean, photo_server):
    by_form = clean.post("/do_data_science_url", data={"url": f"{photo_server}/zidane.jpg"})
    by_json = clean.post("/do_data_science_url", json={"url": f"{photo_server}/zidane.jpg"})
    assert by_form.status_code == by_json.status_code == 200
    assert by_form.json()["hash"] == by_json.json()["hash"] != ""


@pytest.mark.parametrize(
    ("kwargs", "status", "message"),
    [
        ({"files": {"wrong": ("a.jpg", b"x", "image/jpeg")}}, 400, "field named 'file'"),
        ({"files": {"file": ("a.jpg", b"plain text, not a photo", "image/jpeg")}}, 400, "not an image"),
        ({"files": {"file": ("a.jpg", b"", "image/jpeg")}}, 400, "empty"),
        ({"files": {"file": ("big.jpg", b"\xff" * 2_100_000, "image/jpeg")}}, 413, "limit"),
        ({"content": b"garbage", "headers": {"content-type": "multipart/form-data; boundary=zzz"}}, 400, ""),
    ],
)
def test_seed_upload_errors_keep_the_seed_shape(api, kwargs, status, message):
    response = api.post("/do_data_science", **kwargs)
    assert response.status_code == status
    body = response.json()
    assert list(body) == SEED_FIELDS and message in body["error"] and body["error"]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"json": {"url": "http://169.254.169.254/latest/meta-data/"}}, "not a public internet address"),
        ({"json": {"url": "ftp://example.com/a.png"}}, "only http and https"),
        ({"json": {}}, "field 'url'"),
        ({"data": {"url": ""}}, "field 'url'"),
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, "malformed"),
    ],
)
def test_seed_url_errors(api, payload, message):
    response = api.post("/do_data_science_url", **payload)
    assert response.status_code == 400 and message in response.json()["error"]


def test_seed_url_pointing_at_html_is_refused(api, photo_server):
    response = api.post("/do_data_science_url", data={"url": f"{photo_server}/page.html"})
    assert response.status_code == 400 and "text/html, not an image" in response.json()["error"]


def test_reset_and_log_need_the_admin_token(clean, zidane_path):
    clean.post("/do_data_science", files=_file(zidane_path))
    assert clean.get("/reset").status_code == 405  # POST only, unlike the seed
    assert clean.post("/reset").status_code == 401
    assert clean.post("/reset", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert clean.get("/log").status_code == 401
    log = clean.get("/log", headers={"Authorization": f"Bearer {ADMIN}"})
    assert log.status_code == 200 and "analysed in" in log.text
    assert clean.post("/reset", headers={"X-Admin-Token": ADMIN}).json() == {"reset": True}
    assert clean.get("/api/v1/analyses").json()["total"] == 0


def test_admin_routes_are_off_without_a_configured_token(tmp_path, analyzer):
    settings = Settings(data_dir=tmp_path)
    with ApiServer(create_app(settings, AnalysisService(settings, analyzer=analyzer))) as url:
        assert httpx.post(f"{url}/reset", headers={"Authorization": "Bearer anything"}).status_code == 403
        assert httpx.get(f"{url}/log").status_code == 403


# --- v1 API ----------------------------------------------------------------------------------------------------


def test_v1_create_then_cached_with_timings(clean, zidane_path, analyzer):
    calls = analyzer.calls
    first = clean.post("/api/v1/analyses", files=_file(zidane_path))
    second = clean.post("/api/v1/analyses", files=_file(zidane_path))
    assert first.status_code == 201 and second.status_code == 200
    assert analyzer.calls == calls + 1
    body = first.json()
    assert body["cached"] is False and second.json()["cached"] is True
    timings = body["analysis"]["timings_ms"]
    assert {"labels", "objects", "faces", "total"} <= set(timings)
    assert len(body["analysis"]["faces"]) == 2
    assert set(body["images"]) == {"original", "objects", "faces", "thumbnail"}


def test_pictures_are_drawn_when_first_asked_for_then_kept(clean, zidane_path):
    """An analysis draws nothing; its objects and faces pictures are drawn by the first GET and read back after."""
    made = clean.post("/api/v1/analyses", files=_file(zidane_path), data={"tasks": "faces,labels"}).json()
    assert set(made["analysis"]["timings_ms"]) == {"labels", "faces", "total"}
    sha = made["analysis"]["image"]["sha256"]
    assert set(clean.service.get(sha).blob_keys) == {"original", "thumbnail"}
    assert set(made["images"]) == {"original", "thumbnail", "faces"} and made["analysis"]["renders"] == ["faces"]
    first = clean.get(made["images"]["faces"])
    assert first.status_code == 200 and first.headers["content-type"] == "image/webp"
    assert Image.open(io.BytesIO(first.content)).size == (1280, 720)
    assert set(clean.service.get(sha).blob_keys) == {"original", "thumbnail", "faces"}  # kept
    again = clean.get(made["images"]["faces"])
    assert again.content == first.content and again.headers["etag"] == first.headers["etag"]
    assert clean.get(f"/api/v1/images/{sha}/objects").status_code == 404  # the objects task did not run


def test_v1_options_tasks_and_validation(clean, zidane_path):
    response = clean.post(
        "/api/v1/analyses", files=_file(zidane_path), data={"tasks": "objects", "min_confidence": "0.5"}
    )
    assert response.status_code == 201
    analysis = response.json()["analysis"]
    assert analysis["faces"] is None and all(o["confidence"] >= 0.5 for o in analysis["objects"])
    bad = clean.post("/api/v1/analyses", files=_file(zidane_path), data={"min_confidence": "high"})
    assert bad.status_code == 400 and "min_confidence" in bad.json()["detail"]
    bad = clean.post("/api/v1/analyses", files=_file(zidane_path), data={"classifier": "resnet50"})
    assert bad.status_code == 400 and "classifier must be one of" in bad.json()["detail"]


def test_v1_url_get_list_delete_and_images(clean, photo_server, zidane_path, bus_path):
    made = clean.post("/api/v1/analyses", json={"url": f"{photo_server}/zidane.jpg", "options": {"top_k": 3}})
    assert made.status_code == 201 and len(made.json()["analysis"]["labels"]) == 3
    sha = made.json()["analysis"]["image"]["sha256"]
    md5 = made.json()["analysis"]["image"]["md5"]
    clean.post("/api/v1/analyses", files=_file(bus_path))
    assert clean.get(f"/api/v1/analyses/{sha}").json()["analysis"]["image"]["source"] == "url"
    assert clean.get(f"/api/v1/analyses/{md5}").status_code == 200
    assert clean.get(f"/api/v1/analyses/{'0' * 64}").status_code == 404
    listing = clean.get("/api/v1/analyses", params={"object_class": "bus"}).json()
    assert listing["total"] == 1 and listing["items"][0]["name"] == "bus.jpg"
    assert clean.get("/api/v1/analyses", params={"min_faces": 2, "source": "url"}).json()["total"] == 1
    assert clean.get("/api/v1/analyses", params={"page_size": 1}).json()["pages"] == 2
    assert clean.get("/api/v1/analyses", params={"min_faces": -1}).status_code == 422
    assert clean.get("/api/v1/analyses", params={"date_from": "yesterday"}).status_code == 422
    for kind, content_type in (("original", "image/jpeg"), ("faces", "image/webp"), ("thumbnail", "image/webp")):
        image = clean.get(f"/api/v1/images/{sha}/{kind}")
        assert image.status_code == 200 and image.headers["content-type"] == content_type
    assert clean.get(f"/api/v1/images/{sha}/secret").status_code == 422
    assert clean.delete(f"/api/v1/analyses/{sha}").status_code == 401  # destructive: the admin token is required
    assert clean.delete(f"/api/v1/analyses/{sha}", headers={"X-Admin-Token": "guess"}).status_code == 401
    assert clean.get(f"/api/v1/analyses/{sha}").status_code == 200
    admin = {"Authorization": f"Bearer {ADMIN}"}
    assert clean.delete(f"/api/v1/analyses/{sha}", headers=admin).status_code == 204
    assert clean.delete(f"/api/v1/analyses/{sha}", headers=admin).status_code == 404
    assert clean.get(f"/api/v1/images/{sha}/original").status_code == 404


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [
        ({"json": {"file": "x"}}, 400),
        ({"json": ["not", "an", "object"]}, 400),
        ({"content": b"{broken", "headers": {"content-type": "application/json"}}, 400),
        ({"files": {"image": ("a.jpg", b"x", "image/jpeg")}}, 400),
        ({"json": {"url": "http://10.0.0.1/a.jpg"}}, 400),
        ({"files": {"file": ("big.jpg", b"\xff" * 2_100_000, "image/jpeg")}}, 413),
    ],
)
def test_v1_errors_are_4xx_with_a_message(api, kwargs, status):
    response = api.post("/api/v1/analyses", **kwargs)
    assert response.status_code == status and response.json()["detail"]


def test_identical_concurrent_uploads_are_analysed_once(clean, bus_path, analyzer):
    calls = analyzer.calls
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda _: clean.post("/api/v1/analyses", files=_file(bus_path)), range(8)))
    assert sorted(r.status_code for r in responses) == [200] * 7 + [201]
    assert analyzer.calls == calls + 1
    assert clean.get("/api/v1/analyses").json()["total"] == 1


def test_inference_does_not_block_the_event_loop(clean, tmp_path, zidane_path):
    from PIL import Image

    photos = []
    for i in range(4):  # distinct photos, so each one really runs the models
        path = tmp_path / f"p{i}.jpg"
        Image.open(zidane_path).rotate(i * 7).save(path, quality=90)
        photos.append(path)
    with ThreadPoolExecutor(5) as pool:
        busy = [pool.submit(clean.post, "/api/v1/analyses", files=_file(p)) for p in photos]
        time.sleep(0.1)
        started = time.perf_counter()
        assert clean.get("/healthz").status_code == 200
        health_latency = time.perf_counter() - started
        assert all(f.result().status_code == 201 for f in busy)
    assert health_latency < 0.5, f"healthz took {health_latency:.3f} s while models ran"


# --- DeepStack compatibility -----------------------------------------------------------------------------------


def test_deepstack_detection_shape_and_types(api, zidane_path):
    body = api.post("/v1/vision/detection", files=_file(zidane_path, "image")).json()
    assert body["success"] is True and isinstance(body["duration"], int)
    assert body["predictions"], "persons expected"
    for p in body["predictions"]:
        assert set(p) == {"label", "confidence", "x_min", "y_min", "x_max", "y_max"}
        assert isinstance(p["label"], str) and isinstance(p["confidence"], float) and 0.45 <= p["confidence"] <= 1
        assert all(isinstance(p[k], int) for k in ("x_min", "y_min", "x_max", "y_max"))
        assert 0 <= p["x_min"] < p["x_max"] <= 1280 and 0 <= p["y_min"] < p["y_max"] <= 720
    lower = api.post("/v1/vision/detection", files=_file(zidane_path, "image"), data={"min_confidence": "0.2"}).json()
    assert len(lower["predictions"]) > len(body["predictions"])


def test_deepstack_face_and_scene(api, zidane_path):
    faces = api.post("/v1/vision/face", files=_file(zidane_path, "image")).json()
    assert faces["success"] is True and len(faces["predictions"]) == 2
    for p in faces["predictions"]:
        assert set(p) == {"confidence", "x_min", "y_min", "x_max", "y_max"}
        assert isinstance(p["confidence"], float) and all(isinstance(p[k], int) for k in ("x_min", "y_max"))
    mastiff = imagenet_samples()[0][0]  # ImageNet class 243, "bull mastiff": DeepStack joins words with "_"
    scene = api.post("/v1/vision/scene", files=_file(mastiff, "image")).json()
    assert scene["success"] is True and scene["label"] == "bull_mastiff" and isinstance(scene["confidence"], float)


@pytest.mark.parametrize(
    ("kwargs", "status", "message"),
    [
        ({"files": {"file": ("a.jpg", b"x", "image/jpeg")}}, 400, "field named 'image'"),
        ({"files": {"image": ("a.jpg", b"not a photo at all", "image/jpeg")}}, 400, "not an image"),
        (
            {"files": {"image": ("a.jpg", b"x", "image/jpeg")}, "data": {"min_confidence": "lots"}},
            400,
            "min_confidence",
        ),
        ({"files": {"image": ("a.jpg", b"x", "image/jpeg")}, "data": {"min_confidence": "7"}}, 400, "between 0 and 1"),
        ({"files": {"image": ("big.jpg", b"\xff" * 2_100_000, "image/jpeg")}}, 413, "limit"),
    ],
)
def test_deepstack_errors_in_deepstack_shape(api, kwargs, status, message):
    response = api.post("/v1/vision/detection", **kwargs)
    assert response.status_code == status
    assert response.json()["success"] is False and message in response.json()["error"]


def test_deepstack_api_key(tmp_path, analyzer, zidane_path):
    settings = _settings(tmp_path, api_key="nvr-key")
    with ApiServer(create_app(settings, AnalysisService(settings, analyzer=analyzer))) as url:
        missing = httpx.post(f"{url}/v1/vision/face", files=_file(zidane_path, "image"))
        assert missing.status_code == 401 and missing.json() == {"success": False, "error": "Incorrect api key"}
        ok = httpx.post(f"{url}/v1/vision/face", files=_file(zidane_path, "image"), data={"api_key": "nvr-key"})
        assert ok.status_code == 200 and ok.json()["success"] is True
        as_file = {**_file(zidane_path, "image"), "api_key": ("key.txt", b"nvr-key", "text/plain")}
        refused = httpx.post(f"{url}/v1/vision/face", files=as_file)  # a file part is never a key
        assert refused.status_code == 401 and refused.json()["success"] is False


# --- operations --------------------------------------------------------------------------------------------------


def test_health_readiness_metrics_and_docs(api, zidane_path):
    assert api.get("/healthz").json() == {"status": "ok"}
    ready = api.get("/readyz")
    checks = {"database": "ok", "storage": "ok", "models": "ok", "broker": "ok"}
    assert ready.status_code == 200 and ready.json()["checks"] == checks
    assert ready.json()["queue"] == {"kind": "in-process", "broker": "in-process", "depth": 0}
    api.post("/v1/vision/face", files=_file(zidane_path, "image"))
    api.post("/v1/vision/face", files={"image": ("x.jpg", b"junk", "image/jpeg")})
    metrics = api.get("/metrics").text
    assert 'picmetric_http_requests_total{method="POST",route="/v1/vision/face",status="200"}' in metrics
    assert 'picmetric_model_seconds_count{model="faces"}' in metrics
    assert 'picmetric_errors_total{type="InvalidImageError"}' in metrics
    assert "picmetric_broker_up 1.0" in metrics and "picmetric_queue_depth 0.0" in metrics
    assert api.get("/docs").status_code == 200
    paths = api.get("/openapi.json").json()["paths"]
    assert {"/api/v1/analyses", "/api/v1/jobs/{job_id}", "/api/v1/batches", "/v1/vision/detection", "/readyz"} <= set(
        paths
    )
    for path in ("/api/v1/analyses", "/api/v1/batches"):  # one path, two declared bodies, one published operation
        bodies = paths[path]["post"]["requestBody"]["content"]
        assert set(bodies) == {"multipart/form-data", "application/json"}, bodies
    upload = api.get("/openapi.json").json()["components"]["schemas"]["AnalysisUpload"]["properties"]
    assert upload["top_k"] == {"type": "integer", "minimum": 1, "maximum": 20, "title": "Top K"}


def test_readyz_reports_a_broken_store(tmp_path, analyzer, seaweed):
    from .conftest import s3_settings

    settings = s3_settings(seaweed, tmp_path, bucket="never-created-bucket", s3_create_bucket=False)
    with ApiServer(create_app(settings, AnalysisService(settings, analyzer=analyzer))) as url:
        ready = httpx.get(f"{url}/readyz")
        assert ready.status_code == 503 and "'never-created-bucket' does not exist" in ready.json()["checks"]["storage"]
        assert "test-secret-value" not in ready.text


def test_picmetric_serve_starts_uvicorn(tmp_path):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "picmetric", "serve", "--port", str(port), "--log-level", "warning"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        assert wait_for_http(f"http://127.0.0.1:{port}/healthz", 60), "picmetric serve did not answer"
    finally:
        process.terminate()
        process.wait(30)


def test_metrics_stay_bounded_whatever_method_names_clients_invent(api):
    before = len(api.get("/metrics").text)
    for i in range(300):
        api.request(f"FOO{i}", "/healthz")
        api.request("GET", f"/no/such/route/{i}")
    metrics = api.get("/metrics").text
    assert "FOO" not in metrics and "/no/such/route" not in metrics
    assert 'method="other"' in metrics and 'route="unmatched"' in metrics
    assert len(metrics) < before + 5_000  # a handful of new series, not 600


# --- hostile and careless input: always a 4xx in the route's own shape, never a 500 -------------------------------


def _chunked_upload(field: str, size: int):
    """A multipart body sent with chunked transfer encoding: no Content-Length for the middleware to check."""
    boundary = "picmetric-test-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="big.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()

    def body():
        yield head
        for _ in range(size // 65536 + 1):
            yield b"\xff" * 65536
        yield f"\r\n--{boundary}--\r\n".encode()

    return body(), {"Content-Type": f"multipart/form-data; boundary={boundary}"}


@pytest.mark.parametrize(
    ("path", "field", "shape_key"),
    [
        ("/api/v1/analyses", "file", "detail"),
        ("/do_data_science", "file", "error"),
        ("/v1/vision/detection", "image", "error"),
    ],
)
def test_chunked_upload_over_the_limit_is_413_on_every_route(api, path, field, shape_key):
    body, headers = _chunked_upload(field, 2_500_000)
    response = api.post(path, content=body, headers=headers)
    assert response.status_code == 413, response.text
    assert "limit" in response.json()[shape_key]


@pytest.mark.parametrize(
    "raw",
    [
        '{"url": "http://127.0.0.1/x.jpg", "options": {"top_k": Infinity}}',
        '{"url": "http://127.0.0.1/x.jpg", "options": {"top_k": 1e400}}',
        '{"url": "http://127.0.0.1/x.jpg", "options": {"top_k": 2.5}}',
        '{"url": "http://127.0.0.1/x.jpg", "options": {"min_confidence": NaN}}',
        '{"url": "http://127.0.0.1/x.jpg", "options": {"top_k": true}}',
        '{"url": "http://127.0.0.1/x.jpg", "options": ["top_k", 3]}',
        '{"url": "http://127.0.0.1/x.jpg", "options": "top_k=3"}',
        '{"url": "http://127.0.0.1/x.jpg", "options": {"tasks": 3}}',
        '{"url": "http://127.0.0.1/x.jpg", "options": {"tasks": [1, 2]}}',
        '{"url": "http://127.0.0.1/x.jpg", "options": {"classifier": {"a": 1}}}',
        "[" * 100_000 + "]" * 100_000,
    ],
)
def test_hostile_json_options_are_400(api, raw):
    response = api.post("/api/v1/analyses", content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    assert response.json()["detail"]


@pytest.mark.parametrize("field", ["tasks", "min_confidence", "top_k"])
def test_option_sent_as_a_file_part_is_400(api, zidane_path, field):
    files = {**_file(zidane_path), field: ("x.txt", b"0.5", "text/plain")}
    response = api.post("/api/v1/analyses", files=files)
    assert response.status_code == 400 and field in response.json()["detail"]


def test_deepstack_threshold_sent_as_a_file_part_is_400(api, zidane_path):
    files = {**_file(zidane_path, "image"), "min_confidence": ("x.txt", b"0.5", "text/plain")}
    response = api.post("/v1/vision/detection", files=files)
    assert response.status_code == 400 and response.json()["success"] is False


def test_nul_byte_in_a_file_name_is_dropped(clean, zidane_path):
    boundary = b"nul-test-boundary"  # by hand: httpx would percent-encode the NUL
    body = (
        b"--" + boundary + b'\r\nContent-Disposition: form-data; name="file"; filename="zi\x00dane.jpg"\r\n'
        b"Content-Type: image/jpeg\r\n\r\n" + zidane_path.read_bytes() + b"\r\n--" + boundary + b"--\r\n"
    )
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary.decode()}"}
    response = clean.post("/do_data_science", content=body, headers=headers)
    assert response.status_code == 200 and response.json()["error"] == ""
    sha = response.json()["hash"]
    stored = clean.get(f"/api/v1/analyses/{sha}").json()
    assert stored["analysis"]["image"]["name"] == "zidane.jpg"


def test_renders_are_revalidated_by_content_address_not_cached_for_good(clean, zidane_path):
    """After a re-analysis with other options, /images/{sha}/objects is another render: no 'immutable' on it."""
    first = clean.post("/api/v1/analyses", files=_file(zidane_path)).json()
    sha = first["analysis"]["image"]["sha256"]
    objects = clean.get(f"/api/v1/images/{sha}/objects")
    assert "immutable" not in objects.headers["cache-control"] and objects.headers["etag"]
    original = clean.get(f"/api/v1/images/{sha}/original")
    assert "immutable" in original.headers["cache-control"]
    same = clean.get(f"/api/v1/images/{sha}/objects", headers={"If-None-Match": objects.headers["etag"]})
    assert same.status_code == 304
    clean.post("/api/v1/analyses", files=_file(zidane_path), data={"min_confidence": "0.8"})
    changed = clean.get(f"/api/v1/images/{sha}/objects", headers={"If-None-Match": objects.headers["etag"]})
    assert changed.status_code == 200 and changed.headers["etag"] != objects.headers["etag"]
    assert changed.content != objects.content


def test_trickling_urls_hold_neither_requests_nor_analyses(tmp_path, analyzer, photo_server, zidane_path):
    """Servers sending a byte a second: each URL request ends at the deadline, and they cannot starve uploads."""
    settings = _settings(tmp_path, url_timeout_s=1.5, url_max_concurrent=2)
    with ApiServer(create_app(settings, AnalysisService(settings, analyzer=analyzer))) as url:

        def trickle(i: int) -> tuple[int, float]:
            started = time.monotonic()
            answer = httpx.post(f"{url}/do_data_science_url", data={"url": f"{photo_server}/trickle{i}"}, timeout=60)
            return answer.status_code, time.monotonic() - started

        with ThreadPoolExecutor(12) as pool:
            slow = [pool.submit(trickle, i) for i in range(10)]
            time.sleep(0.3)
            started = time.monotonic()
            upload = httpx.post(f"{url}/do_data_science", files=_file(zidane_path), timeout=60)
            upload_s = time.monotonic() - started
            outcomes = [f.result() for f in slow]
    assert upload.status_code == 200 and upload_s < 5, upload_s
    assert all(status == 400 for status, _ in outcomes)
    assert max(elapsed for _, elapsed in outcomes) < 2 * 1.5 + 1.5  # waiting for a slot + the download's deadline


def test_an_upload_job_does_not_wait_behind_url_jobs_on_the_in_process_queue(
    tmp_path, analyzer, photo_server, zidane_path
):
    """No broker, one job thread, four jobs fetching from dawdling servers: an upload queued after them is done
    while they are still fetching (URL jobs have threads of their own)."""
    settings = _settings(tmp_path, url_timeout_s=6, job_threads=1)
    with ApiServer(create_app(settings, AnalysisService(settings, analyzer=analyzer))) as url:
        queued = [
            httpx.post(f"{url}/api/v1/analyses", params={"wait": "false"}, json={"url": f"{photo_server}/trickle{i}"})
            for i in range(4)
        ]
        assert all(answer.status_code == 202 for answer in queued), [a.text for a in queued]
        started = time.monotonic()
        upload = httpx.post(f"{url}/api/v1/analyses", params={"wait": "false"}, files=_file(zidane_path))
        job_url = f"{url}/api/v1/jobs/{upload.json()['job']}"
        while (state := httpx.get(job_url).json()["state"]) in ("queued", "running") and time.monotonic() < started + 5:
            time.sleep(0.05)
        upload_s = time.monotonic() - started
        url_states = [httpx.get(f"{url}/api/v1/jobs/{a.json()['job']}").json()["state"] for a in queued]
    assert state == "done" and upload_s < 5, (state, upload_s)
    assert url_states == ["running"] * 4  # still fetching when the upload was done


def test_api_key_protects_every_analysis_route_before_the_body_is_read(tmp_path, analyzer, zidane_path):
    settings = _settings(tmp_path, api_key="the-key")
    with ApiServer(create_app(settings, AnalysisService(settings, analyzer=analyzer))) as url:
        for path, shape_key in (("/api/v1/analyses", "detail"), ("/do_data_science", "error")):
            refused = httpx.post(f"{url}{path}", files=_file(zidane_path))
            assert refused.status_code == 401 and "X-API-Key" in refused.json()[shape_key]
            wrong = httpx.post(f"{url}{path}", files=_file(zidane_path), headers={"X-API-Key": "guess"})
            assert wrong.status_code == 401
            # a chunked body over the upload limit: answered 401, so the key came first (reading it would be 413)
            body, headers = _chunked_upload("file", 2_500_000)
            early = httpx.post(f"{url}{path}", content=body, headers=headers)
            assert early.status_code == 401, early.text
        assert httpx.get(f"{url}/api/v1/analyses").status_code == 401
        assert httpx.get(f"{url}/api/v1/analyses", params={"api_key": "the-key"}).status_code == 200
        made = httpx.post(f"{url}/api/v1/analyses", files=_file(zidane_path), headers={"X-API-Key": "the-key"})
        assert made.status_code == 201
        sha = made.json()["analysis"]["image"]["sha256"]
        assert httpx.get(f"{url}/api/v1/analyses/{sha}", params={"api_key": "the-key"}).status_code == 200
        assert httpx.get(f"{url}/api/v1/analyses/{sha}").status_code == 401
        deepstack = httpx.post(
            f"{url}/v1/vision/face", files=_file(zidane_path, "image"), headers={"X-API-Key": "the-key"}
        )
        assert deepstack.status_code == 200 and deepstack.json()["success"] is True
        schema = httpx.get(f"{url}/openapi.json").json()
        schemes = schema["components"]["securitySchemes"]
        assert {scheme.get("name") for scheme in schemes.values()} == {"X-API-Key", "api_key", None}  # + admin bearer
        assert {"ApiKeyHeader": []} in schema["paths"]["/api/v1/analyses"]["post"]["security"]
        assert schema["paths"]["/reset"]["post"]["security"] == [{"AdminToken": []}]
        assert schema["paths"]["/healthz"]["get"]["security"] == []


def test_connections_that_send_headers_a_byte_at_a_time_are_closed(api, monkeypatch):
    """50 clients trickling a request head: each is disconnected once the head deadline passes."""
    import socket

    monkeypatch.setattr(HeadTimeoutH11Protocol, "head_timeout_s", 1.0)
    port = int(str(api.base_url).rsplit(":", 1)[1].strip("/"))
    clients = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(50)]
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
    closed: set[int] = set()
    started = time.monotonic()
    for byte in head:  # one byte every 0.1 s to every client, for at most 10 s
        for i, client in enumerate(clients):
            if i in closed:
                continue
            try:
                client.send(bytes([byte]))
            except OSError:
                closed.add(i)
        if len(closed) == len(clients) or time.monotonic() - started > 10:
            break
        time.sleep(0.1)
    for i, client in enumerate(clients):  # a closed socket reads end-of-file
        client.settimeout(0.5)
        with contextlib.suppress(OSError):
            if client.recv(1) == b"":
                closed.add(i)
        client.close()
    assert len(closed) == 50 and time.monotonic() - started < 5
    assert api.get("/healthz").status_code == 200  # normal clients are served meanwhile


def test_metrics_add_up_every_worker_process(tmp_path):
    """picmetric serve --workers 2: whichever worker answers /metrics, it reports the requests of both."""
    port = free_port()
    env = {**os.environ, "PICMETRIC_DATA_DIR": str(tmp_path / "data")}
    process = subprocess.Popen(
        [sys.executable, "-m", "picmetric", "serve", "--port", str(port), "--workers", "2", "--log-level", "warning"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        assert wait_for_http(f"http://127.0.0.1:{port}/healthz", 120), "picmetric serve did not answer"
        for _ in range(40):  # new connections: the kernel spreads them over both workers
            assert httpx.get(f"http://127.0.0.1:{port}/api/v1/analyses", timeout=30).status_code == 200
        line = 'picmetric_http_requests_total{method="GET",route="/api/v1/analyses",status="200"}'
        counts = set()
        for _ in range(6):
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
            counts.add(next(float(row.split()[-1]) for row in text.splitlines() if row.startswith(line)))
        assert counts == {40.0}
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)


def test_answers_match_their_published_models(clean, zidane_path):
    """The response models in /openapi.json are what the routes actually send (the fuzzer sees mostly errors)."""
    from picmetric.interfaces.api.schemas import (
        AnalysisAnswer,
        HistoryAnswer,
        PredictionsAnswer,
        Readiness,
        SceneAnswer,
        SeedAnswer,
    )

    made = clean.post("/api/v1/analyses", files=_file(zidane_path))
    answer = AnalysisAnswer.model_validate(made.json())
    assert len(answer.analysis.faces or []) == 2
    AnalysisAnswer.model_validate(clean.get(f"/api/v1/analyses/{answer.analysis.image.sha256}").json())
    assert HistoryAnswer.model_validate(clean.get("/api/v1/analyses").json()).total == 1
    SeedAnswer.model_validate(clean.post("/do_data_science", files=_file(zidane_path)).json())
    for route in ("detection", "face"):
        PredictionsAnswer.model_validate(clean.post(f"/v1/vision/{route}", files=_file(zidane_path, "image")).json())
    SceneAnswer.model_validate(clean.post("/v1/vision/scene", files=_file(zidane_path, "image")).json())
    Readiness.model_validate(clean.get("/readyz").json())
    documented = clean.get("/openapi.json").json()["paths"]
    assert "AnalysisAnswer" in str(documented["/api/v1/analyses"]["post"]["responses"])


# --- jobs and batches, with no broker: the same routes, run on the API process' own threads ----------------------


def _until_finished(client: httpx.Client, path: str, timeout_s: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        answer = client.get(path).json()
        if answer.get("finished") or answer.get("state") in ("done", "failed"):
            return answer
        assert time.monotonic() < deadline, answer
        time.sleep(0.1)


def test_wait_false_answers_202_with_a_job_that_ends_with_the_analysis(clean, zidane_path):
    accepted = clean.post("/api/v1/analyses", params={"wait": "false"}, files=_file(zidane_path))
    assert accepted.status_code == 202
    body = accepted.json()
    assert body["state"] == "queued" and body["status_url"].endswith(f"/api/v1/jobs/{body['job']}")
    job = _until_finished(clean, body["status_url"])
    assert job["state"] == "done" and job["error"] is None and job["attempts"] == 1
    assert job["result"]["analysis"]["image"]["name"] == "zidane.jpg" and len(job["result"]["analysis"]["faces"]) == 2
    assert (
        clean.get(job["result_url"]).json()["analysis"]["image"]["sha256"]
        == job["result"]["analysis"]["image"]["sha256"]
    )
    stored_keys = clean.service._repository.blobs.keys()
    assert stored_keys and not [key for key in stored_keys if key.startswith("incoming/")]  # staged upload gone
    broken = clean.post("/api/v1/analyses?wait=false", files={"file": ("x.jpg", b"junk", "image/jpeg")})
    failed = _until_finished(clean, broken.json()["status_url"])
    assert failed["state"] == "failed" and failed["error_status"] == 400 and "not an image" in failed["error"]
    assert clean.get("/api/v1/jobs/unknown").status_code == 404


def test_a_batch_of_files_and_urls_reports_counts_items_and_links(clean, zidane_path, bus_path, photo_server):
    files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in (zidane_path, bus_path)]
    files.append(("files", ("broken.jpg", b"not a photo", "image/jpeg")))
    urls = json.dumps([f"{photo_server}/zidane.jpg"])
    accepted = clean.post("/api/v1/batches", files=files, data={"urls": urls, "tasks": "faces"})
    assert accepted.status_code == 202, accepted.text
    body = accepted.json()
    assert len(body["jobs"]) == 4
    batch = _until_finished(clean, body["status_url"])
    assert batch["total"] == 4 and batch["counts"] == {"queued": 0, "running": 0, "done": 3, "failed": 1}
    names = [item["name"] for item in batch["items"]]
    assert names == ["zidane.jpg", "bus.jpg", "broken.jpg", f"{photo_server}/zidane.jpg"]
    failed = batch["items"][2]
    assert failed["state"] == "failed" and failed["error"] and failed["result_url"] is None
    for item in (batch["items"][0], batch["items"][1], batch["items"][3]):
        result = clean.get(item["result_url"]).json()
        assert result["analysis"]["options"]["tasks"] == ["faces"]
    assert batch["items"][0]["sha256"] == batch["items"][3]["sha256"]  # the URL served the same photo: stored once
    by_json = clean.post("/api/v1/batches", json={"urls": [f"{photo_server}/zidane.jpg"]})
    assert _until_finished(clean, by_json.json()["status_url"])["counts"]["done"] == 1


@pytest.mark.parametrize(
    ("request_args", "message"),
    [
        ({"json": {"urls": "https://example.com/a.jpg"}}, "'urls' must be a list"),
        ({"json": {"urls": []}}, "send files"),
        ({"data": {"urls": "[1, 2]"}}, "'urls' must be a list"),
        ({"data": {"urls": "not json"}}, "JSON list"),
        ({"json": {"urls": ["https://example.com/a.jpg"], "options": {"top_k": 99}}}, "top_k"),
    ],
)
def test_bad_batches_are_refused_with_a_reason(clean, request_args, message):
    refused = clean.post("/api/v1/batches", **request_args)
    assert refused.status_code in (400, 422) and message in refused.json()["detail"], refused.text
    assert clean.get("/api/v1/batches/unknown").status_code == 404


@pytest.mark.parametrize(
    ("kind", "status"),
    [("InvalidImageError", 400), ("FetchError", 400), ("URLRefusedError", 400), ("InvalidOptionsError", 400),
     ("InvalidModelError", 400), ("UnknownModelError", 404), ("NotFoundError", 404), ("ImageDeletedError", 409),
     ("MissingBlobError", 410), ("ImageTooLargeError", 413), ("URLTooLongError", 414), ("AnalysisFailedError", 422),
     ("InternalError", 500), ("DatabaseError", 503), ("StorageError", 503), ("QueueUnavailableError", 503),
     ("ServerBusyError", 503)],
)  # fmt: skip
def test_each_kind_of_error_has_one_status_and_a_job_keeps_its_kind(kind, status):
    """The one table (``STATUS``): a failed job records its error's kind by name, and is answered with the same
    status as the error itself; only the kinds answered 503 are worth retrying."""
    from picmetric.core.options import InvalidOptionsError  # noqa: F401 (its kind must be known by name)
    from picmetric.errors import error_kind
    from picmetric.interfaces.api.errors import status_of

    found = error_kind(kind)
    assert found.__name__ == kind and status_of(found) == status
    assert found.retryable is (status == 503)
