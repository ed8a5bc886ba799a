"""Plotly figures for results. Pure functions of result objects, so they are easy to test."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..annotate import PALETTE
from ..models.classifier import CLASSIFIERS
from ..results import Classification, Detections, Faces

_LAYOUT = dict(margin=dict(l=10, r=10, t=40, b=10), height=320, template="plotly_white")


def _rgb(colour: tuple[int, int, int]) -> str:
    return "rgb({},{},{})".format(*colour)


def _model_title(key: str) -> str:
    return CLASSIFIERS[key].title if key in CLASSIFIERS else key


def labels_chart(classification: Classification) -> go.Figure:
    frame = pd.DataFrame({"label": classification.names, "probability": classification.confidence * 100})
    figure = px.bar(
        frame.iloc[::-1], x="probability", y="label", orientation="h", text_auto=".1f",
        title=f"ImageNet top-{len(frame)} · {_model_title(classification.model)}",
    )  # fmt: skip
    figure.update_layout(**_LAYOUT, xaxis_title="probability (%)", yaxis_title=None, xaxis_range=[0, 100])
    figure.update_traces(marker_color="#2563eb")
    return figure


def detections_chart(detections: Detections) -> go.Figure:
    frame = pd.DataFrame(
        {"class": detections.labels, "confidence": detections.confidence * 100, "class_id": detections.class_id}
    )
    figure = px.strip(
        frame, x="confidence", y="class", color="class", title=f"Objects: confidence by class ({len(frame)})",
        color_discrete_map={
            c: _rgb(PALETTE[i % len(PALETTE)]) for c, i in zip(frame["class"], frame["class_id"], strict=True)
        },
    )  # fmt: skip
    figure.update_traces(marker_size=14)
    figure.update_layout(
        **_LAYOUT, showlegend=False, xaxis_title="confidence (%)", yaxis_title=None, xaxis_range=[0, 101]
    )
    return figure


def faces_chart(faces: Faces) -> go.Figure:
    frame = pd.DataFrame({"face": [f"face {i + 1}" for i in range(len(faces))], "score": faces.confidence * 100})
    figure = px.bar(frame, x="face", y="score", text_auto=".2f", title=f"Face scores ({len(frame)})")
    figure.update_layout(**_LAYOUT, yaxis_title="score (%)", xaxis_title=None, yaxis_range=[0, 100])
    figure.update_traces(marker_color="#0ea5e9")
    return figure


def logits_chart(names: list[str], logits, probabilities) -> go.Figure:
    """The same top classes, before (logits) and after softmax (probabilities)."""
    figure = make_subplots(
        rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.04,
        subplot_titles=("raw output: logits (any number)", "after softmax: probability (%)"),
    )  # fmt: skip
    labels = list(names)[::-1]
    figure.add_trace(go.Bar(x=list(logits)[::-1], y=labels, orientation="h", marker_color="#94a3b8"), row=1, col=1)
    figure.add_trace(
        go.Bar(
            x=(probabilities * 100)[::-1], y=labels, orientation="h", marker_color="#2563eb", texttemplate="%{x:.1f}"
        ),
        row=1, col=2,
    )  # fmt: skip
    figure.update_layout(**{**_LAYOUT, "height": 440}, showlegend=False, font_size=15)
    figure.update_xaxes(range=[0, 100], row=1, col=2)
    return figure
