"""The result view shared by the Analyze and History pages, and the sidebar's display filters."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
import streamlit as st
import streamlit.components.v1 as components

from ..annotate import BoxAnnotator, FaceAnnotator, encode_image
from ..errors import PicMetricError
from ..models import FACE_DETECTORS
from ..pipeline import Analysis, AnalysisOptions
from ..seed import seed_response
from ..service import StoredAnalysis
from ..storage import Repository
from .charts import detections_chart, faces_chart, labels_chart
from .resources import working_image

VIEWS = ["Objects", "Faces", "Labels", "Compare", "JSON"]


@dataclass(frozen=True)
class DisplayFilter:
    """Thresholds applied to stored results at display time: changing them never re-runs a model."""

    min_object_confidence: float = 0.25
    min_face_confidence: float = 0.8
    classes: frozenset[str] | None = None

    def apply(self, analysis: Analysis):
        detections = faces = None
        if analysis.detections is not None:
            detections = analysis.detections.filter(
                self.min_object_confidence, set(self.classes) if self.classes else None
            )
        if analysis.faces is not None:
            faces = analysis.faces.filter(self.min_face_confidence)
        return detections, faces


def _threshold_slider(label: str, key: str, floor: float, step: float, help: str) -> float:
    """A sidebar slider that keeps its value across reruns and pages, never below the analysis' own threshold."""
    if st.session_state.get(key, floor) < floor:
        st.session_state[key] = floor
    st.session_state.setdefault(key, floor)
    return st.sidebar.slider(label, floor, 1.0, step=step, key=key, help=help)


def scroll_to(anchor: str) -> None:
    """Scroll the page to a heading's anchor (after a sample click the result would sit below the fold)."""
    components.html(
        f"<script>const t = window.parent.document.getElementById({json.dumps(anchor)});"
        "if (t) t.scrollIntoView({behavior: 'smooth', block: 'start'});</script>",
        height=0,
    )


def options_summary(options: dict) -> str:
    """A short line telling apart analyses of one photo: what differs from the defaults (or "defaults")."""
    try:
        chosen = AnalysisOptions.from_stored(options).to_dict()
    except PicMetricError:
        return "?"
    defaults = AnalysisOptions().to_dict()
    changed = [
        f"{name.replace('_', ' ')} {','.join(value) if isinstance(value, list) else value}"
        for name, value in chosen.items()
        if value != defaults[name] and name != "face_confidence"
    ]
    return " · ".join(changed) or "defaults"


def display_sidebar(analysis: Analysis | None) -> DisplayFilter:
    """Display thresholds in the sidebar; each slider starts at the threshold the analysis was run with."""
    st.sidebar.subheader("Display")
    st.sidebar.caption("These only re-filter the stored result: instant, the models do not run again.")
    min_objects = _threshold_slider(
        "Object confidence ≥", "display_min_object", analysis.options.min_confidence if analysis else 0.25, 0.01,
        "Hide weaker detections. Re-filters the stored result; the models do not run again.",
    )  # fmt: skip
    min_faces = _threshold_slider(
        "Face score ≥", "display_min_face", analysis.options.face_score if analysis else 0.8, 0.005,
        "Hide less certain faces (display only).",
    )  # fmt: skip
    classes = None
    if analysis is not None and analysis.detections is not None and len(analysis.detections):
        present = sorted(set(analysis.detections.labels))
        chosen = st.sidebar.multiselect("Classes to show", present, default=present)
        classes = frozenset(chosen) if set(chosen) != set(present) else None
    return DisplayFilter(min_objects, min_faces, classes)


def _metrics(analysis: Analysis, detections, faces, cached: bool) -> None:
    columns = st.columns(4)
    columns[0].metric("Objects", len(detections) if detections is not None else "—")
    columns[1].metric("Faces", len(faces) if faces is not None else "—")
    top = analysis.classification.top if analysis.classification else None
    columns[2].metric(
        "Top label", top[0] if top else "—", f"{top[1]:.0%} sure" if top else None, delta_color="off", delta_arrow="off"
    )
    total = analysis.timings_ms.get("total")
    columns[3].metric(
        "Analysis time", f"{total:.0f} ms" if total else "—", "from history" if cached else None, delta_color="off",
        delta_arrow="off",
    )  # fmt: skip


def _png(image: np.ndarray) -> bytes:
    return encode_image(image, "png")


def _detections_csv(analysis: Analysis, detections) -> bytes:
    frame = pd.DataFrame(
        [
            {"label": label, "class_id": int(c), "confidence": float(p), "x1": b[0], "y1": b[1], "x2": b[2], "y2": b[3]}
            for label, c, p, b in zip(
                detections.labels, detections.class_id, detections.confidence, detections.xyxy, strict=True
            )
        ],
        columns=["label", "class_id", "confidence", "x1", "y1", "x2", "y2"],
    )
    buffer = io.StringIO()
    frame.round(4).to_csv(buffer, index=False)
    return buffer.getvalue().encode()


def show_analysis(
    repository: Repository, stored: StoredAnalysis, display: DisplayFilter, key: str, history_notice: bool = True
) -> None:
    """Everything about one stored analysis: metrics, side-by-side images, charts, downloads. A fragment: the wipe
    and the tabs rerun this panel only, never the page around it (uploads, history table)."""
    _result_panel(repository, stored, display, key, history_notice)


@st.fragment
def _result_panel(
    repository: Repository, stored: StoredAnalysis, display: DisplayFilter, key: str, history_notice: bool
) -> None:
    analysis = stored.analysis
    if stored.status != "done":
        st.error(f"This analysis failed: {stored.error}")
        return
    if stored.cached and history_notice:
        st.info(
            f"Analysed before ({analysis.created_at:%Y-%m-%d %H:%M} UTC): loaded from history by its hash, "
            "the models did not run again.",
            icon=":material/history:",
        )
    image = working_image(repository, stored.sha256)
    if image is None:
        st.error("The stored image is missing from the object store.")
        return
    detections, faces = display.apply(analysis)
    _metrics(analysis, detections, faces, stored.cached)
    to_working = 1.0 / image.scale

    def objects_render() -> np.ndarray | None:
        if detections is None:
            return None
        return BoxAnnotator().annotate(image.pixels, detections.scaled(to_working))

    def faces_render() -> np.ndarray | None:
        return FaceAnnotator().annotate(image.pixels, faces.scaled(to_working)) if faces is not None else None

    # one view at a time, drawn only when chosen: a display change redraws one image and one chart, not five tabs
    view = st.segmented_control(
        "View", VIEWS, default=VIEWS[0], key=f"{key}-view", label_visibility="collapsed", width="stretch"
    ) or VIEWS[0]  # fmt: skip
    if view == "Objects":
        rendered = objects_render()
        if rendered is None or detections is None:
            st.caption("Object detection was not run for this analysis.")
        else:
            left, right = st.columns(2)
            left.image(image.pixels, caption=f"Original · {analysis.width}×{analysis.height}", width="stretch",
                       output_format="JPEG")  # fmt: skip
            right.image(rendered, caption=f"YOLOv4-tiny · {len(detections)} objects", width="stretch",
                        output_format="JPEG")  # fmt: skip
            if len(detections):
                st.plotly_chart(detections_chart(detections), key=f"{key}-objects-chart")
    elif view == "Faces":
        rendered = faces_render()
        if rendered is None or faces is None:
            st.caption("Face detection was not run for this analysis.")
        else:
            left, right = st.columns(2)
            left.image(image.pixels, caption="Original", width="stretch", output_format="JPEG")
            detector = FACE_DETECTORS[analysis.options.face_detector][2]
            right.image(rendered, caption=f"{detector} · {len(faces)} faces with landmarks", width="stretch",
                        output_format="JPEG")  # fmt: skip
            if len(faces):
                st.plotly_chart(faces_chart(faces), key=f"{key}-faces-chart")
    elif view == "Labels":
        if analysis.classification is None:
            st.caption("Classification was not run for this analysis.")
        else:
            left, right = st.columns([2, 3])
            left.image(image.pixels, caption="Original", width="stretch", output_format="JPEG")
            with right:
                st.plotly_chart(labels_chart(analysis.classification), key=f"{key}-labels-chart")
                if analysis.classification.model.startswith("efficientnet"):
                    st.caption(
                        "EfficientNet-Lite spreads its probability over related classes more than older models "
                        "(MobileNetV2, ResNet): a top label at 10–30 % is usual and often right. Checked against the "
                        "reference PyTorch model: the same logits to 1e-5."
                    )
    elif view == "Compare":
        overlay = objects_render()
        overlay = overlay if overlay is not None else faces_render()
        if overlay is None:
            st.caption("Nothing to compare.")
        else:
            split = st.slider("Wipe: annotated ← → original", 0, 100, 50, key=f"{key}-wipe", format="%d%%")
            column = int(overlay.shape[1] * split / 100)
            composite = image.pixels.copy()
            composite[:, :column] = overlay[:, :column]
            if 0 < column < composite.shape[1]:
                composite[:, max(column - 1, 0) : column + 1] = (255, 255, 255)
            portrait = composite.shape[0] > composite.shape[1]
            holder = st.columns([1, 3, 1])[1] if portrait else st.container()  # a portrait photo fits the screen
            holder.image(composite, width="stretch", output_format="JPEG")
    else:
        st.json(analysis.to_dict(), expanded=1)

    _downloads(analysis, stored, detections, objects_render, faces_render, key)


def _downloads(analysis, stored, detections, objects_render, faces_render, key: str) -> None:
    """Download buttons whose files are built when clicked; the renders are drawn then too."""
    stem = (analysis.name or analysis.sha256[:12]).rsplit("/", 1)[-1].rsplit(".", 1)[0][:40] or "image"
    columns = st.columns(5)
    # every file is built when it is clicked (callable data), never on a rerun: a display change encodes nothing
    if detections is not None:
        columns[0].download_button(
            "Objects image", lambda: _png(objects_render()), f"{stem}_objects.png", "image/png",
            key=f"{key}-dl-objects", icon=":material/download:",
        )  # fmt: skip
    if analysis.faces is not None:
        columns[1].download_button(
            "Faces image", lambda: _png(faces_render()), f"{stem}_faces.png", "image/png", key=f"{key}-dl-faces",
            icon=":material/download:",
        )  # fmt: skip
    columns[2].download_button(
        "JSON", lambda: json.dumps(analysis.to_dict(), indent=2), f"{stem}.json", "application/json",
        key=f"{key}-dl-json", icon=":material/data_object:",
    )  # fmt: skip

    def seed_json() -> str:
        seed = seed_response(
            analysis,
            original_url=stored.urls.get("original") or "",
            objects_url=stored.urls.get("objects") or "",
            faces_url=stored.urls.get("faces") or "",
        )
        return json.dumps(seed, indent=2)

    columns[3].download_button(
        "Seed JSON", seed_json, f"{stem}_seed.json", "application/json", key=f"{key}-dl-seed",
        help="The seed system's response shape", icon=":material/data_object:",
    )  # fmt: skip
    if detections is not None:
        columns[4].download_button(
            "Objects CSV", lambda: _detections_csv(analysis, detections), f"{stem}_objects.csv", "text/csv",
            key=f"{key}-dl-csv", icon=":material/table:",
        )  # fmt: skip
