"""Analyze: upload photos, paste a URL or pick a sample; see the three models' results side by side."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from picmetric import AnalysisOptions, PicMetricError, fetch_image, load_image
from picmetric.models import CLASSIFIERS, FACE_DETECTORS
from picmetric.models.classifier import PRECISIONS
from picmetric.samples import samples
from picmetric.ui.resources import get_repository
from picmetric.ui.views import display_sidebar, show_analysis

TASK_TITLES = {"labels": "ImageNet labels", "objects": "COCO objects", "faces": "Faces and landmarks"}
UPLOAD_TYPES = ["jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff", "heic", "heif"]

repository = get_repository()
results = st.session_state.setdefault("results", {})  # sha256 -> StoredAnalysis, kept across reruns
MAX_RESULTS_KEPT = 50  # a session holds results (rows, not image bytes) of its newest analyses only

st.sidebar.subheader("Analysis")
options = AnalysisOptions(
    classifier=st.sidebar.selectbox(
        "Classifier", list(CLASSIFIERS), format_func=lambda k: f"{CLASSIFIERS[k].title} ({CLASSIFIERS[k].top1}% top-1)"
    ),
    detector_size=st.sidebar.radio("Detector input", (416, 608), horizontal=True, format_func=lambda s: f"{s} px"),
    iou_threshold=st.sidebar.slider("Box overlap (IoU) for NMS", 0.1, 0.9, 0.45, 0.05),
    face_detector=st.sidebar.radio(
        "Face detector",
        list(FACE_DETECTORS),
        horizontal=True,
        format_func=lambda k: FACE_DETECTORS[k][2].split(" (")[0],
    ),
    min_face_size=st.sidebar.slider("Minimum face size (px)", 12, 200, 20),
    precision=st.sidebar.radio(
        "Classifier precision",
        PRECISIONS,
        horizontal=True,
        help="int8: the quantized EfficientNet-Lite, twice as fast with the same accuracy on the check photos",
    ),
)


def analyse(source, *, origin: str, name: str) -> None:
    """Submit one image (bytes, or a URL to fetch) and keep the result in the session."""
    with st.status(f"Analyzing {name}…", expanded=True) as status:

        def report(task: str, timings: dict[str, float]) -> None:
            status.write(f":material/check: {TASK_TITLES[task]} · {timings[task]:.0f} ms")

        try:
            image = (
                fetch_image(source, settings=repository.settings)
                if origin == "url"
                else load_image(source, settings=repository.settings, origin=origin, name=name)
            )
            stored = repository.submit(image, options=options, on_task_done=report)
        except PicMetricError as exc:
            status.update(label=f"Could not analyse {name}", state="error", expanded=False)
            st.session_state["error"] = f"{name}: {exc}"
            return
        took = "loaded from history" if stored.cached else f"{stored.analysis.timings_ms['total']:.0f} ms"
        status.update(label=f"{name}: done ({took})", state="complete", expanded=False)
    st.session_state.pop("error", None)
    results.pop(stored.sha256, None)  # newest last
    results[stored.sha256] = stored
    while len(results) > MAX_RESULTS_KEPT:
        results.pop(next(iter(results)))
    st.session_state["current"] = stored.sha256


st.title("Analyze a photo")
upload_tab, url_tab, sample_tab = st.tabs(
    [":material/upload: Upload", ":material/link: Image URL", ":material/photo_library: Samples"]
)
with upload_tab:
    # A new uploader key after each batch: Streamlit then drops the uploaded files (up to 30 MB each) from the
    # session, which keeps only the results.
    uploads_key = st.session_state.setdefault("uploads_key", 0)
    files = st.file_uploader(
        "Drop one or more photos", type=UPLOAD_TYPES, accept_multiple_files=True, key=f"uploads-{uploads_key}",
        help="JPEG, PNG, WebP, GIF, BMP, TIFF or HEIC, up to 30 MB each",
    )  # fmt: skip
    if files and len(files) > 1:
        progress = st.progress(0.0, text=f"Analyzing {len(files)} photos…")
        batch = []
        for done, file in enumerate(files, start=1):
            analyse(file.getvalue(), origin="upload", name=file.name)
            stored = results.get(st.session_state.get("current")) if "error" not in st.session_state else None
            batch.append({"file": file.name, "stored": stored, "error": st.session_state.get("error")})
            progress.progress(done / len(files), text=f"{done} of {len(files)} analysed")
        st.session_state["batch"] = batch
    elif files:
        analyse(files[0].getvalue(), origin="upload", name=files[0].name)
    if files:
        st.session_state["uploads_key"] = uploads_key + 1
        st.rerun()  # show the fresh, empty uploader (and the results kept in the session)

with url_tab, st.form("url-form", border=False):
    url = st.text_input("Image URL", placeholder="https://example.com/photo.jpg")
    if st.form_submit_button("Analyze URL", icon=":material/search:") and url.strip():
        analyse(url.strip(), origin="url", name=url.strip())

with sample_tab:
    st.caption("Photos that ship with PicMetric's model packages: one click, no file needed.")
    columns = st.columns(len(samples()))
    for column, item in zip(columns, samples(), strict=True):
        column.image(str(item.path), width="stretch")
        if column.button(item.title, key=f"sample-{item.key}", width="stretch"):
            analyse(item.read(), origin="upload", name=item.path.name)

if "error" in st.session_state:
    st.error(st.session_state["error"], icon=":material/error:")

batch = st.session_state.get("batch")
if batch:
    st.subheader(f"Batch: {len(batch)} photos")
    rows = []
    for row in batch:
        stored = row["stored"]
        a = stored.analysis if stored else None
        rows.append(
            {
                "file": row["file"],
                "top label": a.classification.top[0] if a and a.classification else None,
                "objects": len(a.detections) if a and a.detections is not None else None,
                "faces": len(a.faces) if a and a.faces is not None else None,
                "ms": round(a.timings_ms.get("total", 0)) if a else None,
                "status": "from history" if stored and stored.cached else ("analysed" if stored else row["error"]),
                "open": f"/history?sha={stored.sha256}" if stored else None,
            }
        )
    st.dataframe(
        pd.DataFrame(rows), hide_index=True, width="stretch",
        column_config={"open": st.column_config.LinkColumn("result", display_text="open")},
    )  # fmt: skip

current = results.get(st.session_state.get("current"))
if current is not None and current.analysis.options.cache_key != options.cache_key:
    original = repository.image_bytes(current.sha256, "original")  # settings changed: same photo, new options
    if original is not None:
        analyse(original[0], origin="upload", name=current.analysis.name or current.sha256[:12])
        current = results.get(st.session_state.get("current"))

display = display_sidebar(current.analysis if current else None)
if current is None:
    st.info(
        "Upload a photo, paste an image URL or pick a sample to see what the three models find.",
        icon=":material/lightbulb:",
    )
else:
    if len(results) > 1:
        names = {sha: (r.analysis.name or sha[:12]) for sha, r in results.items()}
        chosen = st.selectbox("Showing", list(names), index=list(names).index(current.sha256), format_func=names.get)
        if chosen != current.sha256:
            st.session_state["current"] = chosen
            st.rerun()
    st.subheader(current.analysis.name or current.sha256[:12])
    show_analysis(repository, current, display, key="analyze")
