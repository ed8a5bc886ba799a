"""Video: a clip in, every object tracked and counted, the annotated clip playing in the page."""

from __future__ import annotations

import json

import streamlit as st

from picmetric import PicMetricError
from picmetric.core.catalog import PRECISIONS
from picmetric.core.tracking import TRACKERS
from picmetric.core.video import VIDEO_SUFFIXES
from picmetric.interfaces.ui.presentation import presenting, show_chart
from picmetric.interfaces.ui.resources import get_videos
from picmetric.interfaces.ui.video import counts_figure, first_frame, line_preview, track_thumbnails, tracks_table
from picmetric.service.videos import VideoOptions, VideoProgress, csv_rows

videos = get_videos()
st.title("Video")
st.caption("A clip in: every object found in each frame, followed from frame to frame (ByteTrack), counted, and "
           "the crossings of a line you draw; the annotated clip plays below.")  # fmt: skip

with st.sidebar:
    st.subheader("Video analysis")
    every = st.slider("Analyse every k-th frame", 1, 10, 1, help="2 or more: faster; tracks still join up")
    detector = st.selectbox("Object detector", [d.name for d in videos.service.detectors()])
    precision = st.radio("Precision", PRECISIONS, horizontal=True)
    tracker = st.radio("Tracker", TRACKERS, horizontal=True, help="ByteTrack, or OC-SORT (benchmarks/bench_video.py)")
    faces = st.checkbox("Count faces too")

upload = st.file_uploader("A clip (MP4, MOV, WebM, AVI, MKV)", type=[s.lstrip(".") for s in VIDEO_SUFFIXES])
if upload is None:
    st.info("Upload a clip to begin: a street, a playground, a lab experiment.", icon=":material/movie:")
    st.stop()

data = upload.getvalue()
stored_as = f"video-facts:{upload.file_id}"  # checked and stored once per upload, not at every slider move
if stored_as not in st.session_state:
    try:
        st.session_state[stored_as] = videos.store(data, name=upload.name)
    except PicMetricError as exc:
        st.error(str(exc), icon=":material/error:")
        st.stop()
facts = st.session_state[stored_as]
st.caption(f"{upload.name}: {facts.width}x{facts.height}, {facts.frames} frames at {facts.fps:g} fps "
           f"({facts.duration_s:.1f} s, {facts.codec})")  # fmt: skip

with st.expander("Counting line", expanded=True, icon=":material/horizontal_rule:"):
    counting = st.toggle("Count crossings of a line", value=True, key=f"line-on-{facts.sha256}")
    left, right = st.columns([1, 2])
    with left:
        start_x, start_y = st.slider("Start (x %)", 0, 100, 0), st.slider("Start (y %)", 0, 100, 50)
        end_x, end_y = st.slider("End (x %)", 0, 100, 100), st.slider("End (y %)", 0, 100, 50)
    line = (start_x / 100 * facts.width, start_y / 100 * facts.height, end_x / 100 * facts.width,
            end_y / 100 * facts.height)  # fmt: skip
    usable = counting and (start_x, start_y) != (end_x, end_y)
    with right:
        st.image(line_preview(first_frame(facts.sha256, facts, data), line if usable else None), width="stretch",
                 caption="The first frame: 'in' is crossing from the line's left to its right, walking from start "
                 "to end")  # fmt: skip

options = VideoOptions(detector=detector, precision=precision, every=every, faces=faces, tracker=tracker,
                       line=line if usable else None)  # fmt: skip
key = f"video:{facts.sha256}:{json.dumps(options.model_dump(mode='json'), sort_keys=True)}"
if key not in st.session_state and st.button("Analyse the clip", type="primary", icon=":material/play_arrow:"):
    try:
        started = videos.start(facts, options)
    except PicMetricError as exc:
        st.error(str(exc), icon=":material/error:")
        st.stop()
    bar = st.progress(0.0, text="starting")

    def report(progress: VideoProgress) -> None:
        left_s = f", about {progress.seconds_left:.0f} s left" if progress.seconds_left is not None else ""
        bar.progress(min(1.0, progress.frames_done / max(progress.frames_total, 1)),
                     text=f"{progress.frames_done} of {progress.frames_total} frames, "
                     f"{progress.frames_per_s:.1f} frames/s{left_s}")  # fmt: skip

    try:
        videos.wait(started.id, report)
        st.session_state[key] = started.id
        st.rerun()
    except PicMetricError as exc:
        st.error(str(exc), icon=":material/error:")
        st.stop()
if key not in st.session_state:
    st.stop()

analysis_id = st.session_state[key]
result = videos.result(analysis_id)
clip = videos.clip(analysis_id)  # read (or drawn) once, for the player and the download
names = sorted({t["class"] for t in result["tracks"]})
metrics = st.columns(max(2, min(5, 2 + len(result["totals"]))))
metrics[0].metric("Tracks", len(result["tracks"]))
metrics[1].metric("Frames", result["frames"])
for column, (kind, ways) in zip(metrics[2:], sorted(result["totals"].items()), strict=False):
    column.metric(f"{kind} crossing", f"in {ways['in']} · out {ways['out']}")

clip_column, chart_column = st.columns([3, 2]) if not presenting() else (st.container(), st.container())
with clip_column:
    st.video(clip, format="video/mp4")
with chart_column:
    show_chart(counts_figure(result), key="video-counts")

st.subheader("Tracks")
table = tracks_table(result)
picked = st.dataframe(table, hide_index=True, width="stretch", on_select="rerun", selection_mode="single-row",
                      key="video-tracks")  # fmt: skip
rows = picked.selection.rows if picked is not None else []
if rows:
    track = result["tracks"][rows[0]]
    st.caption(f"Track {track['id']} ({track['class']}): frames {track['first_frame']}–{track['last_frame']}")
    for column, picture in zip(st.columns(4), track_thumbnails(facts.sha256, facts, data, track), strict=False):
        column.image(picture, width="stretch")
else:
    st.caption("Click a track for its thumbnails.")

downloads = st.columns(3)
downloads[0].download_button("Result (JSON)", json.dumps(result), f"{facts.sha256[:12]}.json", "application/json")
downloads[1].download_button("Boxes (CSV)", csv_rows(result), f"{facts.sha256[:12]}.csv", "text/csv")
downloads[2].download_button("Annotated clip (MP4)", clip, f"{facts.sha256[:12]}.mp4", "video/mp4")
