"""Memory of decoding hostile images: a small PNG file that decodes to ~50 megapixels of 16-bit RGB, one and four
at once, with the decode pixel budget (the default) and without it (a budget no image reaches). Prints a table.

    .venv/bin/python benchmarks/bench_memory.py

Each row runs in a fresh process; peak and 'after' are RSS above the process's idle RSS. Goal (issue 10): four at
once stay under 1.5 GB above idle, and the memory is given back afterwards.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _rss_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096 / 1e6


def child(path: str, copies: int, budget: int) -> None:
    sys.path.insert(0, str(ROOT))
    from picmetric.core.decoding import load_image
    from picmetric.settings import Settings

    data = Path(path).read_bytes()
    settings = Settings(max_pixels=60_000_000, decode_pixel_budget=budget)
    idle, peak, done = _rss_mb(), 0.0, threading.Event()

    def watch() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _rss_mb())
            time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    started = time.perf_counter()
    threads = [threading.Thread(target=load_image, args=(data,), kwargs={"settings": settings}) for _ in range(copies)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    done.set()
    watcher.join()
    print(json.dumps({"seconds": elapsed, "peak": peak - idle, "after": _rss_mb() - idle, "file_kb": len(data) / 1e3}))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return
    import cv2
    import numpy as np

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder, "bomb16.png")
        pixels = np.full((6100, 8160, 3), 30000, np.uint16)  # 49.8 MP, 16 bits a channel, compresses to ~0.3 MB
        pixels[100:200, 100:300] = 5000
        cv2.imwrite(str(path), pixels, [cv2.IMWRITE_PNG_COMPRESSION, 9])
        del pixels
        print(f"{'decode budget':>22} {'at once':>8} | {'time':>7} {'peak RSS':>10} {'after':>8}")
        for label, budget in (("default (100 MP)", 100_000_000), ("unbounded", 10**12)):
            for copies in (1, 4):
                result = subprocess.run(
                    [sys.executable, __file__, "--child", str(path), str(copies), str(budget)],
                    capture_output=True, text=True, check=True,
                )  # fmt: skip
                row = json.loads(result.stdout)
                print(
                    f"{label:>22} {copies:>8} | {row['seconds']:6.1f}s {row['peak']:7.0f} MB {row['after']:5.0f} MB"
                    f"   ({row['file_kb']:.0f} KB file)"
                )


if __name__ == "__main__":
    main()
