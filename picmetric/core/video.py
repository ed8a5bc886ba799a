"""Video in and out through PyAV (FFmpeg): a clip's facts and limits from its container's header, before a frame is
decoded; its frames upright (a phone's rotation applied), from any keyframe; and an H.264 clip written back.

Frames are numbered in presentation order: every video packet's timestamp is read first (demuxing, no decoding:
milliseconds for a long clip), so a frame's number is its place among them, the same whichever keyframe decoding
started from. That is what lets a clip be cut at keyframes into chunks that workers decode on their own."""

from __future__ import annotations

import bisect
import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from picmetric.core.decoding import InvalidImageError
from picmetric.errors import ImageTooLargeError, PicMetricError
from picmetric.settings import Settings

#: what the upload fields and the CLI accept; the content is what decides
VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".webm", ".avi", ".mkv")


class InvalidVideoError(InvalidImageError):
    """Not a video PicMetric can read: no video stream, no frames, damaged, or an unknown container."""


class VideoTooLargeError(ImageTooLargeError):
    """Over a video limit (bytes, duration, frames, frame size), known from the header alone."""


@dataclass(frozen=True)
class VideoFacts:
    """What identifies a clip and describes it, from its header and packet index (nothing decoded)."""

    sha256: str
    size_bytes: int
    container: str
    codec: str
    width: int  # upright: a clip shot in portrait is taller than wide
    height: int
    fps: float  # frames per second on average (a variable-rate clip has no single rate)
    frames: int
    duration_s: float
    rotation: int  # degrees the stored frames are turned to show them upright
    keyframes: tuple[int, ...] = field(repr=False)  # frame numbers decoding can start at
    frame_pts: tuple[int, ...] = field(repr=False, compare=False)  # each frame's timestamp: its number is its place
    name: str | None = None


@dataclass(frozen=True)
class _Index:
    """Every frame's timestamp in presentation order, and the stream's time base."""

    pts: list[int]
    keyframe_pts: list[int]
    time_base: Fraction


def _open(data: bytes) -> av.container.InputContainer:
    try:
        return av.open(io.BytesIO(data), mode="r")
    except (av.FFmpegError, ValueError, OSError) as exc:
        raise InvalidVideoError(f"not a video PicMetric can read ({_reason(exc)})") from None


def _reason(exc: BaseException) -> str:
    return str(getattr(exc, "strerror", None) or exc).strip()[:160] or exc.__class__.__name__


def probe_video(data: bytes, *, settings: Settings, name: str | None = None) -> VideoFacts:
    """The clip's facts, or a clear refusal: over a limit (bytes, frame size, duration, frames: all from the
    header, so a ten-hour clip costs no decoding), no video stream, or no frames."""
    if not data:
        raise InvalidVideoError("the file is empty (0 bytes)")
    if len(data) > settings.max_video_bytes:
        raise VideoTooLargeError(
            f"the video is {len(data) / 1e6:.0f} MB; the limit is {settings.max_video_bytes / 1e6:.0f} MB"
        )
    with _open(data) as container:
        if not container.streams.video:
            kinds = ", ".join(sorted({s.type for s in container.streams})) or "nothing"
            raise InvalidVideoError(f"the file has no video stream (it holds {kinds})")
        stream = container.streams.video[0]
        context = stream.codec_context
        width, height = int(context.width or 0), int(context.height or 0)
        if width <= 0 or height <= 0:  # FFmpeg gives none for an impossible one (100,000 x 100,000)
            raise InvalidVideoError("the video's frame size is missing or impossible")
        if width * height > settings.max_video_pixels:
            raise VideoTooLargeError(
                f"the video's frames are {width}x{height}; the limit is {settings.max_video_pixels:,} pixels a frame"
            )
        declared = _declared_duration(container, stream)
        if declared is not None and declared > settings.max_video_duration_s:
            raise VideoTooLargeError(
                f"the video lasts {_clock(declared)}; the limit is {_clock(settings.max_video_duration_s)}"
            )
        if stream.frames and stream.frames > settings.max_video_frames:
            raise VideoTooLargeError(
                f"the video has {stream.frames:,} frames; the limit is {settings.max_video_frames:,}"
            )
        declared_frames = int(stream.frames or 0)
        index = _index(container, stream, settings.max_video_frames)
    if not index.pts:
        raise InvalidVideoError("the video has no frames")
    if declared_frames and len(index.pts) < declared_frames * 0.98:
        raise InvalidVideoError(
            f"the video is cut short: its header says {declared_frames:,} frames, {len(index.pts):,} are there"
        )
    rotation = _rotation(data)
    span = float((index.pts[-1] - index.pts[0]) * index.time_base)
    frames = len(index.pts)
    duration = span * frames / (frames - 1) if frames > 1 else 0.0
    if duration > settings.max_video_duration_s:
        raise VideoTooLargeError(
            f"the video lasts {_clock(duration)}; the limit is {_clock(settings.max_video_duration_s)}"
        )
    fps = (frames - 1) / span if span > 0 else float(stream.average_rate or 0) or 1.0
    upright = (height, width) if rotation in (90, 270) else (width, height)
    keyframes = tuple(bisect.bisect_left(index.pts, p) for p in index.keyframe_pts)
    return VideoFacts(
        sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data), container=container.format.name.split(",")[0],
        codec=context.name, width=upright[0], height=upright[1], fps=round(fps, 3), frames=frames,
        duration_s=round(duration, 3), rotation=rotation, keyframes=keyframes or (0,), frame_pts=tuple(index.pts),
        name=name,
    )  # fmt: skip


def _declared_duration(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def _clock(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {rest:02d} s"


def _index(container: av.container.InputContainer, stream: av.video.stream.VideoStream, max_frames: int) -> _Index:
    """Every video packet's timestamp (presentation order) and the keyframes', by demuxing only. A damaged file
    stops the index where it breaks: its frames up to there are the clip."""
    pts: list[int] = []
    keyframe_pts: list[int] = []
    try:
        for packet in container.demux(stream):
            stamp = packet.pts if packet.pts is not None else packet.dts
            if packet.size == 0 or stamp is None:
                continue
            pts.append(stamp)
            if packet.is_keyframe:
                keyframe_pts.append(stamp)
            if len(pts) > max_frames:
                raise VideoTooLargeError(f"the video has more than {max_frames:,} frames")
    except av.FFmpegError:
        pass  # truncated: what was read is the clip (decoding says whether those frames are whole)
    pts.sort()
    return _Index(pts, sorted(set(keyframe_pts)), stream.time_base or Fraction(1, 1))


def _rotation(data: bytes) -> int:
    """Degrees clockwise (0, 90, 180, 270) the stored frames are turned by to stand upright: a phone's display
    matrix, which FFmpeg gives counter-clockwise on the first frame."""
    with _open(data) as container:
        try:
            for frame in container.decode(container.streams.video[0]):
                return round(-(frame.rotation or 0) / 90) * 90 % 360
        except av.FFmpegError:
            return 0
    return 0


def decode_frames(
    data: bytes, facts: VideoFacts, *, start: int = 0, stop: int | None = None, every: int = 1
) -> Iterator[tuple[int, np.ndarray]]:
    """(frame number, RGB frame upright) for frames ``start`` <= n < ``stop`` whose number is a multiple of
    ``every``. ``start`` is a keyframe (decoding begins there); a damaged frame ends the clip with InvalidVideoError
    unless some frames came before it."""
    stop = facts.frames if stop is None else min(stop, facts.frames)
    with _open(data) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        pts = facts.frame_pts
        if start > 0:
            container.seek(pts[start], stream=stream, backward=True, any_frame=False)
        produced = 0
        try:
            for frame in container.decode(stream):
                stamp = frame.pts if frame.pts is not None else frame.dts
                number = bisect.bisect_left(pts, stamp) if stamp is not None else start + produced
                if number < start:
                    continue
                if number >= stop:
                    break
                produced += 1
                if number % every:
                    continue
                yield number, _upright(frame.to_ndarray(format="rgb24"), facts.rotation)
        except av.FFmpegError as exc:
            if not produced:
                raise InvalidVideoError(f"the video's frames cannot be decoded ({_reason(exc)})") from None


def _upright(pixels: np.ndarray, rotation: int) -> np.ndarray:
    turns = {0: 0, 90: 3, 180: 2, 270: 1}[rotation]  # clockwise degrees as numpy's counter-clockwise quarter turns
    return np.ascontiguousarray(np.rot90(pixels, turns)) if turns else pixels


class ClipWriter:
    """An H.264 MP4 (yuv420p, the source's frame rate): what every browser plays. yuv420p needs even sides: an odd
    one gets a black line."""

    def __init__(self, path: Path | io.BytesIO, width: int, height: int, fps: float) -> None:
        self._container = av.open(path, mode="w", format="mp4")
        rate = Fraction(fps).limit_denominator(1001) if fps > 0 else Fraction(25)
        self._stream = self._container.add_stream("libx264", rate=rate)
        self._stream.width, self._stream.height = max(2, width + width % 2), max(2, height + height % 2)
        self._stream.pix_fmt = "yuv420p"
        self._stream.options = {"preset": "veryfast", "crf": "23", "movflags": "+faststart"}

    def write(self, rgb: np.ndarray) -> None:
        padding = ((0, self._stream.height - rgb.shape[0]), (0, self._stream.width - rgb.shape[1]), (0, 0))
        frame = av.VideoFrame.from_ndarray(np.pad(rgb, padding) if any(p[1] for p in padding) else rgb, "rgb24")
        try:
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
        except av.FFmpegError as exc:
            raise InvalidVideoError(f"the annotated clip could not be written ({_reason(exc)})") from None

    def close(self) -> None:
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()

    def __enter__(self) -> ClipWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def chunk_bounds(facts: VideoFacts, chunk_s: float) -> list[tuple[int, int]]:
    """[start, stop) frame ranges of about ``chunk_s`` seconds each, every one starting at a keyframe."""
    target = max(1, round(chunk_s * facts.fps))
    starts = [0]
    for keyframe in facts.keyframes:
        if keyframe - starts[-1] >= target:
            starts.append(keyframe)
    return list(zip(starts, [*starts[1:], facts.frames], strict=True))


def check_video_name(name: str) -> None:
    """A refusal for a file the CLI or the dashboard is given whose name says it is no video (the content decides
    for the API)."""
    if not name.lower().endswith(VIDEO_SUFFIXES):
        raise PicMetricError(f"{name}: a video is one of {', '.join(VIDEO_SUFFIXES)}")
