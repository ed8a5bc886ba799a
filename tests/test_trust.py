"""What a hostile caller tries against the HTTP API: other buckets through s3://, stored images without the key,
the key in the access log, addresses and bodies built to break the server."""

from __future__ import annotations

import logging
import socket
import time
import uuid

import httpx
import pytest

from picmetric.interfaces.api import create_app
from picmetric.service.analyses import AnalysisService
from picmetric.settings import Settings

from .conftest import s3_settings
from .services import ApiServer

KEY = "the-api-key"
ADMIN = "the-admin-token"


@pytest.fixture(scope="module")
def s3_api(tmp_path_factory, analyzer, seaweed):
    """The API on PostgreSQL-free S3 storage whose credentials also reach a private bucket and an allowed one."""
    client = seaweed.client()
    private, shared = f"private-{uuid.uuid4().hex[:8]}", f"class-{uuid.uuid4().hex[:8]}"
    for bucket in (private, shared):
        client.create_bucket(Bucket=bucket)
    settings = s3_settings(
        seaweed, tmp_path_factory.mktemp("trust"), bucket=f"store-{uuid.uuid4().hex[:8]}",
        s3_read_allow=[f"{shared}/2026/"],
    )  # fmt: skip
    service = AnalysisService(settings, analyzer=analyzer)
    service._repository.blobs.ensure_bucket()
    with ApiServer(create_app(settings, service)) as url, httpx.Client(base_url=url, timeout=120) as http:
        http.s3, http.private, http.shared = client, private, shared
        yield http


def test_s3_urls_outside_the_allow_list_are_refused_before_anything_is_read(s3_api, zidane_path):
    s3_api.s3.put_object(Bucket=s3_api.private, Key="secret.jpg", Body=zidane_path.read_bytes())
    secret = f"s3://{s3_api.private}/secret.jpg"
    for method, path, body in (
        ("POST", "/api/v1/analyses?wait=false", {"url": secret}),
        ("POST", "/api/v1/analyses", {"url": secret}),
        ("POST", "/api/v1/batches", {"urls": [secret]}),
        ("POST", "/do_data_science_url", {"url": secret}),
    ):
        answer = s3_api.request(method, path, json=body)
        assert answer.status_code == 400, (path, answer.text)
        assert "PICMETRIC_S3_READ_ALLOW" in answer.text
    as_form = s3_api.post("/api/v1/batches", files={"urls": (None, f'["{secret}"]')})
    assert as_form.status_code == 400
    assert s3_api.get("/api/v1/analyses").json()["total"] == 0  # nothing was read, nothing stored


def test_s3_urls_inside_the_allow_list_are_analysed(s3_api, zidane_path):
    s3_api.s3.put_object(Bucket=s3_api.shared, Key="2026/zidane.jpg", Body=zidane_path.read_bytes())
    made = s3_api.post("/api/v1/analyses", json={"url": f"s3://{s3_api.shared}/2026/zidane.jpg"})
    assert made.status_code in (200, 201), made.text
    assert made.json()["analysis"]["image"]["source"] == "url"
    outside = s3_api.post("/api/v1/analyses", json={"url": f"s3://{s3_api.shared}/2025/zidane.jpg"})
    assert outside.status_code == 400


def test_stored_images_need_the_key_and_the_key_never_reaches_the_access_log(tmp_path, analyzer, zidane_path):
    settings = Settings(data_dir=tmp_path, api_key=KEY, admin_token=ADMIN)
    seen: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    access = logging.getLogger("uvicorn.access")
    with ApiServer(create_app(settings, AnalysisService(settings, analyzer=analyzer)), log_level="info") as url:
        handler = Collect()
        access.addHandler(handler)
        try:
            made = httpx.post(f"{url}/api/v1/analyses", params={"api_key": KEY}, files={"file": zidane_path.open("rb")})
            assert made.status_code == 201
            sha = made.json()["analysis"]["image"]["sha256"]
            for kind in ("original", "thumbnail", "faces", "objects"):
                image = f"{url}/api/v1/images/{sha}/{kind}"
                assert httpx.get(image).status_code == 401, kind
                assert httpx.get(image, headers={"X-API-Key": "a-guess"}).status_code == 401, kind
                assert httpx.get(image, headers={"Authorization": f"Bearer {ADMIN}"}).status_code == 401, kind
                assert httpx.get(image, headers={"X-API-Key": KEY}).status_code == 200, kind
                assert httpx.get(image, params={"api_key": KEY}).status_code == 200, kind
        finally:
            access.removeHandler(handler)
    assert any("api_key=***" in line for line in seen), seen
    assert not any(KEY in line for line in seen)


@pytest.fixture(scope="module")
def api(tmp_path_factory, analyzer, postgres):
    """PostgreSQL: it refuses NUL in text and dates past the year 9999, where SQLite shrugs."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("hostile"), database_url=postgres.url, http_body_timeout_s=2.0)
    service = AnalysisService(settings, analyzer=analyzer)
    with ApiServer(create_app(settings, service)) as url, httpx.Client(base_url=url, timeout=60) as client:
        yield client


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/jobs/%00", "/api/v1/batches/%00", "/api/v1/images/%00/original", "/api/v1/analyses?text=%00",
        "/api/v1/analyses?label=a%00b", "/api/v1/analyses?object_class=%00",
    ],
)  # fmt: skip
def test_a_nul_in_the_address_is_a_400(api, path):
    answer = api.get(path)
    assert answer.status_code == 400 and "NUL" in answer.json()["detail"]


def test_impossible_ids_dates_and_hashes_are_client_errors(api):
    assert api.get("/api/v1/analyses", params={"date_from": "9999-12-31T23:59:59-23:59"}).status_code == 400
    assert api.get("/api/v1/analyses", params={"date_to": "0001-01-01T00:00:00+23:59"}).status_code == 400
    assert api.get(f"/api/v1/analyses/{'a' * 50_001}").status_code in (404, 414)
    assert api.get(f"/api/v1/jobs/{'a' * 5_000}").status_code == 404
    assert api.get(f"/api/v1/images/{'0' * 64}/original").status_code == 404


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"tasks": "labels,labels,labels"}, "once"),
        ({"top_k": "1_0"}, "plain decimal"),
        ({"min_confidence": "0_5"}, "plain decimal"),
        ({"topk": "3"}, "unknown option 'topk'"),
    ],
)
def test_option_typos_are_refused(api, zidane_path, fields, message):
    answer = api.post("/api/v1/analyses", files={"file": zidane_path.open("rb")}, data=fields)
    assert answer.status_code == 400 and message in answer.json()["detail"], answer.text
    as_json = api.post("/api/v1/analyses", json={"url": "http://example.com/a.jpg", "options": fields})
    assert as_json.status_code == 400 and message in as_json.json()["detail"]


def test_unknown_json_fields_and_malformed_urls_are_400(api):
    assert "unknown field 'ulr'" in api.post("/api/v1/analyses", json={"ulr": "http://x.org/a.jpg"}).text
    for url in ("http://example.com:99999/x.jpg", "http://127.0.0.1:8080:80/x.jpg", f"http://{'a' * 64}.org/x.jpg",
                "http://a..b/x.jpg", "http://.example/x.jpg"):  # fmt: skip
        for path, body in (("/api/v1/analyses", {"url": url}), ("/do_data_science_url", {"url": url}),
                           ("/api/v1/batches", {"urls": [url]})):  # fmt: skip
            answer = api.post(path, json=body)
            assert answer.status_code == 400, (path, url, answer.text)
    long = api.post("/api/v1/analyses", json={"url": "https://example.com/" + "a" * 70_000})
    assert long.status_code == 414 and "4,096" in long.text


def test_deeply_nested_json_is_a_400(api):
    nested = "[" * 100_000 + "]" * 100_000
    for path in ("/api/v1/analyses", "/api/v1/batches", "/do_data_science_url"):
        answer = api.post(path, content=nested, headers={"Content-Type": "application/json"})
        assert answer.status_code == 400, (path, answer.status_code)


def test_a_body_sent_a_byte_at_a_time_meets_a_deadline(api):
    """Headers, then one body byte every 0.5 s: answered 408 at the 2 s deadline instead of held open."""
    host, port = api.base_url.host, api.base_url.port
    started = time.monotonic()
    with socket.create_connection((host, port), timeout=10) as sock:
        head = "POST /api/v1/analyses HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000"
        sock.sendall(head.encode() + b"\r\n\r\n")
        answer = b""
        try:
            for _ in range(20):
                sock.sendall(b" ")
                sock.settimeout(0.5)
                try:
                    answer += sock.recv(4096)
                except TimeoutError:
                    continue
                if answer:
                    break
        except (BrokenPipeError, ConnectionResetError):
            pass
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert time.monotonic() - started < 5


# --- round 2: the s3 allow-list's matching, option lists and forms, DeepStack, tokens, timeouts ------------------


def test_the_allow_list_matches_the_bucket_exactly_and_prefixes_on_slashes():
    from picmetric.core.fetching import check_url
    from picmetric.errors import URLRefusedError

    allowed = Settings(s3_read_allow=["pub", "class/2026"])
    for url in ("s3://pub/private/x.jpg", "s3://pub/x.jpg", "s3://class/2026/a.jpg", "s3://class/2026/b/c.jpg"):
        assert check_url(url, allowed) == url
    for url in ("s3://pub-secret/private/x.jpg", "s3://public/x.jpg", "s3://class/2026-private/a.jpg",
                "s3://class/20261/a.jpg", "s3://clas/2026/a.jpg", "s3://class/a.jpg"):  # fmt: skip
        with pytest.raises(URLRefusedError, match="PICMETRIC_S3_READ_ALLOW"):
            check_url(url, allowed)


@pytest.mark.parametrize(
    ("key", "message"),
    [("2026/../secret.jpg", "'.' or '..' segments"), ("2026/./a.jpg", "'.' or '..' segments"),
     ("2026//a.jpg", "empty one"), ("2026/a.jpg#x", "may not contain '#'"), ("2026/a.jpg?v=1", "may not contain '?'"),
     ("2026/a\\b.jpg", "may not contain '\\\\'"), ("2026/a\x01.jpg", "may not contain '\\x01'")],
)  # fmt: skip
def test_s3_keys_that_could_name_another_object_are_400_on_every_route(s3_api, key, message):
    url = f"s3://{s3_api.shared}/{key}"
    for method, path, body in (
        ("POST", "/api/v1/analyses?wait=false", {"url": url}),
        ("POST", "/api/v1/analyses", {"url": url}),
        ("POST", "/api/v1/batches", {"urls": [url]}),
        ("POST", "/do_data_science_url", {"url": url}),
    ):
        answer = s3_api.request(method, path, json=body)
        assert answer.status_code == 400 and message in answer.json().get("detail", answer.json().get("error")), (
            path,
            answer.text,
        )


def test_an_s3_object_that_is_not_there_fails_its_job_at_once(s3_api):
    missing = f"s3://{s3_api.shared}/2026/not-there.jpg"
    assert s3_api.post("/api/v1/analyses", json={"url": missing}).status_code == 400  # not 503: nothing to retry
    job = s3_api.post("/api/v1/analyses", params={"wait": "false"}, json={"url": missing}).json()
    deadline = time.monotonic() + 15
    while (state := s3_api.get(f"/api/v1/jobs/{job['job']}").json())["state"] in ("queued", "running"):
        assert time.monotonic() < deadline, state
        time.sleep(0.1)
    assert state["state"] == "failed" and "does not exist" in state["error"], state


def test_a_long_repeated_task_list_is_a_400_in_milliseconds(api, zidane_path):
    for tasks in (["labels"] * 100_000, ["labels", "faces", "objects", "labels"]):
        started = time.monotonic()
        answer = api.post("/api/v1/analyses", json={"url": "http://example.com/a.jpg", "options": {"tasks": tasks}})
        assert answer.status_code == 400 and "once" in answer.json()["detail"], answer.text[:300]
        assert time.monotonic() - started < 2
    started = time.monotonic()
    form = api.post(
        "/api/v1/analyses", files={"file": zidane_path.open("rb")}, data={"tasks": ",".join(["labels"] * 100_000)}
    )
    assert form.status_code == 400 and time.monotonic() - started < 2, form.text[:300]
    assert api.get("/healthz").status_code == 200


@pytest.mark.parametrize(
    ("field", "values"),
    [("top_k", ["3", "5"]), ("detector", ["yolov4-tiny", "yolov4-tiny"]), ("tasks", ["labels", "faces"]),
     ("min_confidence", ["0.2", "0.9"]), ("precision", ["int8", "float32"])],
)  # fmt: skip
def test_an_option_sent_twice_in_a_form_is_a_400(api, zidane_path, field, values):
    fields = {field: values}  # the field twice
    for path in ("/api/v1/analyses", "/api/v1/batches"):
        name = "file" if path.endswith("analyses") else "files"
        answer = api.post(path, files=[(name, ("z.jpg", zidane_path.read_bytes(), "image/jpeg"))], data=fields)
        assert answer.status_code == 400, (path, answer.text)
        assert f"send each form field once: {field!r} sent more than once" in answer.json()["detail"]


def test_deepstacks_custom_route_asks_for_the_key_before_naming_anything(tmp_path, analyzer, zidane_path):
    settings = Settings(data_dir=tmp_path, api_key=KEY)
    with ApiServer(create_app(settings, AnalysisService(settings, analyzer=analyzer))) as url:
        photo = {"image": ("z.jpg", zidane_path.read_bytes(), "image/jpeg")}
        anonymous = httpx.post(f"{url}/v1/vision/custom/nope", files=photo)
        assert anonymous.status_code == 401 and "yolov4-tiny" not in anonymous.text
        keyed = httpx.post(f"{url}/v1/vision/custom/nope", files=photo, data={"api_key": KEY})
        assert keyed.status_code == 404 and "nope" in keyed.text and "yolov4-tiny" not in keyed.text


def test_wrong_admin_tokens_back_off_per_client(tmp_path, analyzer):
    settings = Settings(data_dir=tmp_path, admin_token=ADMIN)
    with ApiServer(create_app(settings, AnalysisService(settings, analyzer=analyzer))) as url:
        right = {"Authorization": f"Bearer {ADMIN}"}
        assert httpx.get(f"{url}/log", headers=right).status_code == 200
        answers = [httpx.get(f"{url}/log", headers={"Authorization": f"Bearer guess-{i}"}) for i in range(6)]
        assert [a.status_code for a in answers] == [401] * 5 + [429], [a.text for a in answers]
        locked = httpx.get(f"{url}/log", headers=right)  # not even the right token is looked at meanwhile
        assert locked.status_code == 429 and 0 < int(locked.headers["Retry-After"]) <= 30, locked.text
        assert "try again in" in locked.json()["detail"]


def test_the_lockout_doubles_the_wait_and_forgets_after_a_success():
    from picmetric.interfaces.lockout import FIRST_WAIT_S, FREE_TRIES, LONGEST_WAIT_S, Lockout

    now = [1000.0]
    tries = Lockout(clock=lambda: now[0])
    assert [tries.failed("a") for _ in range(FREE_TRIES - 1)] == [0.0] * (FREE_TRIES - 1)
    assert tries.failed("a") == FIRST_WAIT_S and tries.wait_left("a") == FIRST_WAIT_S
    assert tries.wait_left("b") == 0  # per client
    now[0] += FIRST_WAIT_S
    assert tries.wait_left("a") == 0 and tries.failed("a") == 2 * FIRST_WAIT_S
    for _ in range(20):
        tries.failed("a")
    assert tries.wait_left("a") == LONGEST_WAIT_S
    tries.succeeded("a")
    assert tries.wait_left("a") == 0 and tries.failed("a") == 0


def test_a_stalled_database_answers_the_first_request_within_its_timeout(tmp_path, analyzer, postgres, zidane_path):
    """PostgreSQL behind a proxy that holds every byte: the connection stays open and its kernel acknowledges, so
    only the client's own deadline ends the wait; the first request after the stall gets its 503 in time."""
    from .services import FaultyProxy

    host, port = postgres.url.rsplit("@", 1)[1].split("/")[0].split(":")
    proxy = FaultyProxy(host, int(port))
    url = postgres.url.replace(f"{host}:{port}", f"127.0.0.1:{proxy.port}")
    settings = Settings(data_dir=tmp_path, database_url=url, db_timeout_s=3)
    service = AnalysisService(settings, analyzer=analyzer)
    try:
        with ApiServer(create_app(settings, service)) as api, httpx.Client(base_url=api, timeout=60) as client:
            assert client.get("/api/v1/analyses").status_code == 200  # a pooled connection, open
            proxy.stall()
            started = time.monotonic()
            answer = client.get("/api/v1/analyses")
            took = time.monotonic() - started
            assert answer.status_code == 503 and took < 3 + 2, (answer.status_code, took)
            proxy.heal()
            deadline = time.monotonic() + 30
            while client.get("/api/v1/analyses").status_code != 200:
                assert time.monotonic() < deadline, "the API did not recover after the stall"
                time.sleep(0.5)
    finally:
        proxy.close()
        service._repository.engine.dispose()
