"""The Evaluate page's pieces: resources, the comparison table, PR curves, confusion heatmaps and the worst photos
with their false boxes (solid red) and missed objects (dashed orange)."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from PIL import Image, ImageDraw, ImageOps

from picmetric.core.scoring import RECALL_POINTS
from picmetric.interfaces.ui.presentation import presenting
from picmetric.interfaces.ui.resources import get_jobs
from picmetric.service.datasets import DatasetService
from picmetric.service.evaluation import Evaluation, EvaluationService

FALSE_COLOUR = (230, 40, 40)
MISSED_COLOUR = (255, 150, 0)


def get_evaluation() -> EvaluationService:
    jobs = get_jobs()
    return EvaluationService(jobs, DatasetService(jobs.service))


def comparison_table(results: list[Evaluation], threshold: float) -> pd.DataFrame:
    """One row per model: COCO's numbers, and precision and recall at ``threshold`` (objects); top-1 and top-5
    (labels)."""
    rows = []
    for result in results:
        row: dict = {"model": result.model.title}
        if result.detection is not None:
            at = result.at(threshold)
            metrics = result.detection
            row |= {
                "mAP": metrics.map, "mAP50": metrics.map50, "mAP75": metrics.map75, "small": metrics.map_small,
                "medium": metrics.map_medium, "large": metrics.map_large,
                f"precision @{threshold:.2f}": at.precision, f"recall @{threshold:.2f}": at.recall,
                "right": at.true_positives, "false": at.false_positives, "missed": at.missed,
            }  # fmt: skip
        elif result.labels is not None:
            row |= {"top-1": result.labels.top1, "top-5": result.labels.top5, "photos": len(result.photos)}
        rows.append(row)
    frame = pd.DataFrame(rows)
    return frame.replace(-1.0, np.nan)  # -1: nothing of that size in the dataset


def show_comparison(frame: pd.DataFrame) -> None:
    """The comparison table, numbers to three places: a data grid, or in presentation mode a table of text, which
    that mode's type enlarges (a data grid is drawn on a canvas it cannot reach)."""
    numbers = [c for c in frame.columns if frame[c].dtype.kind == "f"]
    if presenting():
        st.table(frame.set_index("model").style.format("{:.3f}", subset=numbers, na_rep="–"))
    else:
        st.dataframe(frame, hide_index=True, width="stretch",
                     column_config={c: st.column_config.NumberColumn(format="%.3f") for c in numbers})  # fmt: skip


def pr_figure(results: list[Evaluation], category: int, name: str) -> go.Figure:
    """Precision against recall at IoU 0.5 for one class, a line per model (COCO's 101-point envelope)."""
    figure = go.Figure()
    for result in results:
        assert result.detection is not None
        curve = result.detection.pr_curve[category]
        if (curve < 0).all():
            continue
        ap = result.detection.ap50_per_class.get(category, float("nan"))
        figure.add_scatter(x=RECALL_POINTS, y=curve, mode="lines", name=f"{result.model.title} (AP50 {ap:.2f})")
    figure.update_layout(
        title=f"Precision and recall: {name} (IoU 0.5)", xaxis_title="recall", yaxis_title="precision",
        xaxis_range=[0, 1.02], yaxis_range=[0, 1.05], height=360, margin=dict(l=10, r=10, t=50, b=10),
        legend=dict(orientation="h", y=-0.25),
    )  # fmt: skip
    return figure


def confusion_figure(matrix: np.ndarray, rows: list[str], columns: list[str], title: str) -> go.Figure:
    """Counts with the truth down the side and the answer along the top. Only classes that occur (as truth or as
    an answer) are shown, the same ones on both axes, so that the diagonal is where the model was right."""
    occurs = [i for i in range(len(columns)) if matrix[:, i].sum() or (i < len(rows) and matrix[i].sum())]
    used_rows = [i for i in occurs if i < len(rows)]
    used_cols = occurs
    shown = matrix[np.ix_(used_rows, used_cols)]
    figure = go.Figure(
        go.Heatmap(
            z=shown, x=[columns[j] for j in used_cols], y=[rows[i] for i in used_rows], colorscale="Blues",
            text=shown, texttemplate="%{text}", hovertemplate="truth %{y}<br>answer %{x}<br>%{z}<extra></extra>",
            showscale=False,
        )
    )  # fmt: skip
    figure.update_layout(
        title=title, xaxis_title="the model said", yaxis_title="truth", yaxis_autorange="reversed",
        height=max(320, 28 * len(used_rows) + 140), margin=dict(l=10, r=10, t=50, b=10),
    )  # fmt: skip
    return figure


def mistakes_picture(data: bytes, false: list[tuple[str, np.ndarray]], missed: list[tuple[str, np.ndarray]]) -> bytes:
    """The photo with its false boxes (solid red, with the class) and missed objects (dashed orange)."""
    with Image.open(io.BytesIO(data)) as opened:
        photo = ImageOps.exif_transpose(opened).convert("RGB")
    scale = 640 / max(photo.size)
    if scale < 1:
        photo = photo.resize((round(photo.width * scale), round(photo.height * scale)))
    else:
        scale = 1.0
    draw = ImageDraw.Draw(photo)
    width = 4 if presenting() else 3
    for name, box in missed:
        _dashed(draw, box * scale, MISSED_COLOUR, width)
        draw.text((box[0] * scale + 4, box[1] * scale + 2), f"missed {name}", fill=MISSED_COLOUR, font_size=20)
    for name, box in false:
        draw.rectangle(tuple(box * scale), outline=FALSE_COLOUR, width=width)
        draw.text((box[0] * scale + 4, box[1] * scale + 2), f"false {name}", fill=FALSE_COLOUR, font_size=20)
    out = io.BytesIO()
    photo.save(out, "JPEG", quality=85)
    return out.getvalue()


def _dashed(draw: ImageDraw.ImageDraw, box: np.ndarray, colour: tuple[int, int, int], width: int) -> None:
    x1, y1, x2, y2 = (float(v) for v in box)
    dash = 10
    for start, end, fixed, horizontal in ((x1, x2, y1, True), (x1, x2, y2, True), (y1, y2, x1, False),
                                          (y1, y2, x2, False)):  # fmt: skip
        position = start
        while position < end:
            stop = min(position + dash, end)
            line = ((position, fixed), (stop, fixed)) if horizontal else ((fixed, position), (fixed, stop))
            draw.line(line, fill=colour, width=width)
            position += 2 * dash


@st.cache_data(max_entries=256, show_spinner=False)
def cached_mistakes(sha256: str, threshold: float, model: str, _data: bytes, _false: list, _missed: list) -> bytes:
    """``mistakes_picture``, kept per photo, threshold and model (the slider moves back and forth)."""
    return mistakes_picture(_data, _false, _missed)
