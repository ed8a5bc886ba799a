"""Video: real footage (Debian opencv-doc's vtest.avi and Megamind.avi) tracked and counted through the CLI, the
API, the page and across workers; rotated, variable-rate and bad clips."""

from __future__ import annotations

import csv
import io
import json
import struct
import threading
import time
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import av
import numpy as np
import pytest
from fastapi.testclient import TestClient
from streamlit.testing.v1 import AppTest

from picmetric.core.tracking import CountingLine, Track, stitch
from picmetric.core.video import InvalidVideoError, VideoTooLargeError, chunk_bounds, decode_frames, probe_video
from picmetric.interfaces.api.app import create_app
from picmetric.interfaces.cli import main
from picmetric.service.analyses import AnalysisService
from picmetric.service.jobs import CeleryQueue, JobService
from picmetric.service.videos import VideoOptions, VideoService
from picmetric.settings import Settings

from .conftest import ROOT, s3_settings
from .services import PostgresDatabase, WorkerProcess
from .stack import deployment_environment

CLIPS = Path("/usr/share/doc/opencv-doc/examples/data")
VTEST = CLIPS / "vtest.avi"  # 768x576, 795 frames at 10 fps, pedestrians
MEGAMIND = CLIPS / "Megamind.avi"  # 720x528, 270 frames, faces
LINE = (0, 300, 768, 300)


@pytest.fixture(scope="module")
def vtest() -> bytes:
    assert VTEST.is_file(), "Debian's opencv-doc is required (./bootstrap.sh test installs it)"
    return VTEST.read_bytes()


def _clip(fmt: str, frames: int, *, codec: str = "mpeg4", pts: list[int] | None = None, rotation: int | None = None,
          size: tuple[int, int] = (64, 48)) -> bytes:  # fmt: skip
    """A small clip made here: a white square in the top-left corner of every frame, as stored."""
    out = io.BytesIO()
    with av.open(out, "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=10)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        if rotation is not None:
            stream.set_display_rotation(rotation)
        if pts is not None:
            stream.codec_context.time_base = stream.time_base = Fraction(1, 1000)
        for i in range(frames):
            picture = np.zeros((size[1], size[0], 3), np.uint8)
            picture[:12, :12] = 255
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            if pts is not None:
                frame.pts, frame.time_base = pts[i], Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out.getvalue()


# -- reading clips -------------------------------------------------------------------------------------------------


def test_real_footage_facts_from_the_header_and_the_packet_index(vtest):
    started = time.perf_counter()
    facts = probe_video(vtest, settings=Settings())
    assert time.perf_counter() - started < 1  # nothing decoded but the first frame
    assert (facts.width, facts.height, facts.frames, facts.fps, facts.container) == (768, 576, 795, 10.0, "avi")
    assert facts.keyframes == (0, 250, 500, 750)
    assert chunk_bounds(facts, 25) == [(0, 250), (250, 500), (500, 750), (750, 795)]
    # decoding may start at any keyframe and numbers the frames the same way
    from_middle = [n for n, _ in decode_frames(vtest, facts, start=500, stop=505)]
    assert from_middle == [500, 501, 502, 503, 504]
    whole = dict(decode_frames(vtest, facts, stop=505))
    assert np.array_equal(whole[503], dict(decode_frames(vtest, facts, start=500, stop=505))[503])


@pytest.mark.parametrize(("fmt", "codec"), [("mp4", "mpeg4"), ("mov", "mpeg4"), ("webm", "libvpx"),
                                            ("matroska", "mpeg4"), ("avi", "mpeg4")])  # fmt: skip
def test_each_container_reads(fmt, codec):
    facts = probe_video(_clip(fmt, 6, codec=codec), settings=Settings())
    assert (facts.frames, facts.width, facts.height) == (6, 64, 48)


def test_a_rotated_phone_clip_comes_out_upright():
    data = _clip("mp4", 3, rotation=90)  # stored landscape, shown turned a quarter counter-clockwise
    facts = probe_video(data, settings=Settings())
    assert (facts.width, facts.height, facts.rotation) == (48, 64, 270)
    _, frame = next(decode_frames(data, facts))
    assert frame.shape == (64, 48, 3)
    assert frame[-6:, :6].mean() > 200 and frame[:6, :6].mean() < 50  # the top-left square is now bottom-left


def test_a_variable_frame_rate_clip_is_numbered_by_its_timestamps():
    stamps = [0, 100, 150, 400, 450, 460, 700, 1000, 1010, 1300]
    data = _clip("matroska", len(stamps), pts=stamps)
    facts = probe_video(data, settings=Settings())
    assert facts.frames == 10 and facts.fps == pytest.approx(9 / 1.3, rel=0.01)
    assert [n for n, _ in decode_frames(data, facts)] == list(range(10))


def _zero_frames(vtest: bytes) -> bytes:
    return vtest[: vtest.index(b"movi") + 4]  # the whole header, and no frame


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda v: v[: len(v) // 3], InvalidVideoError, "cut short: its header says 795 frames, 259 are there"),
        (lambda v: bytes(np.random.default_rng(0).integers(0, 255, 5000, np.uint8)), InvalidVideoError,
         "not a video PicMetric can read"),
        (_zero_frames, InvalidVideoError, "no frames|not a video"),
        (lambda v: v.replace(struct.pack("<ii", 768, 576), struct.pack("<ii", 100_000, 100_000)), InvalidVideoError,
         "frame size is missing or impossible"),
        (lambda v: _clip("matroska", 3, pts=[0, 1000, 36_000_000]), VideoTooLargeError,
         "lasts 10 h 00 min; the limit is 10 min 00 s"),
        (lambda v: b"", InvalidVideoError, "empty"),
    ],
)  # fmt: skip
def test_bad_clips_are_refused_from_the_header(vtest, make, error, message):
    started = time.perf_counter()
    with pytest.raises(error, match=message):
        probe_video(make(vtest), settings=Settings())
    assert time.perf_counter() - started < 2  # refused, not decoded


def test_audio_only_is_no_video():
    out = io.BytesIO()
    with av.open(out, "w", format="matroska") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    with pytest.raises(InvalidVideoError, match=r"no video stream \(it holds audio\)"):
        probe_video(out.getvalue(), settings=Settings())


def test_limits_come_from_settings(vtest):
    with pytest.raises(VideoTooLargeError, match="lasts 1 min 20 s; the limit is 1 min 00 s"):
        probe_video(vtest, settings=Settings(max_video_duration_s=60))
    with pytest.raises(VideoTooLargeError, match="795 frames; the limit is 500"):
        probe_video(vtest, settings=Settings(max_video_frames=500))
    with pytest.raises(VideoTooLargeError, match="768x576"):
        probe_video(vtest, settings=Settings(max_video_pixels=640 * 480))
    with pytest.raises(VideoTooLargeError, match="the limit is 1 MB"):
        probe_video(vtest, settings=Settings(max_video_bytes=1_000_000))


# -- tracks, stitching, counting -------------------------------------------------------------------------------


def test_a_counting_line_counts_each_crossing_once_and_its_direction():
    line = CountingLine(0, 100, 200, 100)  # left to right: "in" is crossing downwards (y grows)
    down = Track(1, list(range(6)), [[10, y - 20, 30, y] for y in (80, 95, 102, 98, 110, 130)], [0.9] * 6, [0] * 6)
    up = Track(2, list(range(3)), [[50, y - 20, 70, y] for y in (150, 120, 60)], [0.9] * 3, [0] * 3)
    outside = Track(3, [0, 1], [[300, 60, 320, 80], [300, 120, 320, 140]], [0.9] * 2, [0] * 2)  # past its end
    crossings = line.crossings([down, up, outside])
    assert [(c.track, c.direction) for c in crossings] == [(2, "out"), (1, "in")]  # the jitter at 98-102: once


def test_stitching_joins_a_track_cut_at_a_chunk_boundary():
    def rows(track, x):
        return [[track, 0, x, 10, x + 20, 50, 0.9]]

    first = {f: rows(7, 10 + f) for f in range(0, 14)}  # analysed to 14: 4 frames past its end at 10
    second = {f: rows(3, 10 + f) for f in range(11, 20)}  # the same object, another id, confirmed a frame late
    tracks = stitch([(0, 10, first), (10, 20, second)], warmup=2)
    assert len(tracks) == 1 and tracks[0].frames == list(range(20)) and tracks[0].id == 1


# -- end to end on real footage ---------------------------------------------------------------------------------


def test_cli_tracks_and_counts_vtest(tmp_path, capsys, analyzer, vtest):
    out, table = tmp_path / "out.mp4", tmp_path / "boxes.csv"
    started = time.perf_counter()
    code = main(["video", str(VTEST), "--json", "--line", ",".join(map(str, LINE)), "--out", str(out),
                 "--csv", str(table)])  # fmt: skip
    took = time.perf_counter() - started
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["frames"] == 795 and result["fps"] == 10.0 and len(result["counts"]) == 795
    people = [t for t in result["tracks"] if t["class"] == "person"]
    assert 15 <= len(people) <= 80, len(people)  # pedestrians, each followed, not one track per frame
    assert max(t["last_frame"] - t["first_frame"] for t in people) > 200  # someone followed for 20 s and more
    assert result["crossings"] and {c["direction"] for c in result["crossings"]} == {"in", "out"}
    assert sum(sum(v.values()) for v in result["totals"].values()) == len(result["crossings"])
    for key in ("id", "class", "first_frame", "last_frame", "boxes"):
        assert key in result["tracks"][0]
    with av.open(str(out)) as clip:  # H.264 with as many frames as the input
        stream = clip.streams.video[0]
        assert stream.codec_context.name == "h264" and sum(1 for _ in clip.decode(stream)) == 795
    rows = list(csv.DictReader(table.open()))
    assert len(rows) == sum(len(t["boxes"]) for t in result["tracks"]) and rows[0]["class"]
    print(f"vtest.avi, objects and tracking on every frame at 416 px, annotated clip written: {took:.1f} s, "
          f"{795 / took:.1f} frames/s")  # fmt: skip
    # the same clip with the same options is found again, not analysed again
    again = time.perf_counter()
    assert main(["video", str(VTEST), "--line", ",".join(map(str, LINE))]) == 0
    assert time.perf_counter() - again < 10


def test_faces_every_third_frame_on_megamind(tmp_path, capsys, analyzer):
    assert MEGAMIND.is_file()
    assert main(["video", str(MEGAMIND), "--json", "--every", "3", "--faces"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["every"] == 3 and len(result["counts"]) == 90
    assert sum(f["faces"] for f in result["faces"]) > 30  # Megamind's faces are found
    assert all(b[0] % 3 == 0 for t in result["tracks"] for b in t["boxes"])


def _followed(client: TestClient, status: dict, timeout_s: float) -> dict:
    """A video analysis' status, asked for until it ends."""
    deadline = time.monotonic() + timeout_s
    while status["state"] not in ("done", "failed"):
        assert time.monotonic() < deadline, status
        time.sleep(0.3)
        status = client.get(status["status_url"]).json()
    return status


def test_the_api_takes_a_clip_and_serves_the_annotated_one_with_ranges(tmp_path, analyzer, vtest):
    settings = Settings(data_dir=tmp_path)
    with TestClient(create_app(settings)) as client:
        bad = client.post("/api/v1/videos", files={"file": ("x.mp4", b"not a video")})
        assert bad.status_code == 400 and "not a video" in bad.json()["detail"]
        refused = client.post("/api/v1/videos", data={"line": "1,2,3"}, files={"file": ("v.avi", vtest)})
        assert refused.status_code == 400 and "X1,Y1,X2,Y2" in refused.json()["detail"]
        accepted = client.post("/api/v1/videos", data={"every": "4"}, files={"file": ("vtest.avi", vtest)})
        assert accepted.status_code == 202, accepted.text
        status = _followed(client, accepted.json(), timeout_s=240)
        assert status["state"] == "done" and status["frames_done"] == status["frames_total"]
        result = client.get(status["result_url"]).json()
        assert result["every"] == 4 and result["tracks"]
        assert client.get(status["result_url"], params={"format": "csv"}).text.startswith("frame,time_s,track")
        whole = client.get(status["clip_url"])
        assert whole.status_code == 200 and whole.headers["accept-ranges"] == "bytes"
        part = client.get(status["clip_url"], headers={"Range": "bytes=100-199"})
        assert part.status_code == 206 and part.content == whole.content[100:200]
        assert part.headers["content-range"] == f"bytes 100-199/{len(whole.content)}"
        tail = client.get(status["clip_url"], headers={"Range": "bytes=-50"})
        assert tail.content == whole.content[-50:]
        assert client.get(status["clip_url"], headers={"Range": f"bytes={len(whole.content)}-"}).status_code == 416


def test_the_video_page_analyses_a_clip_and_plays_it(analyzer):
    page = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    page.switch_page("pages/video.py").run()
    assert not page.exception
    page.sidebar.slider[0].set_value(5)  # every 5th frame: quick
    page.file_uploader[0].set_value(("Megamind.avi", MEGAMIND.read_bytes(), "video/x-msvideo")).run()
    assert not page.exception, page.exception
    next(b for b in page.button if b.label == "Analyse the clip").click().run()
    assert not page.exception, page.exception
    assert [m.label for m in page.metric][:2] == ["Tracks", "Frames"]
    assert page.get("video") and any(d.value.columns[0] == "track" for d in page.dataframe)


# -- across workers -------------------------------------------------------------------------------------------------


def _tracks_and_crossings(result: dict) -> tuple[list, list]:
    return ([(t["id"], t["class"], t["first_frame"], t["last_frame"], len(t["boxes"])) for t in result["tracks"]],
            result["crossings"])  # fmt: skip


def test_two_workers_give_the_same_tracks_and_crossings_as_one(tmp_path, analyzer, seaweed, redis_broker, vtest):
    """vtest.avi cut into four chunks at its keyframes: analysed by one in-process runner, and by two Celery
    workers on their own processes (PostgreSQL, S3, Redis), the stitched tracks and crossings are the same. And
    tracks are stitched: as many tracks cross a chunk boundary unbroken as when the clip is analysed whole."""
    options = VideoOptions(every=2, line=LINE)
    # one ONNX Runtime thread, as each worker has (_environment): the same kernels split the same way
    one_runner = Settings(data_dir=tmp_path / "one", video_chunk_s=25, job_threads=1, intra_op_threads=1)
    service = AnalysisService(one_runner)  # its own models: the session's analyzer runs on every core
    jobs = JobService(service)
    videos = VideoService(jobs)
    alone = videos.wait(videos.analyse(vtest, options, name="vtest.avi").id)
    whole_settings = Settings(data_dir=tmp_path / "whole", video_chunk_s=600)
    whole_jobs = JobService(AnalysisService(whole_settings, analyzer=analyzer))
    whole_videos = VideoService(whole_jobs)
    whole = whole_videos.wait(whole_videos.analyse(vtest, options).id)
    jobs.close()
    whole_jobs.close()

    database = PostgresDatabase()
    settings = s3_settings(seaweed, tmp_path / "two", bucket="videos-two", database_url=database.url,
                           broker_url=redis_broker.url, job_queue="picmetric-video-test", video_chunk_s=25)  # fmt: skip
    workers = [WorkerProcess(deployment_environment(settings), tmp_path / f"worker-{i}.log") for i in range(2)]
    try:
        deadline = time.monotonic() + 180
        while len(CeleryQueue(settings).status(ping_workers=True).workers) < 2:
            assert time.monotonic() < deadline, f"the workers did not answer; see {tmp_path}"
        coordinator = VideoService(JobService(AnalysisService(settings, analyzer=analyzer)))
        started = coordinator.analyse(vtest, options, name="vtest.avi")
        shared = coordinator.wait(started.id, timeout_s=400)
        ran_on = {j.worker for j in coordinator.jobs._repository.batch(
            coordinator._repository.video_analysis(started.id).batch_id) or []}  # fmt: skip
    finally:
        for worker in workers:
            worker.stop()
        database.drop()
    assert len(ran_on) == 2, f"both workers took chunks: {ran_on}"
    assert _tracks_and_crossings(shared) == _tracks_and_crossings(alone)
    for boundary in (250, 500, 750):

        def unbroken(result: dict, b: int = boundary) -> int:
            return sum(1 for t in result["tracks"] if {b - 2, b} <= {box[0] for box in t["boxes"]})

        assert unbroken(alone) >= unbroken(whole) - 1, (boundary, unbroken(alone), unbroken(whole))
    assert abs(len(alone["crossings"]) - len(whole["crossings"])) <= 2


def test_a_worker_survives_a_bad_clip_and_nothing_is_half_stored(tmp_path, analyzer, vtest):
    settings = Settings(data_dir=tmp_path)
    videos = VideoService(JobService(AnalysisService(settings, analyzer=analyzer)))
    before = set(videos._repository.blobs.keys())
    with pytest.raises(InvalidVideoError):
        videos.analyse(vtest[: len(vtest) // 3], name="cut.avi")
    assert set(videos._repository.blobs.keys()) == before and videos.videos() == []
    done = videos.wait(videos.analyse(_clip("mp4", 12), VideoOptions()).id)  # the same service goes on
    assert done["frames"] == 12
    videos.jobs.close()


def test_a_clip_by_url_passes_the_photos_guards(tmp_path, analyzer):
    """The URL guards of photos: a private address is refused before anything is read; allowed, a clip larger than
    a photo may be (the video byte limit applies) and is analysed."""
    clip = _clip("mp4", 30, size=(320, 240))

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Content-Length", str(len(clip)))
            self.end_headers()
            self.wfile.write(clip)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/clip.mp4"
    try:
        with TestClient(create_app(Settings(data_dir=tmp_path / "closed"))) as client:
            refused = client.post("/api/v1/videos/url", json={"url": url})
            assert refused.status_code == 400 and "not a public internet address" in refused.json()["detail"], (
                refused.text
            )
        allowed = Settings(data_dir=tmp_path / "open", url_allow_networks=["127.0.0.1/32"], max_upload_bytes=1000)
        with TestClient(create_app(allowed)) as client:
            accepted = client.post("/api/v1/videos/url", json={"url": url, "options": {"every": 3}})
            assert accepted.status_code == 202, accepted.text
            status = _followed(client, accepted.json(), timeout_s=120)
            assert status["state"] == "done" and client.get(status["result_url"]).json()["frames"] == 30
    finally:
        server.shutdown()
