"""Videos: a clip in, every object tracked and counted, an annotated clip out.

A clip is stored like a photo (content-addressed, one row per sha256). Its analysis is cut at keyframes into chunks
of about ``video_chunk_s`` seconds, each a job (on Celery workers when a broker is configured, on threads here
otherwise) that decodes its frames and a little past its end, detects and tracks. The worker whose chunk completes
the analysis stitches the chunks' tracks (``picmetric.core.tracking.stitch``), reads the crossings off the whole
tracks and draws the annotated clip: so one worker or many give the same tracks and crossings, and an analysis of
the same clip with the same options is found again, not run again."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from picmetric.core.catalog import DETECTOR, DETECTOR_SIZES, PRECISIONS
from picmetric.core.options import AnalysisOptions
from picmetric.core.tracking import TRACKERS, CountingLine, Crossing, ObjectTracker, Row, draw_frame, stitch
from picmetric.core.video import ClipWriter, VideoFacts, chunk_bounds, decode_frames, probe_video
from picmetric.errors import NotFoundError, PicMetricError
from picmetric.service.jobs import JobInput, JobService
from picmetric.storage import JobRecord
from picmetric.storage.repository import VideoAnalysisRecord

logger = logging.getLogger(__name__)
CHUNK_KIND = "video-chunk"
Progress = Callable[["VideoProgress"], None]


class VideoOptions(BaseModel):
    """What to find and follow in a clip; everything here changes the stored result (``key``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    detector: Annotated[str, Field(max_length=64)] = DETECTOR.key
    detector_size: Annotated[int, Field(json_schema_extra={"enum": list(DETECTOR_SIZES)})] = 416
    precision: Annotated[str, Field(json_schema_extra={"enum": list(PRECISIONS)})] = "int8"
    min_confidence: Annotated[float, Field(ge=0.05, le=1)] = 0.25
    every: Annotated[int, Field(ge=1, le=60, description="analyse every k-th frame")] = 1
    faces: bool = False
    line: tuple[float, float, float, float] | None = Field(default=None, description="X1, Y1, X2, Y2 in pixels")
    tracker: Annotated[str, Field(json_schema_extra={"enum": list(TRACKERS)})] = "bytetrack"

    @field_validator("line")
    @classmethod
    def _line(cls, value: tuple[float, float, float, float] | None) -> tuple[float, float, float, float] | None:
        if value is not None:
            CountingLine.parse(",".join(str(v) for v in value))
        return value

    @field_validator("detector_size", "precision", "tracker")
    @classmethod
    def _one_of(cls, value: object, info: ValidationInfo) -> object:
        choices = {"detector_size": DETECTOR_SIZES, "precision": PRECISIONS, "tracker": TRACKERS}[str(info.field_name)]
        if value not in choices:
            raise ValueError(f"{info.field_name} must be one of {', '.join(map(str, choices))}")
        return value

    @property
    def analysis(self) -> AnalysisOptions:
        """The photo options that find this clip's objects (and faces) in each frame."""
        return AnalysisOptions(
            tasks=("objects", "faces") if self.faces else ("objects",), detector=self.detector,
            detector_size=self.detector_size, precision=self.precision, min_confidence=self.min_confidence,
        )  # fmt: skip

    @property
    def counting_line(self) -> CountingLine | None:
        return CountingLine(*self.line) if self.line is not None else None

    def key(self, model_identity: str) -> str:
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True) + model_identity
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class VideoProgress:
    """How an analysis stands: frames analysed of all, at what rate, and about how long is left."""

    id: int
    state: str  # running | merging | done | failed
    frames_done: int
    frames_total: int
    frames_per_s: float
    seconds_left: float | None
    error: str | None = None

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed")


class VideoService:
    """Store clips, analyse them as chunk jobs, follow them, read their results and annotated clips."""

    def __init__(self, jobs: JobService) -> None:
        self.jobs = jobs
        self.service = jobs.service
        self.settings = jobs.settings
        self._repository = jobs.service._repository
        jobs.register(CHUNK_KIND, self._run_chunk)

    # -- in ----------------------------------------------------------------------------------------------------

    def store(self, data: bytes, *, name: str | None = None, source: str = "upload") -> VideoFacts:
        """Check the clip against the limits (from its header) and keep it, content-addressed."""
        facts = probe_video(data, settings=self.settings, name=name)
        key = f"videos/{facts.sha256}.{facts.container.split(',')[0][:8] or 'bin'}"
        created = False
        if not self._repository.blobs.exists(key):
            self._repository.blobs.put(key, data, "application/octet-stream")
            created = True
        try:
            self._repository.ensure_video(_facts_row(facts), key, source, name)
        except BaseException:
            if created:
                self._repository.undo(None, None, [key])
            raise
        return facts

    def analyse(self, data: bytes, options: VideoOptions | None = None, *, name: str | None = None,
                source: str = "upload") -> VideoProgress:  # fmt: skip
        """Store the clip and start its analysis (chunks as jobs), or find the one running or done already."""
        facts = self.store(data, name=name, source=source)
        return self.start(facts, options or VideoOptions())

    def start(self, facts: VideoFacts, options: VideoOptions) -> VideoProgress:
        if options.line is not None:
            for x, y in (options.line[:2], options.line[2:]):
                if not (0 <= x <= facts.width and 0 <= y <= facts.height):
                    raise PicMetricError(f"the counting line must lie inside the {facts.width}x{facts.height} frame")
        identity = self.service.key_of(options.analysis)  # refuses a detector that is not here
        bounds = chunk_bounds(facts, self.settings.video_chunk_s)
        record, mine = self._repository.claim_video_analysis(
            facts.sha256, options.key(identity), options.model_dump(mode="json"), len(bounds)
        )
        if mine:
            overlap = _overlap(facts, options)
            inputs = [
                JobInput(
                    source="video",
                    name=facts.name,
                    kind=CHUNK_KIND,
                    spec={
                        "analysis": record.id,
                        "video": facts.sha256,
                        "index": i,
                        "start": start,
                        "stop": stop,
                        "until": min(facts.frames, stop + overlap),
                    },
                )  # fmt: skip
                for i, (start, stop) in enumerate(bounds)
            ]
            for i, (start, stop) in enumerate(bounds):
                self._repository.chunk_progress(record.id, i, 0, min(facts.frames, stop + overlap) - start)
            try:
                batch_id, _ = self.jobs.submit(inputs, options.analysis, batch=True)
            except PicMetricError as exc:
                self._repository.fail_video_analysis(record.id, str(exc))
                raise
            self._repository.set_video_batch(record.id, batch_id)
        return self.progress(record.id)

    # -- following ---------------------------------------------------------------------------------------------

    def progress(self, analysis_id: int) -> VideoProgress:
        record = self._analysis(analysis_id)
        chunks = self._repository.video_chunks(analysis_id)
        done = sum(c.frames_done for c in chunks)
        total = sum(c.frames_total for c in chunks) or 1
        if record.state == "running" and record.batch_id is not None:
            failed = [j for j in self.jobs.batch(record.batch_id) or [] if j.state == "failed"]
            if failed:  # a chunk's job gave up (its worker kept dying, or the database stayed away)
                self._repository.fail_video_analysis(analysis_id, failed[0].error or "a chunk of the video failed")
                record = self._analysis(analysis_id)
        elapsed = max(1e-3, time.time() - record.created_at.timestamp())
        rate = done / elapsed
        left = (total - done) / rate if record.state == "running" and rate > 0 else None
        if record.state == "done":
            done = total
        return VideoProgress(analysis_id, record.state, done, total, round(rate, 1), left, record.error)

    def wait(self, analysis_id: int, on_progress: Progress | None = None, poll_s: float = 0.5,
             timeout_s: float = 3600.0) -> dict[str, Any]:  # fmt: skip
        """The result once the analysis ends (its error raised when it failed)."""
        deadline = time.monotonic() + timeout_s
        while True:
            progress = self.progress(analysis_id)
            if on_progress:
                on_progress(progress)
            if progress.finished:
                return self.result(analysis_id)
            if time.monotonic() > deadline:
                raise PicMetricError("the video analysis is still running; ask again later")
            time.sleep(poll_s)

    def result(self, analysis_id: int) -> dict[str, Any]:
        record = self._analysis(analysis_id)
        if record.state == "failed":
            raise PicMetricError(f"the video analysis failed: {record.error}")
        if record.state != "done" or record.result_key is None:
            raise NotFoundError(f"video analysis {analysis_id} has not finished")
        return json.loads(self._repository.blobs.get(record.result_key))

    def clip(self, analysis_id: int) -> bytes:
        """The annotated clip (H.264 MP4): drawn the first time it is asked for, then kept (as a photo's boxes
        are), so the workers' time goes to finding and following the objects."""
        record = self._analysis(analysis_id)
        if record.clip_key is not None:
            return self._repository.blobs.get(record.clip_key)
        result = self.result(analysis_id)
        options = VideoOptions(**record.options)
        data, facts = self._clip_data(record.sha256)
        names = self.service.detector(options.detector).classes
        index = {name: i for i, name in enumerate(names)}
        per_frame: dict[int, list[Row]] = {}
        for track in result["tracks"]:
            for frame, *box, confidence in track["boxes"]:
                per_frame.setdefault(frame, []).append([track["id"], index.get(track["class"], 0), *box, confidence])
        crossings = [Crossing(c["track"], index.get(c["class"], 0), c["frame"], c["direction"])
                     for c in result["crossings"]]  # fmt: skip
        clip = self._draw(data, facts, per_frame, crossings, options.counting_line, names, options.every)
        key = f"video-renders/{hashlib.sha256(clip).hexdigest()}.mp4"
        self._repository.blobs.put(key, clip, "video/mp4")
        self._repository.set_video_clip(analysis_id, key)
        return clip

    def videos(self, limit: int = 50) -> list[tuple[dict[str, Any], VideoProgress | None]]:
        """The newest clips (their facts) with their newest analysis: the History page's video list."""
        found = []
        for video, analysis in self._repository.videos(limit):
            facts = {k: v for k, v in vars(video).items() if k != "blob_key"}
            found.append((facts, self.progress(analysis.id) if analysis is not None else None))
        return found

    def _analysis(self, analysis_id: int) -> VideoAnalysisRecord:
        record = self._repository.video_analysis(analysis_id)
        if record is None:
            raise NotFoundError(f"no video analysis {analysis_id}")
        return record

    # -- a chunk, on whichever worker runs its job ----------------------------------------------------------------

    def _run_chunk(self, job: JobRecord) -> dict[str, Any]:
        spec = job.spec or {}
        analysis_id, index = int(spec["analysis"]), int(spec["index"])
        record = self._analysis(analysis_id)
        if record.state in ("done", "failed"):
            return {"sha256": record.sha256, "cached": True}
        options = VideoOptions(**record.options)
        try:
            data, facts = self._clip_data(record.sha256)
            rows, faces = self._track(data, facts, options, spec, analysis_id, index)
        except PicMetricError as exc:
            if not exc.retryable:
                self._repository.fail_video_analysis(analysis_id, str(exc))
            raise
        payload = json.dumps({"start": spec["start"], "stop": spec["stop"], "frames": rows, "faces": faces})
        key = f"video-chunks/{analysis_id}/{index}-{hashlib.sha256(payload.encode()).hexdigest()[:16]}.json"
        self._repository.blobs.put(key, payload.encode(), "application/json")
        if self._repository.chunk_done(analysis_id, index, key) >= record.chunks and self._repository.claim_merge(
            analysis_id
        ):
            try:
                self._merge(record, options, facts)
            except Exception as exc:
                logger.exception("video analysis %s: stitching failed", analysis_id)
                self._repository.fail_video_analysis(analysis_id, f"stitching the chunks failed ({exc})")
                raise
        return {"sha256": record.sha256, "cached": False}

    def _clip_data(self, sha256: str) -> tuple[bytes, VideoFacts]:
        video = self._repository.video(sha256)
        if video is None:
            raise NotFoundError(f"the video {sha256[:12]} was deleted")
        data = self._repository.blobs.get(video.blob_key)
        return data, probe_video(data, settings=self.settings, name=video.name)

    def _track(self, data: bytes, facts: VideoFacts, options: VideoOptions, spec: dict, analysis_id: int,
               index: int) -> tuple[dict[str, list[Row]], dict[str, int]]:  # fmt: skip
        analyzer = self.service.analyzer
        analysis = options.analysis
        detector = analyzer.detector(analysis.detector_size, analysis.detector, analysis.detector_precision)
        faces = analyzer.face_detector() if options.faces else None
        tracker = ObjectTracker(facts.fps / options.every, options.tracker)
        floor = min(0.1, options.min_confidence)  # ByteTrack's second round matches the weak boxes too
        rows: dict[str, list[Row]] = {}
        face_counts: dict[str, int] = {}
        start, until = int(spec["start"]), int(spec["until"])
        total = until - start
        last_report = time.monotonic()
        for number, frame in decode_frames(data, facts, start=start, stop=until, every=options.every):
            found = detector.predict(frame, floor, analysis.iou_threshold, analysis.merge_synonyms)
            tracked = tracker.update(found)
            rows[str(number)] = [r for r in tracked if r[6] >= options.min_confidence]
            if faces is not None:
                face_counts[str(number)] = len(faces.predict(frame).filter(analysis.face_score))
            if time.monotonic() - last_report > 1.0:
                self._repository.chunk_progress(analysis_id, index, number - start + 1, total)
                last_report = time.monotonic()
        return rows, face_counts

    def _merge(self, record: VideoAnalysisRecord, options: VideoOptions, facts: VideoFacts) -> None:
        """Stitch the chunks, count the crossings, keep the result (the clip is drawn when first asked for)."""
        chunks = []
        faces: dict[str, int] = {}
        for chunk in self._repository.video_chunks(record.id):
            assert chunk.result_key is not None
            part = json.loads(self._repository.blobs.get(chunk.result_key))
            chunks.append((part["start"], part["stop"], {int(f): rows for f, rows in part["frames"].items()}))
            faces |= {f: n for f, n in part["faces"].items() if int(f) < part["stop"]}
        chunks.sort(key=lambda c: c[0])
        tracks = stitch(chunks, warmup=_overlap(facts, options) // 2)
        names = self.service.detector(options.detector).classes
        line = options.counting_line
        crossings = line.crossings(tracks) if line is not None else []
        in_view: dict[int, list[int]] = {}
        for track in tracks:
            for frame in track.frames:
                in_view.setdefault(frame, []).append(track.id)
        class_of = {t.id: names[t.class_id] for t in tracks}
        counts = [
            {"frame": f, "objects": dict(Counter(class_of[t] for t in in_view.get(f, [])))}
            for f in range(0, facts.frames, options.every)
        ]
        result = {
            "video": {k: v for k, v in vars(facts).items() if k not in ("keyframes", "frame_pts")},
            "frames": facts.frames, "fps": facts.fps, "every": options.every,
            "options": options.model_dump(mode="json"),
            "tracks": [
                {"id": t.id, "class": names[t.class_id], "first_frame": t.first_frame, "last_frame": t.last_frame,
                 "boxes": [[f, *(round(v, 1) for v in b), round(c, 3)]
                           for f, b, c in zip(t.frames, t.boxes, t.confidences, strict=True)]}
                for t in tracks
            ],
            "crossings": [{"track": c.track, "class": names[c.class_id], "frame": c.frame, "direction": c.direction}
                          for c in crossings],
            "totals": _totals(crossings, names),
            "counts": counts,
            "faces": [{"frame": int(f), "faces": n} for f, n in sorted(faces.items(), key=lambda i: int(i[0]))],
        }  # fmt: skip
        payload = json.dumps(result).encode()
        result_key = f"video-results/{hashlib.sha256(payload).hexdigest()}.json"
        self._repository.blobs.put(result_key, payload, "application/json")
        self._repository.finish_video_analysis(record.id, result_key)
        logger.info("video %s: %d tracks, %d crossings", record.sha256[:12], len(tracks), len(crossings))

    def _draw(self, data: bytes, facts: VideoFacts, per_frame: dict[int, list[Row]], crossings: list,
              line: CountingLine | None, names: list[str], every: int) -> bytes:  # fmt: skip
        """Every frame of the clip, with the boxes of the latest analysed frame, trails and the running counts."""
        out = io.BytesIO()
        trails: dict[int, list[tuple[float, float]]] = {}
        totals: Counter[str] = Counter()
        pending = list(crossings)
        shown: list[Row] = []
        with ClipWriter(out, facts.width, facts.height, facts.fps) as writer:
            for number, frame in decode_frames(data, facts):
                if number in per_frame:
                    shown = per_frame[number]
                    for row in shown:
                        trail = trails.setdefault(int(row[0]), [])
                        trail.append(((row[2] + row[4]) / 2, row[5]))
                        del trail[:-15]
                elif number % every == 0:
                    shown = []
                while pending and pending[0].frame <= number:
                    totals[pending.pop(0).direction] += 1
                writer.write(draw_frame(frame, shown, names, trails, line, totals))
        return out.getvalue()


def _overlap(facts: VideoFacts, options: VideoOptions) -> int:
    """Frames a chunk is analysed past its end: two seconds, at least ten analysed frames. Half of them warm the
    next chunk's tracker up; on all of them its tracks are matched to this chunk's."""
    return max(10 * options.every, round(2 * facts.fps))


def _totals(crossings: list, names: list[str]) -> dict[str, dict[str, int]]:
    totals: dict[str, dict[str, int]] = {}
    for c in crossings:
        per = totals.setdefault(names[c.class_id], {"in": 0, "out": 0})
        per[c.direction] += 1
    return totals


def _facts_row(facts: VideoFacts) -> dict[str, Any]:
    return {
        "sha256": facts.sha256, "size_bytes": facts.size_bytes, "container": facts.container[:32],
        "codec": facts.codec[:32], "width": facts.width, "height": facts.height, "fps": facts.fps,
        "frames": facts.frames, "duration_s": facts.duration_s, "rotation": facts.rotation,
    }  # fmt: skip


def csv_rows(result: dict[str, Any]) -> str:
    """The tracked boxes as CSV: one row per box (frame, time, track, class, box, confidence)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["frame", "time_s", "track", "class", "x1", "y1", "x2", "y2", "confidence"])
    fps = result["fps"] or 1
    boxes = sorted((b[0], t["id"], t["class"], b[1:5], b[5]) for t in result["tracks"] for b in t["boxes"])
    for frame, track, name, (x1, y1, x2, y2), confidence in boxes:
        writer.writerow([frame, round(frame / fps, 3), track, name, x1, y1, x2, y2, confidence])
    return out.getvalue()
