"""Video: speed on real footage and which tracker keeps identities better; prints tables, asserts nothing.

    .venv/bin/python benchmarks/bench_video.py            # needs Debian's opencv-doc (vtest.avi), redis-server

1. vtest.avi (768x576, 795 frames at 10 fps, pedestrians), objects and tracking on every frame at 416 px: frames
   per second of the detection + tracking loop alone, and of the whole analysis (decoding, chunks, stitching, the
   annotated H.264 clip), in-process on the embedded defaults.
2. ByteTrack against OC-SORT (both from roboflow's ``trackers``) on the same detections: with no ground truth for
   vtest, identity keeping is read from fragmentation: person tracks (fewer is better for the same people), tracks
   lasting 3 s or more, and the median track length.
3. One worker against two (Celery on a private Redis, SQLite and a folder shared on this machine) on vtest.avi
   three times over (2,385 frames, ten chunks): each worker a host of one core (``taskset`` pins it to its own
   CPU; one job at a time, ``--concurrency=1``). Unpinned, one worker's two job threads already fill both cores
   of this machine, and a second worker adds nothing.
"""

from __future__ import annotations

import io
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from picmetric.core.analyzer import Analyzer  # noqa: E402
from picmetric.core.tracking import ObjectTracker, stitch  # noqa: E402
from picmetric.core.video import decode_frames, probe_video  # noqa: E402
from picmetric.service.analyses import AnalysisService  # noqa: E402
from picmetric.service.jobs import CeleryQueue, JobService  # noqa: E402
from picmetric.service.videos import VideoOptions, VideoService  # noqa: E402
from picmetric.settings import Settings  # noqa: E402

VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")


def loop_speed(data: bytes, settings: Settings) -> tuple[float, dict[str, list]]:
    """Detection + tracking on every frame (decoding included, no drawing); the detections kept per frame."""
    facts = probe_video(data, settings=settings)
    detector = Analyzer(settings).detector(416, precision="int8")
    tracker = ObjectTracker(facts.fps)
    found = {}
    started = time.perf_counter()
    for number, frame in decode_frames(data, facts):
        boxes = detector.predict(frame, 0.1, 0.4, True)
        tracker.update(boxes)
        found[number] = boxes
    return facts.frames / (time.perf_counter() - started), found


def tracker_quality(found: dict, fps: float, kind: str) -> tuple[int, int, float]:
    tracker = ObjectTracker(fps, kind)
    frames = {n: [r for r in tracker.update(boxes) if r[6] >= 0.25] for n, boxes in sorted(found.items())}
    people = [t for t in stitch([(0, len(frames), frames)]) if t.class_id == 0]
    lengths = [t.last_frame - t.first_frame + 1 for t in people]
    return len(people), sum(1 for n in lengths if n >= 3 * fps), statistics.median(lengths) if lengths else 0


def whole_analysis(data: bytes) -> tuple[float, float]:
    """Frames per second of the analysis (store, chunks, stitching, the line), and of drawing the annotated clip."""
    settings = Settings(data_dir=Path(tempfile.mkdtemp()))
    jobs = JobService(AnalysisService(settings))
    videos = VideoService(jobs)
    started = time.perf_counter()
    analysis = videos.analyse(data, VideoOptions(line=(0, 300, 768, 300)))
    result = videos.wait(analysis.id)
    analysed = time.perf_counter()
    videos.clip(analysis.id)
    drawn = time.perf_counter()
    jobs.close()
    return result["frames"] / (analysed - started), result["frames"] / (drawn - analysed)


def three_times(data: bytes) -> bytes:
    """vtest.avi played three times, re-encoded (MPEG-4 part 2, a keyframe every 250 frames as the original)."""
    facts = probe_video(data, settings=Settings())
    out = io.BytesIO()
    with av.open(out, "w", format="avi") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = facts.width, facts.height, "yuv420p"
        stream.gop_size = 250
        stream.options = {"qscale": "3"}
        for _ in range(3):
            for _, frame in decode_frames(data, facts):
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out.getvalue()


def with_workers(data: bytes, count: int) -> float:
    from tests.services import RedisServer

    folder = Path(tempfile.mkdtemp())
    redis = RedisServer(folder / "redis")
    redis.start()
    settings = Settings(data_dir=folder / "data", broker_url=redis.url, video_chunk_s=25,
                        job_queue=f"bench-video-{count}")  # fmt: skip
    env = {"PICMETRIC_DATA_DIR": str(settings.data_dir), "PICMETRIC_BROKER_URL": redis.url,
           "PICMETRIC_JOB_QUEUE": settings.job_queue, "PICMETRIC_INTRA_OP_THREADS": "1",
           "PICMETRIC_MODEL_CACHE_DIR": str(settings.model_cache_dir)}  # fmt: skip
    coordinator = VideoService(JobService(AnalysisService(settings)))  # migrates the database first
    workers = [
        subprocess.Popen(
            ["taskset", "-c", str(i), sys.executable, "-m", "picmetric", "worker", "--concurrency=1",
             "--log-level=warning"],
            env={**os.environ, **env}, stdout=open(folder / f"worker-{i}.log", "ab"),  # noqa: SIM115
            stderr=subprocess.STDOUT, start_new_session=True,
        )
        for i in range(count)
    ]  # fmt: skip
    try:
        while len(CeleryQueue(settings).status(ping_workers=True).workers) < count:
            time.sleep(0.5)
        started = time.perf_counter()
        result = coordinator.wait(coordinator.analyse(data, VideoOptions()).id, timeout_s=1800)
        return result["frames"] / (time.perf_counter() - started)
    finally:
        for worker in workers:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(timeout=60)
        redis.kill()


def main() -> None:
    data = VTEST.read_bytes()
    settings = Settings(data_dir=Path(tempfile.mkdtemp()))
    print(f"CPU: {os.cpu_count()} cores\n")
    loop, found = loop_speed(data, settings)
    print("| vtest.avi, every frame, 416 px int8 | frames/s |\n|---|---|")
    print(f"| detection + ByteTrack (decoding included) | {loop:.1f} |")
    analysed, drawn = whole_analysis(data)
    print(f"| the analysis: stored, chunks as jobs, stitched, the line's crossings (in-process) | {analysed:.1f} |")
    print(f"| the annotated H.264 clip, drawn when first asked for | {drawn:.1f} |")
    print("\n| tracker | person tracks | lasting 3 s+ | median length (frames) |\n|---|---|---|---|")
    for kind in ("bytetrack", "ocsort"):
        tracks, lasting, median = tracker_quality(found, 10.0, kind)
        print(f"| {kind} | {tracks} | {lasting} | {median:.0f} |")
    long_clip = three_times(data)
    one, two = with_workers(long_clip, 1), with_workers(long_clip, 2)
    print("\n| vtest.avi x3 (2,385 frames, 10 chunks) | frames/s |\n|---|---|")
    print(f"| one worker | {one:.1f} |\n| two workers | {two:.1f} ({two / one:.2f}x) |")


if __name__ == "__main__":
    main()
