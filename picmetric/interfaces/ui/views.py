"""The result view shared by the Analyze and History pages, and the sidebar's display filters."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
import streamlit as st

from picmetric.core.analyzer import Analysis
from picmetric.core.annotate import encode_image
from picmetric.core.catalog import FACE_DETECTORS
from picmetric.core.decoding import LoadedImage
from picmetric.core.drawing import draw
from picmetric.core.options import AnalysisOptions
from picmetric.core.results import Detections, Faces
from picmetric.core.seed import seed_response
from picmetric.errors import PicMetricError
from picmetric.interfaces.ui.charts import (
    SURE_FLOOR,
    detections_chart,
    detector_title,
    faces_chart,
    is_sure,
    labels_chart,
    photo_display_size,
    photo_figure,
    top_of,
)
from picmetric.interfaces.ui.lesson import IMAGENET_GAPS
from picmetric.interfaces.ui.presentation import (
    PHOTO_WIDTH,
    PRESENTED_CHROME_PX,
    counted,
    presenting,
    script_in_page,
    show_chart,
    tag_font,
)
from picmetric.interfaces.ui.resources import browser_jpeg, image_src, working_image
from picmetric.service.analyses import AnalysisService, StoredAnalysis

VIEWS = ["Objects", "Faces", "Labels", "Similar", "Compare", "JSON"]


@dataclass(frozen=True)
class DisplayFilter:
    """Thresholds applied to stored results at display time: changing them never re-runs a model."""

    min_object_confidence: float = 0.25
    min_face_confidence: float = 0.8
    classes: frozenset[str] | None = None

    def apply(self, analysis: Analysis):
        """The objects and faces to show; below the analysis' thresholds, the weaker candidates kept with it."""
        detections = analysis.objects_from(self.min_object_confidence)
        if detections is not None and self.classes:
            detections = detections.filter(classes=set(self.classes))
        return detections, analysis.faces_from(self.min_face_confidence)


def _threshold_slider(label: str, key: str, floor: float, start: float, step: float, help: str) -> float:
    """A sidebar slider from the lowest score the stored result can show (``floor``) that starts at the analysis'
    own threshold (``start``) and keeps its value across reruns and pages."""
    # A new floor gives the slider a new identity, which Streamlit would start at the floor: set the value it keeps.
    if key not in st.session_state or st.session_state.get(f"{key}-floor") != floor:
        st.session_state[f"{key}-floor"] = floor
        st.session_state[key] = max(st.session_state.get(key, start), floor)
    return st.sidebar.slider(label, floor, 1.0, step=step, key=key, help=help)


def scroll_to(anchor: str) -> None:
    """Scroll the page to a heading's anchor (after a sample click the result would sit below the fold)."""
    script_in_page(
        f"const t = window.parent.document.getElementById({json.dumps(anchor)});"
        "if (t) t.scrollIntoView({behavior: 'smooth', block: 'start'});"
    )


def commit_dates_on_enter() -> None:
    """Enter in a date field applies the typed date, as picking it in the calendar does (Streamlit's date input
    otherwise applies a typed date only when the field loses focus or Escape closes its calendar)."""
    script_in_page(
        "const doc = window.parent.document;"
        "if (!doc.picmetricDatesOnEnter) { doc.picmetricDatesOnEnter = true;"
        " doc.addEventListener('keydown', (event) => {"
        "  const field = event.target.closest && event.target.closest('[data-testid=\"stDateInput\"]');"
        "  if (event.key === 'Enter' && field) { event.preventDefault(); event.target.dispatchEvent("
        "   new KeyboardEvent('keydown', {key: 'Escape', code: 'Escape', keyCode: 27, bubbles: true})); }"
        " }, true); }"
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
    """Display thresholds in the sidebar: each starts at the threshold the analysis was run with and goes down to
    the model's own floor (the weaker candidates were kept with the result)."""
    st.sidebar.subheader("Display")
    st.sidebar.caption("These only re-filter the stored result: instant, the models do not run again.")
    options = analysis.options if analysis else AnalysisOptions()
    min_objects = _threshold_slider(
        "Object confidence ≥", "display_min_object", analysis.floor("objects") if analysis else options.min_confidence,
        options.min_confidence, 0.01,
        f"Lower it to see the detector's weaker guesses (dashed, below its {options.min_confidence:.0%} threshold); "
        "raise it to hide weaker detections. The models do not run again.",
    )  # fmt: skip
    min_faces = _threshold_slider(
        "Face score ≥", "display_min_face", analysis.floor("faces") if analysis else options.face_score,
        options.face_score, 0.005,
        f"Lower it to see weaker face candidates (dashed, below {options.face_score:.0%}); raise it to hide less "
        "certain faces. The models do not run again.",
    )  # fmt: skip
    classes = None
    everything = analysis.objects_from(analysis.floor("objects")) if analysis is not None else None
    if everything is not None and len(everything):
        present = sorted(set(everything.labels))  # the weaker candidates' classes too
        chosen = st.sidebar.multiselect("Classes to show", present, default=present)
        classes = frozenset(chosen) if set(chosen) != set(present) else None
    return DisplayFilter(min_objects, min_faces, classes)


_METRICS_ON_A_PHONE = """<style>@media (max-width: 640px) {
.st-key-result-metrics [data-testid="stHorizontalBlock"] {flex-flow: row wrap !important; gap: 0.5rem;}
.st-key-result-metrics [data-testid="stColumn"] {flex: 0 0 calc(50% - 0.5rem) !important; min-width: 0 !important;}
}</style>"""


def _metrics(analysis: Analysis, detections, faces, cached: bool) -> None:
    st.html(_METRICS_ON_A_PHONE)  # two by two on a phone, not four rows filling its first screen
    columns = st.container(key="result-metrics").columns(4)
    columns[0].metric("Objects", len(detections) if detections is not None else "—")
    columns[1].metric("Faces", len(faces) if faces is not None else "—")
    classification = analysis.classification
    top = classification.top if classification else None
    if classification is not None and top is not None and not is_sure(classification):
        # a guess is said as one: "ox" in large type above horses would be confident nonsense
        columns[2].metric("Top label", "Not sure", f"best guess {top[0]}, {top[1]:.0%}", delta_color="off",
                          delta_arrow="off")  # fmt: skip
    else:
        columns[2].metric("Top label", top[0] if top else "—", f"{top[1]:.0%} sure" if top else None,
                          delta_color="off", delta_arrow="off")  # fmt: skip
    total = analysis.timings_ms.get("total")
    columns[3].metric(
        "Analysis time", f"{total:.0f} ms" if total else "—", "from history" if cached else None, delta_color="off",
        delta_arrow="off",
    )  # fmt: skip
    if classification is not None and top is not None and not is_sure(classification):
        st.caption(
            f"The classifier is not sure what this photo shows: no label reaches {SURE_FLOOR:.0%}. Its three best "
            "guesses:"
        )
        show_chart(labels_chart(top_of(classification)), key=f"not-sure-{analysis.sha256[:12]}")


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
    service: AnalysisService, stored: StoredAnalysis, display: DisplayFilter, key: str, history_notice: bool = True
) -> None:
    """Everything about one stored analysis: metrics, side-by-side images, charts, downloads. A fragment: the wipe
    and the tabs rerun this panel only, never the page around it (uploads, history table)."""
    _result_panel(service, stored, display, key, history_notice)


@st.fragment
def _result_panel(
    service: AnalysisService, stored: StoredAnalysis, display: DisplayFilter, key: str, history_notice: bool
) -> None:
    analysis = stored.analysis
    if stored.status != "done":
        st.error(f"This analysis failed: {stored.error}")
        return
    if stored.cached and history_notice and not presenting():  # presenting: the numbers say "from history"
        st.info(
            f"Analysed before ({analysis.created_at:%Y-%m-%d %H:%M} UTC): loaded from history by its hash, "
            "the models did not run again.",
            icon=":material/history:",
        )
    image = working_image(service, stored.sha256)
    if image is None:
        st.error("The stored image is missing from the object store.")
        return
    detections, faces = display.apply(analysis)
    _near_duplicate_notice(service, stored)
    _metrics(analysis, detections, faces, stored.cached)

    def objects_render() -> np.ndarray | None:
        return draw(image, detections) if detections is not None else None

    def faces_render() -> np.ndarray | None:
        return draw(image, faces) if faces is not None else None

    # one view at a time, drawn only when chosen: a display change redraws one image and one chart, not five tabs
    view = st.segmented_control(
        "View", VIEWS, default=VIEWS[0], key=f"{key}-view", label_visibility="collapsed", width="stretch"
    ) or VIEWS[0]  # fmt: skip
    if view in ("Objects", "Faces"):
        _found_view(image, analysis, key, view.lower(), detections if view == "Objects" else faces)
    elif view == "Labels":
        if analysis.classification is None:
            st.caption("Classification was not run for this analysis.")
        else:
            left, right = st.columns([2, 3])
            with left:
                _evidence(service, image, analysis, key)
            with right:
                show_chart(labels_chart(analysis.classification), key=f"{key}-labels-chart")
                _imagenet_gap_note(analysis, analysis.classification.names[0])
                if analysis.classification.model.startswith("efficientnet"):
                    st.caption(
                        "EfficientNet-Lite spreads its probability over related classes more than older models "
                        "(MobileNetV2, ResNet): a top label at 10–30 % is usual and often right. Checked against the "
                        "reference PyTorch model: the same logits to 1e-5."
                    )
    elif view == "Similar":
        _more_like_this(service, stored.sha256, key)
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


def _thumbnail(service: AnalysisService, sha256: str) -> bytes | None:
    found = service.image(sha256, "thumbnail") or service.image(sha256, "original")
    return found.content if found else None


def _near_duplicate_notice(service: AnalysisService, stored: StoredAnalysis) -> None:
    """Said before anything else: this photo is a stored one, edited (resized, re-encoded, cropped, brighter)."""
    twin = service.near_duplicate_of(stored.sha256)
    if twin is None:
        return
    notice, this, that = st.columns([4, 1, 1])
    link = f"[{twin.name or twin.sha256[:12]}](/history?sha={twin.sha256})"
    edited = "the same picture, edited (resized, re-encoded, cropped or brightened)"
    similarity = f"similarity {twin.similarity:.0%}"
    if twin.stored_before is False:  # this is the original: the copy came later
        said = f"An edited copy of this photo was stored after it: {link} ({similarity}), {edited}."
        when = "stored after"
    else:
        said, when = f"Near-duplicate of {link} ({similarity}): {edited}, stored before.", "stored before"
    notice.warning(said, icon=":material/content_copy:")
    for column, sha, caption in ((this, stored.sha256, "this photo"), (that, twin.sha256, when)):
        picture = _thumbnail(service, sha)
        if picture is not None:
            column.image(picture, caption=caption, width="stretch")


def _more_like_this(service: AnalysisService, sha256: str, key: str) -> None:
    """The stored photos most like this one, each opening in History."""
    found = service.similar(sha256, limit=8) or []
    if not found:
        st.caption("No other stored photo yet.")
        return
    st.caption("The stored photos most like this one, by what the classifier's last layer sees (similarity 0–100 %).")
    for row in range(0, len(found), 4):
        for column, photo in zip(st.columns(4), found[row : row + 4], strict=False):
            picture = _thumbnail(service, photo.sha256)
            if picture is not None:
                column.image(picture, width="stretch")
            same = " · same photo, edited" if photo.near_duplicate else ""
            column.markdown(f"[{photo.name or photo.sha256[:12]}](/history?sha={photo.sha256}) · "
                            f"{photo.similarity:.0%}{same}")  # fmt: skip


def _imagenet_gap_note(analysis: Analysis, top_label: str) -> None:
    """A surprise explained next to the result: the objects found that ImageNet has no plain class for."""
    found = analysis.detections.labels if analysis.detections is not None else []
    notes = [IMAGENET_GAPS[label] for label in dict.fromkeys(found) if label in IMAGENET_GAPS]
    if notes:
        st.info(f"Why “{top_label}”? " + " ".join(notes[:2]), icon=":material/help:")


def _evidence(service: AnalysisService, image: LoadedImage, analysis: Analysis, key: str) -> None:
    """Where the evidence for a label is: its class activation map over the photo, for the analysis' top labels."""
    classification = analysis.classification
    assert classification is not None
    labels = {int(i): name for i, name in zip(classification.class_id[:3], classification.names[:3], strict=True)}
    chosen = st.segmented_control(
        "Evidence for", list(labels), default=next(iter(labels)), format_func=lambda i: labels[i], key=f"{key}-evidence"
    )
    chosen = next(iter(labels)) if chosen is None else chosen
    cache: dict = st.session_state.setdefault("_evidence", {})
    cache_key = (analysis.sha256, analysis.options.classifier)
    if cache_key not in cache:
        if len(cache) > 10:
            cache.pop(next(iter(cache)))
        maps = service.evidence_maps(image, analysis.options, class_ids=list(labels))
        cache[cache_key] = {m.class_id: m.overlay for m in maps}
    st.image(cache[cache_key][chosen], width="stretch", output_format="JPEG")
    st.caption(
        f"Where the evidence for “{labels[chosen]}” is: red most, blue none; the white square is what the network "
        "saw. (A class activation map: the last layer's weights for this label at each spot of the final feature "
        "map; their average over the square is the label's score.)"
    )


def _found_view(image: LoadedImage, analysis: Analysis, key: str, task: str, found: Detections | Faces | None) -> None:
    """The Objects or Faces view (``task``): the photo with what was found beside the original, then a chart."""
    if found is None:
        st.caption(f"{'Object' if task == 'objects' else 'Face'} detection was not run for this analysis.")
        return
    if isinstance(found, Detections):
        threshold = analysis.options.min_confidence
        detector = detector_title(analysis.options.detector)  # the one that ran: built in, or one added
        title, hint = f"{detector} · {counted(len(found), 'object')}", "hover a box for its class and confidence"
    else:
        threshold = analysis.options.face_score
        detector = FACE_DETECTORS[analysis.options.face_detector].title
        title, hint = f"{detector} · {counted(len(found), 'face')} with landmarks", "hover a dot to name it"
    _photo_beside_original(
        image, analysis, f"{key}-{task}", f"{title}{_weaker_note(found, threshold)} · {hint}", found, threshold
    )
    if not len(found):
        _nothing_found_note(analysis, task)
    if len(found):
        chart = detections_chart(found, threshold) if isinstance(found, Detections) else faces_chart(found)
        show_chart(chart, key=f"{key}-{task}-chart")


def _photo_beside_original(
    image: LoadedImage,
    analysis: Analysis,
    key: str,
    caption: str,
    found: Detections | Faces,
    threshold: float,
) -> None:
    """The photo with what was found drawn over it (in the browser), beside the original; when presenting, the
    annotated photo alone, larger (the Compare view still shows the original)."""
    size, width = (analysis.width, analysis.height), PHOTO_WIDTH
    annotated = photo_figure(
        image_src(image, key),
        size,
        width,
        threshold=threshold,
        tag_font=tag_font(),
        detections=found if isinstance(found, Detections) else None,
        faces=found if isinstance(found, Faces) else None,
    )
    if presenting():  # alone, as large as the screen's height allows below the numbers: the first screen
        shown_w, shown_h = photo_display_size(size, width)
        with st.container(key=f"photo-{key}-presented"):
            st.html(
                f"<style>.st-key-photo-{key}-presented {{margin: 0 auto; aspect-ratio: {shown_w} / {shown_h}; "
                f"width: min(100%, calc((100vh - {PRESENTED_CHROME_PX}px) * {shown_w} / {shown_h})) !important;}}"
                "</style>"
            )
            show_chart(annotated, key=f"{key}-image", photo=True, fill=True)
        st.caption(caption)
        return
    left, right = st.columns(2)
    # both photos as wide as their half of the page (a 1920 px screen: twice a 1280 px one's), each keeping its
    # shape, and never taller than most of the screen (portrait photos)
    shown_w, shown_h = photo_display_size(size, width)
    fit = f"width: min(100%, calc(75vh * {shown_w} / {shown_h})) !important; aspect-ratio: {shown_w} / {shown_h};"
    with left.container(key=f"photo-{key}-original"):
        st.html(
            f"<style>.st-key-photo-{key}-original img {{{fit} height: auto !important;}}"
            # the fullscreen button inside the photo's corner, not above it over the Labels view button
            f".st-key-photo-{key}-original [data-testid='stElementToolbar'] "
            "{top: 0.4rem !important; right: 0.4rem !important;}"
            f".st-key-photo-{key}-frame {{{fit}}}</style>"
        )
        st.image(browser_jpeg(image), caption=f"Original · {analysis.width}×{analysis.height}", width="stretch")
    with right:
        with st.container(key=f"photo-{key}-frame"):
            show_chart(annotated, key=f"{key}-image", photo=True, fill=True)
        st.caption(caption)


def _nothing_found_note(analysis: Analysis, task: str) -> None:
    """Nothing above the threshold: say whether weaker guesses exist, and how to see them."""
    floor = analysis.floor(task)
    weaker = analysis.objects_from(floor) if task == "objects" else analysis.faces_from(floor)
    if weaker is None or not len(weaker):
        return
    best = int(np.argmax(weaker.confidence))
    what = f"{weaker.labels[best]} " if isinstance(weaker, Detections) else ""
    noun = "guess" if len(weaker) == 1 else "guesses"
    st.info(
        f"0 {task} above the threshold, but {len(weaker)} weaker {noun} down to {floor:.0%} (the best: {what}"
        f"{weaker.confidence[best]:.0%}). Lower the sidebar's "
        f"“{'Object confidence' if task == 'objects' else 'Face score'} ≥” slider to see them.",
        icon=":material/tune:",
    )


def _weaker_note(found: Detections | Faces, threshold: float) -> str:
    weaker = int((found.confidence < threshold).sum())
    return f" ({weaker} dashed: below the {threshold:.0%} threshold the models ran with)" if weaker else ""


def _downloads(analysis, stored, detections, objects_render, faces_render, key: str) -> None:
    """Download buttons whose files are built when clicked; the renders are drawn then too."""
    stem = (analysis.name or analysis.sha256[:12]).rsplit("/", 1)[-1].rsplit(".", 1)[0][:40] or "image"
    # one row that wraps: a narrow page moves a button to the next line instead of cutting its label ("Objects i…")
    row = st.container(horizontal=True, key=f"{key}-downloads")
    # every file is built when it is clicked (callable data), never on a rerun: a display change encodes nothing
    if detections is not None:
        row.download_button(
            "Objects image", lambda: _png(objects_render()), f"{stem}_objects.png", "image/png",
            key=f"{key}-dl-objects", icon=":material/download:",
        )  # fmt: skip
    if analysis.faces is not None:
        row.download_button(
            "Faces image", lambda: _png(faces_render()), f"{stem}_faces.png", "image/png", key=f"{key}-dl-faces",
            icon=":material/download:",
        )  # fmt: skip
    row.download_button(
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

    row.download_button(
        "Seed JSON", seed_json, f"{stem}_seed.json", "application/json", key=f"{key}-dl-seed",
        help="The seed system's response shape", icon=":material/data_object:",
    )  # fmt: skip
    if detections is not None:
        row.download_button(
            "Objects CSV", lambda: _detections_csv(analysis, detections), f"{stem}_objects.csv", "text/csv",
            key=f"{key}-dl-csv", icon=":material/table:",
        )  # fmt: skip
