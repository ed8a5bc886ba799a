"""Plotly figures for results. Pure functions of result objects, so they are easy to test."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from picmetric.core.annotate import FACE_COLOUR, LANDMARK_COLOURS, BoxAnnotator, FaceAnnotator, colour_for
from picmetric.core.catalog import CLASSIFIERS, DETECTOR
from picmetric.core.results import LANDMARK_NAMES, Classification, Detections, Faces

_LAYOUT = dict(margin=dict(l=10, r=10, t=40, b=10), height=320, template="plotly_white")


def _rgb(colour: tuple[int, int, int]) -> str:
    return "rgb({},{},{})".format(*colour)


def _model_title(key: str) -> str:
    return CLASSIFIERS[key].title if key in CLASSIFIERS else key


#: below this the top label is a guess and is said as one ("not sure"), never in large type as if an answer.
#: EfficientNet-Lite spreads its probability over related classes (a right top label at 15-30 % is usual: zidane.jpg's
#: "suit" at 20 %); the "ox at 5 %" above horses is below it
SURE_FLOOR = 0.15


def is_sure(classification: Classification) -> bool:
    top = classification.top
    return top is not None and top[1] >= SURE_FLOOR


def top_label_text(classification: Classification | None) -> str:
    """The top label for a caption: 'ox 45%', or 'not sure: ox 5%?' below ``SURE_FLOOR``."""
    top = classification.top if classification is not None else None
    if top is None:
        return ""
    return f"{top[0]} {top[1]:.0%}" if top[1] >= SURE_FLOOR else f"not sure: {top[0]} {top[1]:.0%}?"


def top_of(classification: Classification, count: int = 3) -> Classification:
    return Classification(
        classification.class_id[:count], classification.confidence[:count], classification.names[:count],
        model=classification.model,
    )  # fmt: skip


def detector_title(detector: str) -> str:
    """The title of the detector an analysis ran: the built-in one's, or an added one's own name."""
    return DETECTOR.title.split(" (")[0] if detector == DETECTOR.key else detector


def labels_chart(classification: Classification) -> go.Figure:
    probability = classification.confidence[::-1] * 100
    figure = go.Figure(
        go.Bar(
            x=probability, y=classification.names[::-1], orientation="h", marker_color="#2563eb",
            text=[f"{p:.1f}" for p in probability], hovertemplate="%{y}: %{x:.1f} %<extra></extra>",
        )
    )  # fmt: skip
    figure.update_layout(
        **_LAYOUT, title=f"ImageNet top-{len(classification)} · {_model_title(classification.model)}",
        xaxis_title="probability (%)", xaxis_range=[0, 100],
    )  # fmt: skip
    return figure


def detections_chart(detections: Detections, threshold: float = 0.0) -> go.Figure:
    """Each object's confidence on its class' row; open circles for weaker candidates below ``threshold``.
    Plain graph objects: plotly express took ~50 ms per figure, at every display change."""
    classes = sorted(set(detections.labels))
    row = np.array([classes.index(label) for label in detections.labels], dtype=float)
    spread = (np.arange(len(detections)) % 5 - 2) * 0.07  # points of one class side by side, not on top
    weaker = detections.confidence < threshold
    figure = go.Figure(
        go.Scatter(
            x=detections.confidence * 100, y=row + spread, mode="markers",
            text=[f"{label} {p:.1%}" for label, p in zip(detections.labels, detections.confidence, strict=True)],
            hovertemplate="%{text}<extra></extra>",
            marker=dict(
                size=14, color=[_rgb(colour_for(c)) for c in detections.class_id],
                symbol=["circle-open" if w else "circle" for w in weaker], line=dict(width=2),
            ),
        )
    )  # fmt: skip
    figure.update_layout(
        **_LAYOUT, showlegend=False, title=f"Objects: confidence by class ({len(detections)})",
        xaxis_title="confidence (%)", xaxis_range=[0, 101],
        yaxis=dict(tickvals=list(range(len(classes))), ticktext=classes, range=[-0.6, len(classes) - 0.4]),
    )  # fmt: skip
    return figure


def faces_chart(faces: Faces) -> go.Figure:
    score = faces.confidence * 100
    figure = go.Figure(
        go.Bar(
            x=[f"face {i + 1}" for i in range(len(faces))], y=score, marker_color="#0ea5e9",
            text=[f"{p:.2f}" for p in score], hovertemplate="%{x}: %{y:.2f} %<extra></extra>",
        )
    )  # fmt: skip
    figure.update_layout(**_LAYOUT, title=f"Face scores ({len(faces)})", yaxis_title="score (%)", yaxis_range=[0, 100])
    return figure


#: the tag font (px) that the annotators' stacking fits at the scale of a display ``width``; larger fonts scale it
BASE_TAG_FONT = 12
#: the tallest a photo is drawn, as a multiple of its display width (portrait photos stay on a 16:9 screen)
MAX_HEIGHT_PER_WIDTH = 1.1


def _box_trace(box, colour: tuple[int, int, int], name: str, weaker: bool) -> go.Scatter:
    """A box as a closed outline whose inside names it on hover (a faint fill catches the pointer)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return go.Scatter(
        x=[x1, x2, x2, x1, x1], y=[y1, y1, y2, y2, y1], mode="lines", fill="toself", name=name,
        fillcolor="rgba({},{},{},0.06)".format(*colour), hoveron="fills+points", hoverinfo="name",
        line=dict(color=_rgb(colour), width=1.5 if weaker else 2.5, dash="dash" if weaker else "solid"),
    )  # fmt: skip


def _tag(text: str, where, scale: float, colour: tuple[int, int, int], font: int) -> dict:
    """A label tag at a place the annotators' stacking chose (in display pixels, turned back into photo pixels)."""
    return dict(
        x=where[0] / scale, y=where[1] / scale, text=text, showarrow=False, xanchor="left", yanchor="top",
        font=dict(color="white", size=font), bgcolor=_rgb(colour), borderpad=2,
    )  # fmt: skip


def photo_display_size(size: tuple[int, int], display_width: int) -> tuple[int, int]:
    """The (width, height) in screen pixels of a photo drawn for a column ``display_width`` wide."""
    width, height = size
    display_height = round(display_width * min(height / width, MAX_HEIGHT_PER_WIDTH))
    return min(display_width, round(display_height * width / height)), display_height


def photo_figure(
    image_src: str,
    size: tuple[int, int],
    display_width: int,
    *,
    detections: Detections | None = None,
    faces: Faces | None = None,
    threshold: float = 0.0,
    tag_font: int = BASE_TAG_FONT,
) -> go.Figure:
    """The photo, with boxes (and landmarks) drawn by the browser: hovering a box names it and its score, and a
    display change sends a few outlines instead of a new image.

    ``size`` is the photo's (width, height) in the results' pixels; ``image_src`` (a data URI) may be smaller. The
    figure is as tall as the photo at ``display_width`` (its column's expected width); in another width the photo
    keeps its shape, at the top left. Boxes below ``threshold`` (the analysis' own) are dashed: weaker candidates
    shown because the display threshold went lower. Tags stack as on the stored renders."""
    width, height = size
    shown_width, display_height = photo_display_size(size, display_width)
    scale = shown_width / width
    stacking = scale * BASE_TAG_FONT / tag_font  # a larger font: stacked as on a smaller photo
    shape = (round(height * stacking), round(width * stacking))
    figure = go.Figure()
    figure.add_layout_image(
        source=image_src, xref="x", yref="y", x=0, y=0, sizex=width, sizey=height, sizing="stretch", layer="below"
    )
    tags = []
    if detections is not None:
        area = (detections.xyxy[:, 2] - detections.xyxy[:, 0]) * (detections.xyxy[:, 3] - detections.xyxy[:, 1])
        for i in np.argsort(-area):  # small boxes last: on top, so hovering them works inside large ones
            colour, weaker = colour_for(detections.class_id[i]), bool(detections.confidence[i] < threshold)
            figure.add_trace(
                _box_trace(detections.xyxy[i], colour, f"{detections.labels[i]} {detections.confidence[i]:.1%}", weaker)
            )
        for i, where in BoxAnnotator().label_places(shape, detections.scaled(stacking)):
            colour = colour_for(detections.class_id[i])
            tags.append(_tag(BoxAnnotator.text(detections, i), where, stacking, colour, tag_font))
    if faces is not None:
        for i in range(len(faces)):
            weaker = bool(faces.confidence[i] < threshold)
            figure.add_trace(_box_trace(faces.xyxy[i], FACE_COLOUR, f"face {faces.confidence[i]:.1%}", weaker))
        for index, (name, colour) in enumerate(zip(LANDMARK_NAMES, LANDMARK_COLOURS, strict=True)):
            figure.add_trace(
                go.Scatter(
                    x=faces.landmarks[:, index, 0],
                    y=faces.landmarks[:, index, 1],
                    mode="markers",
                    name=name.replace("_", " "),
                    hoverinfo="name",
                    marker=dict(color=_rgb(colour), size=8, line=dict(color="white", width=1)),
                )  # fmt: skip
            )
        for i, where in FaceAnnotator().label_places(shape, faces.scaled(stacking)):
            tags.append(_tag(FaceAnnotator.text(faces, i), where, stacking, FACE_COLOUR, tag_font))
    figure.update_xaxes(range=[0, width], visible=False, constrain="domain", constraintoward="left")
    figure.update_yaxes(range=[height, 0], visible=False, scaleanchor="x", constrain="domain", constraintoward="top")
    figure.update_layout(
        annotations=tags, showlegend=False, margin=dict(l=0, r=0, t=0, b=0), dragmode="zoom", height=display_height,
        plot_bgcolor="rgba(0,0,0,0)", paper_bgcolor="rgba(0,0,0,0)", hoverlabel=dict(font_size=max(14, tag_font)),
    )  # fmt: skip
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
