"""Analyse and keep: the one place that runs the models on an image and stores what they found. The API, the
dashboard, the CLI and the workers all go through ``AnalysisService``; storage only persists.

An image with the same options is analysed once, also when several threads or processes (workers on other
machines) submit it at the same time: in-process callers queue on a lock, other processes on the database claim
(``Repository.claim``), whose holder renews a heartbeat so a dead holder's claim is taken over within the lease.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import threading
import time
import weakref
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from picmetric import logs
from picmetric.core.analyzer import RENDER_KINDS, Analysis, Analyzer, TaskCallback, shared_analyzer
from picmetric.core.annotate import CONTENT_TYPES, encode_image
from picmetric.core.catalog import DETECTOR, DetectorEntry, coco_class_names, detectors
from picmetric.core.decoding import LoadedImage, load_image
from picmetric.core.drawing import render as draw_results
from picmetric.core.explain import class_activations
from picmetric.core.options import AnalysisOptions
from picmetric.core.results import Classification, Detections, Faces
from picmetric.errors import AnalysisFailedError, NotFoundError, PicMetricError
from picmetric.service.similar import SimilarPhoto, SimilarPhotos
from picmetric.service.types import HistoryFilter, HistoryItem, HistoryPage, ImageKind, Picture, converted
from picmetric.settings import Settings
from picmetric.storage import AnalysisRecord, Repository
from picmetric.storage import HistoryFilter as StoredHistoryFilter
from picmetric.storage.blobs import FORMAT_CONTENT_TYPES, original_key, render_key

logger = logging.getLogger(__name__)
THUMBNAIL_SIDE = 256
#: how long a caller waits for another process' analysis of the same image before giving up
WAIT_FOR_HOLDER_S = 120.0


@dataclass
class StoredAnalysis:
    """An analysis as stored: results, where its images live, and whether it was computed just now."""

    id: int
    analysis: Analysis
    status: str
    error: str | None
    cached: bool
    blob_keys: dict[str, str]  # original, thumbnail, and objects, faces once drawn -> key
    urls: dict[str, str | None] = field(default_factory=dict)  # same kinds -> browser URL (None: served by us)

    @property
    def image_kinds(self) -> list[str]:
        """The pictures of this analysis: the stored ones and those drawn when first asked for."""
        drawable = self.analysis.render_kinds if self.status == "done" else []
        return [*self.blob_keys, *(kind for kind in drawable if kind not in self.blob_keys)]

    @property
    def sha256(self) -> str:
        return self.analysis.sha256


@dataclass(frozen=True)
class KeptAnalysis:
    """What a job records of its photo (``AnalysisService.keep``): which image, and whether its analysis was
    found stored rather than made by this call."""

    sha256: str
    cached: bool


def migrate_database(settings: Settings) -> str:
    """Bring the database's schema up to date (``picmetric db upgrade``); returns the revision it is at."""
    from picmetric.storage.db import make_engine, upgrade

    return upgrade(make_engine(settings.resolved_database_url, settings.db_timeout_s))


def options_key(options: AnalysisOptions, model_identity: str = "") -> str:
    """The stored key of a set of options (and of the added models they name, ``Analyzer.model_identity``):
    analyses of one image are de-duplicated per key."""
    return hashlib.sha256((options.cache_key + model_identity).encode()).hexdigest()


class AnalysisService:
    """Analyse an image and keep the result, or find it kept already. Safe to share between threads."""

    def __init__(
        self,
        settings: Settings,
        *,
        repository: Repository | None = None,
        analyzer: Analyzer | None = None,
    ) -> None:
        self.settings = settings
        self._repository = repository or Repository(settings)
        self.analyzer = analyzer or shared_analyzer(self.settings)
        self.similar_photos = SimilarPhotos(self._repository, self.analyzer, settings)
        self._key_locks: weakref.WeakValueDictionary[tuple, threading.Lock] = weakref.WeakValueDictionary()
        self._frame_faces = ThreadPoolExecutor(max_workers=1, thread_name_prefix="live-faces")
        self._key_locks_guard = threading.Lock()

    # -- the models, for what is not kept: readiness, DeepStack's answers, live frames, evidence maps -------------

    def warm_up(self) -> None:
        """Load every default model now (a worker before taking jobs, the API before it reports ready)."""
        self.analyzer.warm_up()

    def loaded_models(self) -> dict[str, bool]:
        """Each model this process has met, and whether it is loaded (readiness, the System page)."""
        return self.analyzer.loaded_models()

    def providers(self) -> list[str]:
        """ONNX Runtime's execution providers in use here (CPU, CUDA)."""
        return self.analyzer.providers()

    def detectors(self) -> list[DetectorEntry]:
        """Every object detector an analysis may name: the built-in one first, then the added ones."""
        return detectors(self.settings)

    def detector(self, name: str) -> DetectorEntry:
        """The detector of this name; UnknownModelError when there is none."""
        return self.analyzer.detector_entry(name)

    def analyse_only(self, data: bytes, options: AnalysisOptions, name: str | None = None) -> Analysis:
        """The models' answer for a photo, nothing stored (DeepStack's routes: an NVR sends a frame every few
        seconds, which would flood the history)."""
        return self.analyzer.analyze(load_image(data, settings=self.settings, name=name), options)

    def see_frame(self, pixels: np.ndarray, options: AnalysisOptions) -> tuple[Detections, Faces]:
        """A live camera frame's objects and faces, found as Analyze finds them, nothing stored: the face detector
        runs on its own thread while the object detector runs on this one (both cores at once)."""
        detector = self.analyzer.detector(options.detector_size, precision=options.detector_precision)
        face_detector = self.analyzer.face_detector(options.face_detector)
        faces = self._frame_faces.submit(face_detector.predict, pixels, options.face_score, options.min_face_size)
        objects = detector.predict(pixels, options.min_confidence)
        return objects, faces.result()

    def evidence_maps(self, image: LoadedImage, options: AnalysisOptions, class_ids: list[int]) -> list:
        """Where in the photo the classifier found the evidence for each of these labels (class activation maps)."""
        return class_activations(self.analyzer, image, options, class_ids=class_ids)

    # -- reading -------------------------------------------------------------------------------------------------

    def get(self, sha256: str, options: AnalysisOptions | None = None) -> StoredAnalysis | None:
        """The stored analysis of this image (with these options, or the newest successful one)."""
        record = self._repository.find(sha256, self.key_of(options) if options else None)
        return self._stored(record) if record is not None else None

    def reset(self) -> None:
        """Delete every stored image, analysis and job, and the recent log lines: they name the uploads that are
        gone (the System page and /log would otherwise still list everyone's photos)."""
        self._repository.reset()
        self.similar_photos.index.forget()
        logs.clear()
        logger.warning("reset: every stored analysis and image was deleted, and the log before this line")

    def ship_log_lines(self) -> None:
        """Write the lines this process logged since the last call to the database, where every process reads them
        (lost when the database is away)."""
        self._repository.add_log_lines(logs.process_name(), logs.take_unshipped())

    def recent_log(self, limit: int = 200) -> list[str]:
        """The newest log lines of every process sharing this store (workers' too: each ships its lines to the
        database), by time, each with the process that logged it; this process' own when the database is away."""
        try:
            self.ship_log_lines()
            rows = self._repository.log_lines(limit)
        except PicMetricError:
            return logs.recent_lines(limit)
        rows.sort(key=lambda row: row[2][:19])  # lines start with their time; shipping interleaves processes
        return [f"{line}  [{process}]" for _, process, line in rows]

    def delete(self, sha256: str) -> bool:
        """Delete one image with its analyses and renders; False when there was none."""
        deleted = self._repository.delete(sha256.lower())
        self.similar_photos.index.forget()  # rebuilt from the database at the next search
        return deleted

    def similar(self, sha256: str, limit: int = 10) -> list[SimilarPhoto] | None:
        """Stored photos like a stored one (sha256, md5 or a unique prefix), best first; None when not stored."""
        sha = self._repository.resolve_image(sha256)  # the image's hash alone: its analysis is not needed here
        if sha is None:
            return None
        return self.similar_photos.like_stored(sha, lambda: self._original(sha), limit)

    def similar_to(self, data: bytes, limit: int = 10) -> list[SimilarPhoto]:
        """Stored photos like a photo given here (nothing is stored)."""
        return self.similar_photos.like_photo(data, limit)

    def near_duplicate_of(self, sha256: str) -> SimilarPhoto | None:
        """The stored photo this one is an edited copy of (resized, re-encoded, cropped, brighter), if any."""
        found = self.similar(sha256, limit=1)
        return found[0] if found and found[0].near_duplicate else None

    def backfill_signatures(self) -> int:
        """Describe (features, pHash) every stored image that has no description yet."""
        return self.similar_photos.backfill(self._original)

    def _original(self, sha256: str) -> bytes | None:
        found = self._repository.image_bytes(sha256, "original")
        return found[0] if found is not None else None

    # -- the stored history, for the interfaces: pages, API, CLI and worker never reach storage themselves ------

    def history(self, filters: HistoryFilter | None = None, page: int = 1, page_size: int = 50) -> HistoryPage:
        """One page of stored analyses, newest first, with the filters applied."""
        found = self._repository.history(
            converted(filters, StoredHistoryFilter) if filters else None, page=page, page_size=page_size
        )
        items = [
            converted(item, HistoryItem, thumbnail=self._read(item.thumbnail_key, CONTENT_TYPES["webp"]))
            if item.thumbnail_key
            else converted(item, HistoryItem)
            for item in found.items
        ]
        return HistoryPage(items, found.total, found.page, found.page_size)

    def image(self, sha256: str, kind: ImageKind = "original") -> Picture | None:
        """A stored picture of an image (sha256): the original, its thumbnail, or the newest analysis' objects or
        faces drawn on the photo (drawn the first time they are asked for, then kept); None when there is none.
        Its ETag names its content."""
        found = self._image_key(sha256.lower(), kind)
        return self._read(*found) if found else None

    def picture(self, stored: StoredAnalysis, kind: ImageKind) -> Picture:
        """This analysis' ``kind``: its original or thumbnail, or its objects or faces drawn on the photo (drawn
        now when never asked for before, and kept for the next time)."""
        found = self._render(stored, kind) if kind in RENDER_KINDS else self._image_key(stored.sha256, kind)
        if found is None:
            raise NotFoundError(f"no {kind} image for {stored.sha256}")
        return self._read(*found)

    def _read(self, key: str, content_type: str) -> Picture:
        return Picture(
            content_type,
            f'"{key}"',
            functools.partial(self._repository.blob, key),
            functools.partial(self._repository.blobs.url, key),
        )

    def _image_key(self, sha256: str, kind: str) -> tuple[str, str] | None:
        """Where a stored picture is (its blob key, which names its content) and its content type."""
        if kind not in RENDER_KINDS:
            return self._repository.image_blob(sha256, kind)
        source = self._repository.render_source(sha256, kind)
        if source is None:
            return None
        options_key, drawn = source
        if drawn is not None:
            return drawn
        record = self._repository.find(sha256, options_key)
        return self._render(self._stored(record), kind) if record is not None else None

    def _render(self, stored: StoredAnalysis, kind: str) -> tuple[str, str]:
        """The blob key and content type of a stored analysis' ``kind`` (objects or faces) drawn on its photo."""
        content_type = CONTENT_TYPES[stored.analysis.options.render_format]
        if kind in stored.blob_keys:
            return stored.blob_keys[kind], content_type
        image = load_image(self._repository.blob(stored.blob_keys["original"]), settings=self.settings)
        data = draw_results(image, stored.analysis, kind)  # on the working copy the models saw: the same settings
        key = render_key(data, content_type)
        created = not self._repository.blobs.exists(key)
        if created:
            self._repository.blobs.put(key, data, content_type)
        try:
            self._repository.keep_render(stored.id, kind, key, content_type)
        except PicMetricError:
            if created:
                self._repository.undo(None, None, [key])  # removed unless another analysis points to it meanwhile
            raise
        stored.blob_keys[kind] = key
        return key, content_type

    def is_stored(self, sha256: str, options: AnalysisOptions) -> bool:
        """Whether this image has an analysis (done, running or failed) with these options."""
        return self._repository.claim_state(sha256, self.key_of(options))[0] != "missing"

    def health(self) -> dict[str, str]:
        """'ok' or the reason, for the database and the object store."""
        return self._repository.health()

    def stats(self) -> dict[str, int | float]:
        return self._repository.stats()

    def storage_description(self) -> str:
        """Where the images are kept, in words (a folder, or a bucket and endpoint)."""
        return self._repository.blobs.describe()

    def job_counts(self) -> dict[str, int]:
        return self._repository.job_counts()

    def sweep_orphans(self) -> list[str]:
        """Delete blobs no row references (left by a crash); returns their keys."""
        return self._repository.sweep_orphans()

    def list_s3_images(self, location: str, suffixes: Collection[str]) -> list[str]:
        """The s3:// URLs of the images under ``s3://bucket/prefix`` (``picmetric ingest``), read with this
        server's credentials."""
        from picmetric.storage.s3 import S3Objects

        return S3Objects(self.settings).list(location, tuple(suffixes))

    def find(self, text: str) -> StoredAnalysis | None:
        """The newest stored analysis of the image ``text`` names: a sha256, an md5 or a unique prefix (8+)."""
        sha = self._repository.resolve_image(text)
        return self.get(sha) if sha else None

    def _stored(self, record: AnalysisRecord) -> StoredAnalysis:
        options = AnalysisOptions.from_stored(record.options)
        tasks, done = set(options.tasks), record.status == "done"
        classification = detections = faces = None
        if "labels" in tasks and done:
            classification = Classification(
                np.array([label[0] for label in record.labels], np.int64),
                np.array([label[2] for label in record.labels], np.float32),
                [label[1] for label in record.labels],
                model=record.labels[0][3] if record.labels else options.classifier,
            )
        weaker = record.candidates
        names = self._class_names(options, [*record.objects, *weaker.get("objects", [])])
        if "objects" in tasks and done:
            detections = _detections(record.objects, names)
        if "faces" in tasks and done:
            faces = _faces(record.faces)
        analysis = Analysis(
            **record.image.fact_values(), options=options, classification=classification,
            detections=detections, faces=faces, timings_ms=record.timings_ms, model_versions=record.model_versions,
            created_at=record.created_at, floors=weaker.get("floors", {}),
            weaker_objects=_detections(weaker["objects"], names) if detections and "objects" in weaker else None,
            weaker_faces=_faces(weaker["faces"]) if faces is not None and "faces" in weaker else None,
        )  # fmt: skip
        return StoredAnalysis(
            id=record.id, analysis=analysis, status=record.status, error=record.error, cached=True,
            blob_keys=record.blob_keys, urls=record.urls,
        )  # fmt: skip

    def _class_names(self, options: AnalysisOptions, objects: list) -> list[str]:
        """The classes of the detector an analysis ran: the built-in COCO ones, an added detector's, or (for one
        removed since) as many as its stored objects name, with their stored labels."""
        if options.detector == DETECTOR.key:
            return coco_class_names()
        try:
            return self.analyzer.detector_entry(options.detector).classes
        except PicMetricError:
            names = [f"class {i}" for i in range(1 + max((row[2] for row in objects), default=-1))]
            for row in objects:  # stored objects carry their label; weaker candidates only their class number
                if len(row) > 3:
                    names[row[2]] = row[3]
            return names

    # -- analyse and keep ----------------------------------------------------------------------------------------

    def submit(
        self,
        data: bytes | LoadedImage,
        *,
        source: str | None = None,
        name: str | None = None,
        options: AnalysisOptions | None = None,
        on_task_done: TaskCallback | None = None,
    ) -> StoredAnalysis:
        """Store and analyse an image, or return the stored analysis when this image with these options exists.
        ``source`` and ``name`` describe where it came from (they override a loaded image's own).
        ``on_task_done`` reports each model as it finishes (not called for a stored analysis)."""
        options = options or AnalysisOptions()
        key = self.key_of(options)  # an unknown detector is refused here, before anything is stored
        image = self._loaded(data, source, name)
        with self._lock_for((image.sha256, key)):
            record = self._repository.find(image.sha256, key)
            if record is not None and record.status == "done":
                logger.info("%s %s: found in history", image.sha256[:12], image.name or "")
                return self._stored(record)
            by_another = self._analyse_and_keep(image, options, key, on_task_done)
            if by_another is not None:
                return by_another
        record = self._repository.find(image.sha256, key)
        assert record is not None
        stored = self._stored(record)
        stored.cached = False
        return stored

    def keep(
        self,
        data: bytes,
        *,
        source: str,
        name: str | None,
        options: AnalysisOptions,
        analysis_slot: AbstractContextManager[Any] | None = None,
    ) -> KeptAnalysis:
        """What a job does: ``submit`` without reading the analysis back (the job records only which image it was
        and whether it was found stored), so a worker far from the database pays no round trips for an answer
        nobody reads. ``analysis_slot`` is held while the models run, and only then: the job's storage and
        database work overlaps other jobs' inference."""
        key = self.key_of(options)
        image = self._loaded(data, source, name)
        with self._lock_for((image.sha256, key)):
            state, _ = self._repository.claim_state(image.sha256, key)
            if state == "done":
                return KeptAnalysis(image.sha256, cached=True)
            by_another = self._analyse_and_keep(image, options, key, None, analysis_slot)
        return KeptAnalysis(image.sha256, cached=by_another is not None)

    def _loaded(self, data: bytes | LoadedImage, source: str | None, name: str | None) -> LoadedImage:
        if isinstance(data, LoadedImage):
            return dataclasses.replace(data, source=source or data.source, name=name or data.name)
        return load_image(data, settings=self.settings, origin=source or "upload", name=name)

    def key_of(self, options: AnalysisOptions) -> str:
        """The stored key of these options with this analyzer's models (refuses a detector that is not here)."""
        return options_key(options, self.analyzer.model_identity(options))

    def _lock_for(self, key: tuple) -> threading.Lock:
        with self._key_locks_guard:
            lock = self._key_locks.get(key)
            if lock is None:
                lock = threading.Lock()
                self._key_locks[key] = lock
            return lock

    def _analyse_and_keep(
        self,
        image: LoadedImage,
        options: AnalysisOptions,
        key: str,
        on_task_done: TaskCallback | None,
        analysis_slot: AbstractContextManager[Any] | None = None,
    ) -> StoredAnalysis | None:
        """Analyse and store; None when done here, or the analysis another process (holding the claim) made."""
        repository = self._repository
        created_blobs: list[str] = []

        def put(blob_key: str, data: bytes, content_type: str) -> None:
            if not repository.blobs.exists(blob_key):
                repository.blobs.put(blob_key, data, content_type)
                created_blobs.append(blob_key)

        content_type = FORMAT_CONTENT_TYPES.get(image.format, "application/octet-stream")
        image_key = original_key(image.sha256, content_type)
        analysis_id: int | None = None
        image_id: int | None = None
        try:
            put(image_key, image.data, content_type)  # a storage failure stops here, before any row exists
            image_id = repository.ensure_image(image.facts, image_key, content_type)
            analysis_id = repository.claim(image_id, key, options.to_dict())
            while analysis_id is None:  # another process holds a live claim: wait for its result
                stored = self._wait_for(image.sha256, key)
                if stored is not None:
                    return stored
                analysis_id = repository.claim(image_id, key, options.to_dict())  # its holder died: take it over
            try:
                with repository.heartbeat(analysis_id), analysis_slot or nullcontext():
                    analysis = self.analyzer.analyze(image, options, on_task_done=on_task_done)
            except PicMetricError as exc:
                logger.warning("%s: analysis failed: %s", image.sha256[:12], exc)
                repository.record_failure(analysis_id, str(exc))
                analysis_id = None
                raise AnalysisFailedError(f"the analysis failed: {exc}") from None
            except Exception as exc:  # a model crash must still be recorded, and reported without a trace
                logger.exception("%s: analysis crashed", image.sha256[:12])
                repository.record_failure(analysis_id, f"{exc.__class__.__name__}: {exc}")
                analysis_id = None
                raise AnalysisFailedError(f"the analysis failed ({exc.__class__.__name__})") from None
            thumbnail = _thumbnail(image)  # the history's picture; the results are drawn only when asked for
            thumbnail_key = render_key(thumbnail, CONTENT_TYPES["webp"])
            put(thumbnail_key, thumbnail, CONTENT_TYPES["webp"])
            render_keys = {"thumbnail": (thumbnail_key, CONTENT_TYPES["webp"])}
            results = (analysis.classification, analysis.detections, analysis.faces)
            signature = (
                self.similar_photos.signature_of_analysed(image, analysis.classification)
                if analysis.classification is not None
                else None
            )  # features from this run, kept in the same transaction
            repository.complete(
                analysis_id, results, analysis.model_versions, analysis.timings_ms, render_keys, _weaker(analysis),
                signature,
            )  # fmt: skip
            analysis_id = None
        except BaseException as exc:
            logger.warning("%s: not stored (%s)", image.sha256[:12], exc)
            repository.undo(analysis_id, image_id, created_blobs)
            raise
        logger.info(
            "%s %s: analysed in %.0f ms and stored", image.sha256[:12], image.name or "", analysis.timings_ms["total"]
        )
        return None

    def _wait_for(self, sha256: str, key: str) -> StoredAnalysis | None:
        """The result another holder is producing; None as soon as its claim lapses (the caller takes it over)."""
        deadline = time.monotonic() + WAIT_FOR_HOLDER_S
        while time.monotonic() < deadline:
            state, error = self._repository.claim_state(sha256, key)
            if state in ("missing", "lapsed"):
                return None
            if state == "done":
                stored = self._find_done(sha256, key)
                if stored is not None:
                    return stored
            if state == "failed":
                raise AnalysisFailedError(f"the analysis failed: {error}")
            time.sleep(0.05)
        raise AnalysisFailedError("another worker is still analysing this image; try again shortly")

    def _find_done(self, sha256: str, key: str) -> StoredAnalysis | None:
        record = self._repository.find(sha256, key)
        return self._stored(record) if record is not None and record.status == "done" else None


def _detections(rows: list, class_names: list[str]) -> Detections:
    """Objects from stored rows of (xyxy, confidence, class_id[, label])."""
    return Detections(
        np.array([row[0] for row in rows], np.float32).reshape(-1, 4),
        np.array([row[1] for row in rows], np.float32),
        np.array([row[2] for row in rows], np.int64),
        class_names,
    )


def _faces(rows: list) -> Faces:
    """Faces from stored rows of (xyxy, confidence, 5 landmarks)."""
    return Faces(
        np.array([row[0] for row in rows], np.float32).reshape(-1, 4),
        np.array([row[1] for row in rows], np.float32),
        np.array([row[2] for row in rows], np.float32).reshape(-1, 5, 2),
    )


def _weaker(analysis: Analysis) -> dict:
    """The candidates below the thresholds as plain JSON, in the same row shapes as the stored results."""

    def box(values) -> list[float]:
        return [round(float(v), 1) for v in values]

    document: dict = {"floors": analysis.floors}
    if (objects := analysis.weaker_objects) is not None:
        document["objects"] = [
            [box(b), round(float(p), 6), int(c)]
            for b, p, c in zip(objects.xyxy, objects.confidence, objects.class_id, strict=True)
        ]
    if (faces := analysis.weaker_faces) is not None:
        document["faces"] = [
            [box(b), round(float(p), 6), [box(point) for point in points]]
            for b, p, points in zip(faces.xyxy, faces.confidence, faces.landmarks, strict=True)
        ]
    return document


def _thumbnail(image: LoadedImage) -> bytes:
    thumb = Image.fromarray(image.pixels)
    thumb.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.BILINEAR)
    return encode_image(np.asarray(thumb), "webp")
