"""Similar photos: an in-memory index of every stored image's features and pHash, kept in step with the database.

The index is exact: usearch's SIMD brute-force search over a float16 matrix (``usearch.index.search(...,
exact=True)``), 10 ms at 100,000 photos on 2 cores and 250 MB, faster than numpy's float32 matmul at half its memory
and, unlike its HNSW graph, exact and free to build (benchmarks/bench_similar.py --search). Every process keeps its
own copy: before each search it asks the database how many feature rows exist and up to which id, loads the new
ones, and rebuilds after deletions (a reset, another process' delete); the images found are read back from the
database, so a deleted one is never answered.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from usearch.index import MetricKind, search

from picmetric.core.analyzer import Analyzer
from picmetric.core.decoding import LoadedImage, load_image
from picmetric.core.results import Classification
from picmetric.core.similar import hash_distance, near_duplicate, perceptual_hash
from picmetric.settings import Settings
from picmetric.storage import NewSignature, Repository

#: the classifier whose features the index holds: the default one, so most analyses bring theirs for free
INDEXED_MODEL = "efficientnet_lite2"


@dataclass(frozen=True)
class SimilarPhoto:
    """A stored photo like the one asked about: ``similarity`` is the features' cosine (0-1), ``near_duplicate``
    whether it is the same picture edited (resized, re-encoded, cropped a little, brighter, turned)."""

    sha256: str
    name: str | None
    similarity: float
    near_duplicate: bool
    thumbnail_key: str | None
    #: stored before the photo asked about (None: that photo is not stored): an original is no copy of its copy
    stored_before: bool | None = None


class SimilarityIndex:
    def __init__(self, repository: Repository, model: str = INDEXED_MODEL) -> None:
        self._repository, self.model = repository, model
        self._lock = threading.Lock()
        self._clear()

    def _clear(self) -> None:
        self._image_ids = np.empty(0, np.int64)
        self._hashes = np.empty(0, np.uint64)
        self._has_hash = np.empty(0, bool)
        self._vectors: np.ndarray | None = None  # (capacity, dims) float16; the first ``_size`` rows are used
        self._size = 0
        self._last_row = 0

    def forget(self) -> None:
        """Start again from the database at the next search (after this process deleted or reset)."""
        with self._lock:
            self._clear()

    def __len__(self) -> int:
        return self._size

    def similar_to_indexed(self, image_id: int, limit: int) -> list[SimilarPhoto] | None:
        """Stored photos like an indexed one (itself left out), best first; None when it has no signature yet.
        One catch-up with the database for both finding its signature and searching."""
        with self._lock:
            self._sync()
            where = np.flatnonzero(self._image_ids[: self._size] == image_id)
            if not len(where) or self._vectors is None:
                return None
            at = int(where[0])
            phash = int(self._hashes[at]) if self._has_hash[at] else None
            found = self._search(self._vectors[at].astype(np.float32), phash, limit, image_id)
        return self._read_back(found, image_id)

    def _sync(self) -> None:
        count, largest = self._repository.signature_stats(self.model)
        if count < self._size or largest < self._last_row:  # rows went away (a delete elsewhere, a reset)
            self._clear()
        while largest > self._last_row:
            rows = self._repository.signatures_since(self.model, self._last_row)
            if not rows:
                break
            self._append(rows)
            self._last_row = rows[-1].row_id

    def _append(self, rows: list) -> None:
        vectors = np.stack([np.frombuffer(r.vector, np.float16) for r in rows])
        needed = self._size + len(rows)
        if self._vectors is None or needed > len(self._vectors):  # grow by doubling: adding stays cheap
            grown = np.empty((max(needed, 2 * (0 if self._vectors is None else len(self._vectors)), 64),
                              vectors.shape[1]), np.float16)  # fmt: skip
            if self._vectors is not None:
                grown[: self._size] = self._vectors[: self._size]
            self._vectors = grown
        self._vectors[self._size : needed] = vectors
        hashes = [int(r.phash, 16) if r.phash else 0 for r in rows]
        self._image_ids = np.concatenate([self._image_ids, [r.image_id for r in rows]])
        self._hashes = np.concatenate([self._hashes, np.array(hashes, np.uint64)])
        self._has_hash = np.concatenate([self._has_hash, [r.phash is not None for r in rows]])
        self._size = needed

    def search(
        self, vector: np.ndarray, phash: int | None, limit: int, exclude: int | None = None
    ) -> list[tuple[int, float, bool]]:
        """The ``limit`` stored images most like (``vector``, ``phash``), best first, as (image id, cosine,
        near-duplicate); ``exclude`` (the photo's own image id) left out."""
        with self._lock:
            self._sync()
            return self._search(vector, phash, limit, exclude)

    def _search(
        self, vector: np.ndarray, phash: int | None, limit: int, exclude: int | None
    ) -> list[tuple[int, float, bool]]:
        """``search`` on the index as it is (the caller holds the lock and has caught up)."""
        if self._size == 0 or self._vectors is None:
            return []
        wanted = min(self._size, limit + (exclude is not None))
        found = search(self._vectors[: self._size], vector.astype(np.float16), wanted, MetricKind.Cos,
                       exact=True, threads=2)  # fmt: skip
        positions = np.asarray(found.keys, np.int64).reshape(-1)
        cosines = 1.0 - np.asarray(found.distances, np.float64).reshape(-1)
        image_ids = self._image_ids[positions]
        bits = hash_distance(self._hashes[positions], phash or 0)
        bits = np.where(self._has_hash[positions] & (phash is not None), bits, 64)
        same = near_duplicate(bits, cosines)
        answer = [
            (int(i), float(np.clip(c, 0.0, 1.0)), bool(d))
            for i, c, d in zip(image_ids, cosines, same, strict=True)
            if i != exclude
        ]
        return answer[:limit]

    def similar(
        self, vector: np.ndarray, phash: int | None, limit: int, exclude: int | None = None
    ) -> list[SimilarPhoto]:
        """As ``search``, read back from the database (an image deleted meanwhile is left out)."""
        return self._read_back(self.search(vector, phash, limit, exclude), exclude)

    def _read_back(self, found: list[tuple[int, float, bool]], asked: int | None = None) -> list[SimilarPhoto]:
        """The found images from the database; ``asked``: the stored photo asked about (image ids grow with time,
        so a smaller one was stored before it)."""
        stored = self._repository.neighbours([image_id for image_id, _, _ in found])
        return [
            SimilarPhoto(
                stored[i].sha256,
                stored[i].name,
                round(c, 4),
                d,
                stored[i].thumbnail_key,
                None if asked is None else i < asked,
            )  # fmt: skip
            for i, c, d in found
            if i in stored
        ]


def vector_bytes(features: np.ndarray) -> bytes:
    return np.asarray(features, np.float16).tobytes()


def phash_text(phash: int) -> str:
    return f"{phash:016x}"


class SimilarPhotos:
    """The service's similar-photo door: describe each stored image, search, backfill. The features come from the
    analysis' own classifier run when it ran the indexed one; otherwise (another classifier, rows from before this
    existed) that classifier runs once for the image, when asked or by ``picmetric db backfill``."""

    def __init__(self, repository: Repository, analyzer: Analyzer, settings: Settings) -> None:
        self._repository, self.analyzer, self.settings = repository, analyzer, settings
        self.index = SimilarityIndex(repository)

    def signature_of_analysed(self, image: LoadedImage, classification: Classification) -> NewSignature | None:
        """An analysed image's signature, to keep with its results, when its run brought the indexed classifier's
        features (another classifier: described later, when asked or by a backfill, never by an extra model run
        now)."""
        if classification.model != INDEXED_MODEL or classification.features is None:
            return None
        return self._signature(image, classification.features)

    def describe(self, image: LoadedImage, features: np.ndarray | None = None) -> tuple[np.ndarray, int]:
        """Store (and return) an image's features (computed here unless given) and pHash."""
        if features is None:
            features = self._features(image)
        signature = self._signature(image, features)
        self._repository.save_signature(image.sha256, signature)
        return features, int(signature.phash, 16)

    def _signature(self, image: LoadedImage, features: np.ndarray) -> NewSignature:
        return NewSignature(phash_text(perceptual_hash(image.pixels)), INDEXED_MODEL, vector_bytes(features))

    def _features(self, image: LoadedImage) -> np.ndarray:
        found = self.analyzer.classifier(INDEXED_MODEL, "int8").predict(image.pixels, top_k=1).features
        assert found is not None, "the classifier answers its features"
        return found

    def like_stored(self, sha256: str, original: Callable[[], bytes | None], limit: int) -> list[SimilarPhoto] | None:
        """Stored photos like a stored one (not itself), best first; None when it is not stored."""
        image_id = self._repository.image_id(sha256)
        if image_id is None:
            return None
        found = self.index.similar_to_indexed(image_id, limit)
        if found is not None:
            return found
        data = original()  # analysed before this existed, or with another classifier: described now, once
        if data is None:
            return None
        features, phash = self.describe(load_image(data, settings=self.settings))
        return self.index.similar(features, phash, limit, exclude=image_id)

    def like_photo(self, data: bytes, limit: int) -> list[SimilarPhoto]:
        """Stored photos like a photo that is not stored (and is not stored by asking)."""
        image = load_image(data, settings=self.settings)
        exclude = self._repository.image_id(image.sha256)  # the very same bytes stored: not its own neighbour
        return self.index.similar(self._features(image), perceptual_hash(image.pixels), limit, exclude)

    def backfill(self, original: Callable[[str], bytes | None], batch: int = 50) -> int:
        """Describe every stored image that has no features yet; returns how many were described."""
        done = 0
        while missing := self._repository.images_without_signature(INDEXED_MODEL, batch):
            described = 0
            for sha256 in missing:
                data = original(sha256)
                if data is not None:
                    self.describe(load_image(data, settings=self.settings))
                    described += 1
            done += described
            if not described:  # originals missing from the store: nothing more can be done
                break
        return done
