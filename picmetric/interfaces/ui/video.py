"""The Video page's pieces: the first frame with the counting line, counts over time, the tracks table and a
track's thumbnails."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from PIL import Image, ImageDraw

from picmetric.core.video import VideoFacts, decode_frames


@st.cache_data(max_entries=8, show_spinner=False)
def first_frame(sha256: str, _facts: VideoFacts, _data: bytes) -> np.ndarray:
    """The clip's first frame, upright (kept by the clip's hash)."""
    return next(frame for _, frame in decode_frames(_data, _facts, stop=1))


def line_preview(frame: np.ndarray, line: tuple[float, float, float, float] | None) -> bytes:
    """The frame (at most 960 px) with the counting line and an arrow head at its end."""
    photo = Image.fromarray(frame)
    scale = min(1.0, 960 / max(photo.size))
    photo = photo.resize((round(photo.width * scale), round(photo.height * scale)))
    if line is not None:
        draw = ImageDraw.Draw(photo)
        x1, y1, x2, y2 = (v * scale for v in line)
        draw.line((x1, y1, x2, y2), fill=(255, 230, 0), width=5)
        draw.ellipse((x2 - 8, y2 - 8, x2 + 8, y2 + 8), fill=(255, 230, 0))
        draw.text((x1 + 6, y1 + 6), "start", fill=(255, 230, 0), font_size=20)
    out = io.BytesIO()
    photo.save(out, "JPEG", quality=85)
    return out.getvalue()


def counts_figure(result: dict[str, Any]) -> go.Figure:
    """Objects per class in each analysed frame, over the clip's time."""
    fps = result["fps"] or 1
    frame = pd.DataFrame([{"time": c["frame"] / fps, **c["objects"]} for c in result["counts"]]).fillna(0)
    figure = go.Figure()
    for name in sorted(c for c in frame.columns if c != "time"):
        figure.add_scatter(x=frame["time"], y=frame[name], mode="lines", name=name, line_shape="hv")
    figure.update_layout(
        title="Objects in view", xaxis_title="seconds", yaxis_title="count", height=360,
        margin=dict(l=10, r=10, t=50, b=10), legend=dict(orientation="h", y=-0.25),
    )  # fmt: skip
    return figure


def tracks_table(result: dict[str, Any]) -> pd.DataFrame:
    fps = result["fps"] or 1
    crossed = {c["track"]: c["direction"] for c in result["crossings"]}
    return pd.DataFrame(
        [
            {"track": t["id"], "class": t["class"], "from (s)": round(t["first_frame"] / fps, 1),
             "to (s)": round(t["last_frame"] / fps, 1), "boxes": len(t["boxes"]),
             "crossed": crossed.get(t["id"], "")}
            for t in result["tracks"]
        ],
        columns=["track", "class", "from (s)", "to (s)", "boxes", "crossed"],
    )  # fmt: skip


@st.cache_data(max_entries=32, show_spinner=False)
def track_thumbnails(
    sha256: str, _facts: VideoFacts, _data: bytes, track: dict[str, Any], count: int = 4
) -> list[bytes]:
    """Crops of the object at a few moments of its track (first, last and between)."""
    boxes = track["boxes"]
    picks = sorted({boxes[round(i * (len(boxes) - 1) / max(count - 1, 1))][0] for i in range(count)})
    wanted = {b[0]: b[1:5] for b in boxes if b[0] in picks}
    crops = []
    start = _keyframe_before(_facts, picks[0])
    for number, frame in decode_frames(_data, _facts, start=start, stop=picks[-1] + 1):
        if number in wanted:
            x1, y1, x2, y2 = (int(v) for v in wanted[number])
            crop = Image.fromarray(frame[max(0, y1) : y2, max(0, x1) : x2])
            crop.thumbnail((240, 240))
            out = io.BytesIO()
            crop.save(out, "JPEG", quality=85)
            crops.append(out.getvalue())
    return crops


def _keyframe_before(facts: VideoFacts, frame: int) -> int:
    return max((k for k in facts.keyframes if k <= frame), default=0)
