"""Analyze: upload photos, paste a URL or pick a sample; see the three models' results side by side."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from picmetric import AnalysisOptions, PicMetricError, fetch_image, load_image
from picmetric.core.catalog import CLASSIFIERS, FACE_DETECTORS, PRECISIONS
from picmetric.core.samples import samples
from picmetric.interfaces.ui.presentation import presenting
from picmetric.interfaces.ui.resources import get_jobs
from picmetric.interfaces.ui.thumbnails import square_thumbnail
from picmetric.interfaces.ui.views import display_sidebar, scroll_to, show_analysis
from picmetric.service.jobs import JobInput, batch_counts

TASK_TITLES = {"labels": "ImageNet labels", "objects": "Objects", "faces": "Faces and landmarks"}
# Each sample tile is one button: its (invisible) button covers the thumbnail and the caption. On a phone the tiles
# stay three to a row instead of stacking into one long column.
SAMPLE_GALLERY_STYLE = """<style>
[class*="st-key-sample-tile-"] {position: relative; border-radius: 0.5rem; padding: 0.25rem;}
[class*="st-key-sample-tile-"]:hover, [class*="st-key-sample-tile-"]:focus-within {
  box-shadow: 0 0 0 3px #3b82f6;}
[class*="st-key-sample-tile-"] .stElementContainer:has(.stButton) {position: absolute; inset: 0; z-index: 2;
  width: 100% !important;}
[class*="st-key-sample-tile-"] .stButton, [class*="st-key-sample-tile-"] .stButton button {width: 100%; height: 100%;}
[class*="st-key-sample-tile-"] .stButton button {opacity: 0; cursor: pointer;}
@media (max-width: 640px) {
  .st-key-sample-gallery [data-testid="stHorizontalBlock"] {flex-flow: row wrap !important; gap: 0.5rem;}
  .st-key-sample-gallery [data-testid="stColumn"] {flex: 0 0 calc(33.3% - 0.5rem) !important;
    width: calc(33.3% - 0.5rem) !important; min-width: 0 !important;}
}
</style>"""
UPLOAD_TYPES = ["jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff", "heic", "heif"]

jobs = get_jobs()
service = jobs.service
results = st.session_state.setdefault("results", {})  # sha256 -> StoredAnalysis, kept across reruns
MAX_RESULTS_KEPT = 50  # a session holds results (rows, not image bytes) of its newest analyses only
opened = st.query_params.get("sha")
if opened:  # a link to a stored photo (Evaluate's worst photos): its newest analysis, opened here
    found = service.find(opened)
    if found is not None:
        results[found.sha256] = found
        st.session_state["current"] = found.sha256
    del st.query_params["sha"]

st.sidebar.subheader("Analysis")
st.sidebar.caption("These run the models again: for the next photo, and for this one when you re-analyse it.")
object_detectors = {entry.name: entry for entry in service.detectors()}
# a form: moving a slider changes nothing until "Re-analyse", so no new analysis is stored at every release
with st.sidebar.form("analysis-settings", border=False):
    options = AnalysisOptions(
        classifier=st.selectbox(
            "Classifier",
            list(CLASSIFIERS),
            format_func=lambda k: f"{CLASSIFIERS[k].title} ({CLASSIFIERS[k].top1}% top-1)",
        ),  # fmt: skip
        detector=st.selectbox(
            "Object detector",
            list(object_detectors),
            format_func=lambda k: f"{k} ({len(object_detectors[k].classes)} classes)",
            help="Add your own Darknet or ONNX detector with `picmetric models add` (see the README).",
        ),
        detector_size=st.radio(
            "Detector input",
            (416, 608),
            horizontal=True,
            format_func=lambda s: f"{s} px",
            help="The built-in YOLOv4-tiny's input; an added detector runs at its own size.",
        ),  # fmt: skip
        iou_threshold=st.slider("Box overlap (IoU) for NMS", 0.1, 0.9, 0.40, 0.05),
        merge_synonyms=st.checkbox(
            "One box per object across near-synonyms",
            value=True,
            help="NMS takes car/truck/bus, horse/cow/sheep and dog/cat for one object, so a pickup is not boxed "
            "twice (as car and truck). Off: every class on its own.",
        ),
        face_detector=st.radio(
            "Face detector",
            list(FACE_DETECTORS),
            horizontal=True,
            format_func=lambda k: FACE_DETECTORS[k].title.split(" (")[0],
        ),
        min_face_size=st.slider("Minimum face size (px)", 12, 200, 20),
        precision=st.radio(
            "Model precision",
            PRECISIONS,
            horizontal=True,
            help="int8: the quantized EfficientNet-Lite2 and YOLOv4-tiny (416 px), about twice as fast, with the "
            "float models' answers on the check photos. The other models run float32 either way.",
        ),
    )
    st.form_submit_button("Re-analyse with these settings", icon=":material/refresh:", width="stretch")


def analyse(source: bytes | str, *, origin: str, name: str) -> None:
    """Submit one image (bytes, or a URL to fetch) and keep the result in the session; ``origin`` is stored as
    where it came from (upload, url, sample, camera)."""
    slot, stored = st.empty(), None
    with slot.status(f"Analyzing {name}…", expanded=True) as status:

        def report(task: str, timings: dict[str, float]) -> None:
            status.write(f":material/check: {TASK_TITLES[task]} · {timings[task]:.0f} ms")

        try:
            image = (
                fetch_image(source, settings=service.settings)
                if isinstance(source, str)
                else load_image(source, settings=service.settings, origin=origin, name=name)
            )
            stored = service.submit(image, options=options, on_task_done=report)
        except PicMetricError as exc:
            st.session_state["error"] = f"{name}: {exc}"
        else:
            took = "loaded from history" if stored.cached else f"{stored.analysis.timings_ms['total']:.0f} ms"
            status.update(label=f"{name}: done ({took})", state="complete", expanded=False)
    if stored is None:
        slot.empty()  # the error under the inputs says it once; a red progress box would say it twice
        return
    st.session_state.pop("error", None)
    results.pop(stored.sha256, None)  # newest last
    results[stored.sha256] = stored
    while len(results) > MAX_RESULTS_KEPT:
        results.pop(next(iter(results)))
    st.session_state["current"] = stored.sha256
    st.session_state["scroll_to_result"] = True


# Presenting a result: it comes first (the room sees the photo, not the file picker) and the inputs fold below it.
presenting_result = presenting() and st.session_state.get("current") in results
result_area = st.container() if presenting_result else None
inputs_area = (
    st.expander("Analyze another photo", icon=":material/add_photo_alternate:") if presenting_result else st.container()
)
with inputs_area:
    if not presenting_result:
        st.title("Analyze a photo")
    upload_tab, url_tab, sample_tab, camera_tab = st.tabs(
        [":material/upload: Upload", ":material/link: Image URL", ":material/photo_library: Samples",
         ":material/photo_camera: Camera"]
    )  # fmt: skip
    with upload_tab:
        # A new uploader key after each batch: Streamlit then drops the uploaded files (up to 30 MB each) from the
        # session, which keeps only the results.
        uploads_key = st.session_state.setdefault("uploads_key", 0)
        files = st.file_uploader(
            "Drop one or more photos", type=UPLOAD_TYPES, accept_multiple_files=True, key=f"uploads-{uploads_key}",
            help="JPEG, PNG, WebP, GIF, BMP, TIFF or HEIC, up to 30 MB each",
        )  # fmt: skip
        if files and len(files) > 1:  # a batch: queued (on the workers, or this server's threads), followed below
            try:
                inputs = [JobInput(source="upload", name=file.name, data=file.getvalue()) for file in files]
                st.session_state["batch"], _ = jobs.submit(inputs, options, batch=True)
                st.session_state.pop("error", None)
            except PicMetricError as exc:
                st.session_state["error"] = f"The batch could not be queued: {exc}"
        elif files:
            analyse(files[0].getvalue(), origin="upload", name=files[0].name)
        if files:
            st.session_state["uploads_key"] = uploads_key + 1
            st.rerun()  # show the fresh, empty uploader (and the results kept in the session)

    with url_tab, st.form("url-form", border=False):
        url = st.text_input("Image URL", placeholder="https://example.com/photo.jpg")
        if st.form_submit_button("Analyze URL", icon=":material/search:") and url.strip():
            analyse(url.strip(), origin="url", name=url.strip())

    with sample_tab, st.container(key="sample-gallery"):
        st.caption("Photos that ship with PicMetric's model packages: click one to analyse it, no file needed.")
        st.html(SAMPLE_GALLERY_STYLE)
        gallery, picked = samples(), None
        for column, item in zip(st.columns(len(gallery)), gallery, strict=True):
            # equal tiles whatever the photo's shape, the full title under each; the whole tile is the button
            with column.container(key=f"sample-tile-{item.key}"):
                st.image(square_thumbnail(str(item.path)), caption=item.title, width="stretch")
                if st.button(f"Analyze “{item.title}”", key=f"sample-{item.key}"):
                    picked = item
        if picked is not None:  # its progress under the gallery, not squeezed into the tile
            analyse(picked.read(), origin="sample", name=picked.path.name)

    with camera_tab:
        snapshot = st.camera_input("Take a photo of the room", key=f"camera-{st.session_state.get('uploads_key', 0)}")
        if snapshot is not None:
            analyse(snapshot.getvalue(), origin="camera", name="camera.jpg")
            st.session_state["uploads_key"] = st.session_state.get("uploads_key", 0) + 1
            st.rerun()  # a fresh camera: the next click takes a new photo

    if "error" in st.session_state:
        st.error(st.session_state["error"], icon=":material/error:")


def batch_rows(records: list, detailed: bool) -> pd.DataFrame:
    """One row per photo; ``detailed`` (once finished) adds what the models found."""
    rows = []
    for job in records:
        row = {"file": job.name, "state": job.state if job.state != "failed" else f"failed: {job.error}"}
        if detailed and job.state == "done":
            try:
                a = jobs.result(job).analysis
            except PicMetricError:  # deleted since
                a = None
            row |= {
                "top label": a.classification.top[0] if a and a.classification and a.classification.top else "",
                "objects": len(a.detections) if a and a.detections is not None else 0,
                "faces": len(a.faces) if a and a.faces is not None else 0,
                "state": "from history" if job.cached else "analysed",
            }
        row["open"] = f"/history?sha={job.sha256}" if job.state == "done" and job.sha256 else ""
        rows.append(row)
    return pd.DataFrame(rows)


def show_batch(records: list, detailed: bool) -> bool:
    """One progress bar and one table for the whole batch; True once every photo is done or failed."""
    counts = batch_counts(records)
    finished = counts["done"] + counts["failed"]
    total = len(records)
    st.subheader(f"Batch: {total} photos")
    st.progress(finished / total, text=(
        f"{counts['done']} done · {counts['running']} running · {counts['queued']} queued · {counts['failed']} failed"
    ))  # fmt: skip
    st.dataframe(
        batch_rows(records, detailed), hide_index=True, width="stretch", height=min(36 * (total + 1) + 2, 400),
        column_config={"open": st.column_config.LinkColumn("result", display_text="open")},
    )  # fmt: skip
    return finished == total


GALLERY_SIZE = 24  # thumbnails shown for a batch; the table lists every photo


def batch_gallery(records: list) -> None:
    """The batch's photos with their boxes, four to a row; "Open" shows one large in the result view below."""
    done = [job for job in records if job.state == "done" and job.sha256][:GALLERY_SIZE]
    for row in range(0, len(done), 4):
        for column, job in zip(st.columns(4), done[row : row + 4], strict=False):
            try:
                stored = jobs.result(job)
            except PicMetricError:  # deleted since
                continue
            kind = "objects" if "objects" in stored.analysis.render_kinds else "original"  # drawn once, then kept
            picture = service.image(job.sha256, kind)
            if picture is None:
                continue
            a = stored.analysis
            top = a.classification.top[0] if a.classification and a.classification.top else "—"
            found = f"{len(a.detections)} objects" if a.detections is not None else ""
            column.image(picture.content, caption=f"{job.name or job.sha256[:12]} · {top} · {found}", width="stretch")
            if column.button("Open", key=f"open-{job.id}", icon=":material/open_in_full:", width="stretch"):
                results[job.sha256] = stored
                st.session_state["current"] = job.sha256
                st.session_state["scroll_to_result"] = True
                st.rerun()
    if len([job for job in records if job.state == "done"]) > GALLERY_SIZE:
        st.caption(f"The first {GALLERY_SIZE} photos; the table above lists every one.")


@st.fragment(run_every=1.0)
def follow_batch(batch_id: str) -> None:
    """Live progress without blocking the page: only this panel reruns, once a second, until the batch ends."""
    records = jobs.batch(batch_id)
    if not records or show_batch(records, detailed=False):
        st.rerun()  # finished (or deleted by a reset): the whole page shows the final table, and polling stops


batch_id = st.session_state.get("batch")
if batch_id:
    batch_records = jobs.batch(batch_id)
    if not batch_records:
        st.session_state.pop("batch")
    elif all(job.state in ("done", "failed") for job in batch_records):
        show_batch(batch_records, detailed=True)
        batch_gallery(batch_records)
    else:
        follow_batch(batch_id)

with result_area if result_area is not None else st.container():
    current = results.get(st.session_state.get("current"))
    # one small query per rerun (not the whole analysis): is it still stored?
    if current is not None and not service.is_stored(current.sha256, current.analysis.options):
        results.pop(current.sha256, None)  # deleted meanwhile (another tab, History, a reset): never shown as stored
        st.session_state.pop("current", None)
        st.warning(
            f"{current.analysis.name or 'This photo'} was deleted from history meanwhile; send it again to analyse it.",
            icon=":material/delete:",
        )
        current = None
    if current is not None and current.analysis.options.cache_key != options.cache_key:
        original = service.image(current.sha256, "original")  # settings changed: same photo, new options
        if original is not None:
            name = current.analysis.name or current.sha256[:12]
            analyse(original.content, origin=current.analysis.source, name=name)
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
            chosen = st.selectbox(
                "Showing", list(names), index=list(names).index(current.sha256), format_func=names.get
            )
            if chosen != current.sha256:
                st.session_state["current"] = chosen
                st.rerun()
        st.subheader(current.analysis.name or current.sha256[:12], anchor="result")
        show_analysis(service, current, display, key="analyze")
        if st.session_state.pop("scroll_to_result", False):
            scroll_to("result")  # a new result: bring it into view, under the inputs
