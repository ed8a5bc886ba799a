"""Objects followed through a clip: roboflow's ``trackers`` (ByteTrack) gives each box an identity, frame to frame;
tracks are stitched across the chunks workers analysed apart, crossings of a counting line are read off the
stitched tracks, and frames are drawn with boxes, ids, short trails and the line's running counts.

Crossings come from the whole tracks, after stitching, never from a chunk alone: so a clip analysed in one piece
or in chunks on any number of workers counts the same."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

from picmetric.core.results import Detections

TRACKERS = ("bytetrack", "ocsort")
#: a frame's boxes as a chunk reports them: [track, class id, x1, y1, x2, y2, confidence]
Row = list[float]


class ObjectTracker:
    """One clip's (or chunk's) tracker over PicMetric's detections; ids from 1, -1 until a track is confirmed."""

    def __init__(self, fps: float, kind: str = "bytetrack") -> None:
        import supervision as sv  # imported here: only video analyses need them
        from trackers import ByteTrackTracker, OCSORTTracker

        self._sv = sv
        self._tracker: ByteTrackTracker | OCSORTTracker
        if kind == "bytetrack":
            # YOLOv4-tiny scores people 0.3-0.7: tracks start from 0.3, the second (low-score) round uses the rest
            self._tracker = ByteTrackTracker(
                frame_rate=fps, track_activation_threshold=0.3, high_conf_det_threshold=0.4,
                minimum_consecutive_frames=2, lost_track_buffer=30,
            )  # fmt: skip
        elif kind == "ocsort":
            self._tracker = OCSORTTracker(frame_rate=fps, minimum_consecutive_frames=2, high_conf_det_threshold=0.4)
        else:
            raise ValueError(f"tracker must be one of {', '.join(TRACKERS)}")

    def update(self, found: Detections) -> list[Row]:
        """This frame's boxes with their track ids (confirmed tracks only)."""
        detections = self._sv.Detections(
            xyxy=found.xyxy.astype(np.float32).reshape(-1, 4),
            confidence=found.confidence.astype(np.float32),
            class_id=found.class_id.astype(int),
        )
        tracked = self._tracker.update(detections)
        if tracked.tracker_id is None or tracked.confidence is None or tracked.class_id is None:
            return []
        rows = []
        for box, confidence, class_id, track in zip(
            tracked.xyxy, tracked.confidence, tracked.class_id, tracked.tracker_id, strict=True
        ):
            if track is not None and track >= 0:
                rows.append(
                    [int(track), int(class_id), *(round(float(v), 1) for v in box), round(float(confidence), 3)]
                )
        return rows


@dataclass
class Track:
    """One object through the clip: its boxes by frame, and its class (the one most of its boxes had)."""

    id: int
    frames: list[int] = field(default_factory=list)
    boxes: list[list[float]] = field(default_factory=list)
    confidences: list[float] = field(default_factory=list)
    class_ids: list[int] = field(default_factory=list)

    @property
    def class_id(self) -> int:
        return Counter(self.class_ids).most_common(1)[0][0]

    @property
    def first_frame(self) -> int:
        return self.frames[0]

    @property
    def last_frame(self) -> int:
        return self.frames[-1]

    def anchor(self, i: int) -> tuple[float, float]:
        """Where the object stands in its ``i``-th box: the middle of the bottom edge (a person's feet)."""
        x1, _, x2, y2 = self.boxes[i]
        return (x1 + x2) / 2, y2


def stitch(chunks: Sequence[tuple[int, int, dict[int, list[Row]]]], warmup: int = 0) -> list[Track]:
    """Tracks of the whole clip from chunks ``(start, stop, {frame: rows})`` in order, each analysed on its own from
    ``start`` to a little past ``stop`` (into the next chunk). A chunk's tracker needs a few frames to confirm its
    tracks, so each chunk hands over ``warmup`` frames after the next one's start: chunk k owns its frames from
    ``start + warmup`` (from 0 for the first) to the next chunk's ``start + warmup``. A track of the next chunk is
    the same object as the track of this one whose boxes it overlaps most (IoU >= 0.5 on average, over 3+ shared
    frames). Ids are then numbered by first appearance."""
    merged: dict[int, dict[int, Row]] = {}  # frame -> global id -> row
    previous: dict[int, list[Row]] = {}
    previous_ids: dict[int, int] = {}  # the previous chunk's local id -> global id
    next_global = 1
    for number, (start, stop, frames) in enumerate(chunks):
        mapping = _same_objects(previous, frames, start) if previous else {}
        first = start + warmup if number else start
        last = stop + warmup if number < len(chunks) - 1 else stop
        ids: dict[int, int] = {}
        for frame in sorted(frames):
            if not first <= frame < last:
                continue  # the other chunk's
            for row in frames[frame]:
                local = int(row[0])
                if local not in ids:
                    known = mapping.get(local)
                    if known is not None and known in previous_ids:
                        ids[local] = previous_ids[known]
                    else:
                        ids[local], next_global = next_global, next_global + 1
                merged.setdefault(frame, {})[ids[local]] = [ids[local], *row[1:]]
        previous, previous_ids = frames, ids
    return _numbered(merged)


def _same_objects(before: dict[int, list[Row]], after: dict[int, list[Row]], start: int) -> dict[int, int]:
    """The later chunk's local ids matched to the earlier chunk's, by their boxes on the frames both analysed."""
    shared = sorted(f for f in after if f >= start and f in before)
    earlier = sorted({int(r[0]) for f in shared for r in before[f]})
    later = sorted({int(r[0]) for f in shared for r in after[f]})
    if not earlier or not later:
        return {}
    overlap = np.zeros((len(later), len(earlier)))
    together = np.zeros((len(later), len(earlier)))
    for frame in shared:
        for a in after[frame]:
            for b in before[frame]:
                i, j = later.index(int(a[0])), earlier.index(int(b[0]))
                overlap[i, j] += _iou(a[2:6], b[2:6])
                together[i, j] += 1
    mean = np.where(together >= 3, overlap / np.maximum(together, 1), 0.0)
    rows, columns = linear_sum_assignment(-mean)
    return {later[i]: earlier[j] for i, j in zip(rows, columns, strict=True) if mean[i, j] >= 0.5}


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _numbered(merged: dict[int, dict[int, Row]]) -> list[Track]:
    """Tracks numbered 1, 2, ... in order of first appearance (then left to right): the same clip, the same ids."""
    tracks: dict[int, Track] = {}
    for frame in sorted(merged):
        for global_id, row in sorted(merged[frame].items(), key=lambda item: item[1][2]):
            track = tracks.setdefault(global_id, Track(0))
            track.frames.append(frame)
            track.boxes.append([float(v) for v in row[2:6]])
            track.confidences.append(float(row[6]))
            track.class_ids.append(int(row[1]))
    ordered = sorted(tracks.values(), key=lambda t: (t.first_frame, t.boxes[0][0]))
    for number, track in enumerate(ordered, 1):
        track.id = number
    return ordered


@dataclass(frozen=True)
class Crossing:
    track: int
    class_id: int
    frame: int
    direction: str  # "in" or "out"


@dataclass(frozen=True)
class CountingLine:
    """A line given by two points; walking from the first to the second, "in" is crossing it from left to right
    (in the picture: y grows downwards), "out" the other way. Only the segment counts, not its extension."""

    x1: float
    y1: float
    x2: float
    y2: float

    @classmethod
    def parse(cls, text: str) -> CountingLine:
        """'X1,Y1,X2,Y2' in pixels of the upright frame."""
        try:
            values = [float(v) for v in text.split(",")]
        except ValueError:
            values = []
        if len(values) != 4 or not all(np.isfinite(values)) or (values[0], values[1]) == (values[2], values[3]):
            raise ValueError("a counting line is X1,Y1,X2,Y2: two different points, in pixels")
        return cls(*values)

    def side(self, x: float, y: float) -> float:
        return (self.x2 - self.x1) * (y - self.y1) - (self.y2 - self.y1) * (x - self.x1)

    def crossings(self, tracks: Iterable[Track], margin: float = 4.0) -> list[Crossing]:
        """Every time a track's anchor moves across the segment, in frame order. A side counts once the anchor is
        ``margin`` pixels past the line: a person walking along it, whose feet jitter across it, crosses it once,
        not at every frame."""
        length = float(np.hypot(self.x2 - self.x1, self.y2 - self.y1))
        found = []
        for track in tracks:
            settled: tuple[float, float, float] | None = None  # the last anchor clearly on one side, and its side
            for i in range(len(track.frames)):
                x, y = track.anchor(i)
                distance = self.side(x, y) / length
                if abs(distance) < margin:
                    continue
                if (
                    settled is not None
                    and (settled[2] > 0) != (distance > 0)
                    and self._within(settled[0], settled[1], x, y)
                ):
                    direction = "in" if distance > 0 else "out"
                    found.append(Crossing(track.id, track.class_id, track.frames[i], direction))
                settled = (x, y, distance)
        return sorted(found, key=lambda c: (c.frame, c.track))

    def _within(self, ax: float, ay: float, bx: float, by: float) -> bool:
        """Whether the step from a to b meets the segment itself (both of its ends on either side of a-b)."""
        first = (bx - ax) * (self.y1 - ay) - (by - ay) * (self.x1 - ax)
        second = (bx - ax) * (self.y2 - ay) - (by - ay) * (self.x2 - ax)
        return (first > 0) != (second > 0) or first == 0 or second == 0


def track_colour(track: int) -> tuple[int, int, int]:
    """A bright colour per track id, the same in every frame."""
    hue = (track * 47) % 180
    hsv = np.array([[[hue, 220, 255]]], np.uint8)
    r, g, b = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0]
    return int(r), int(g), int(b)


def draw_frame(
    frame: np.ndarray,
    rows: Sequence[Row],
    names: Sequence[str],
    trails: dict[int, list[tuple[float, float]]],
    line: CountingLine | None,
    totals: Counter[str],
) -> np.ndarray:
    """The frame with each tracked box, its class and id, a short trail of where it stood, and the counting line
    with its running counts (RGB in, RGB out)."""
    out = frame.copy()
    scale = max(1.0, max(frame.shape[:2]) / 800)
    thickness = max(1, round(2 * scale))
    for track, class_id, x1, y1, x2, y2, _confidence in rows:
        colour = track_colour(int(track))
        cv2.rectangle(out, (int(x1), int(y1)), (int(x2), int(y2)), colour, thickness)
        label = f"{names[int(class_id)]} #{int(track)}"
        cv2.putText(out, label, (int(x1), max(12, int(y1) - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.5 * scale, colour,
                    thickness, cv2.LINE_AA)  # fmt: skip
        points = trails.get(int(track), [])
        if len(points) > 1:
            cv2.polylines(out, [np.array(points, np.int32)], False, colour, thickness, cv2.LINE_AA)
    if line is not None:
        cv2.line(out, (int(line.x1), int(line.y1)), (int(line.x2), int(line.y2)), (255, 230, 0), thickness + 1)
        text = "  ".join(f"{k} {v}" for k, v in sorted(totals.items())) or "in 0  out 0"
        cv2.putText(out, text, (10, int(28 * scale)), cv2.FONT_HERSHEY_SIMPLEX, 0.7 * scale, (255, 230, 0),
                    thickness, cv2.LINE_AA)  # fmt: skip
    return out
