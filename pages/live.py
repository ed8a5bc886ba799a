"""Live: the browser's camera analysed as it streams, objects and faces drawn on it; "Capture" keeps a frame."""

from __future__ import annotations

import time

import streamlit as st
from streamlit_webrtc import WebRtcMode, webrtc_streamer

from picmetric import PicMetricError
from picmetric.core.annotate import encode_image
from picmetric.interfaces.ui.live import RTC_CONFIGURATION, LiveAnalyzer
from picmetric.interfaces.ui.resources import get_service

service = get_service()
st.title("Live camera")
st.caption("Press Start and allow the camera: every frame is analysed on this server and comes back with its boxes. "
           "Frames that arrive while one is analysed are skipped, so the picture keeps up with the room.")  # fmt: skip

if "live-analyzer" not in st.session_state:
    st.session_state["live-analyzer"] = LiveAnalyzer(get_service())
live: LiveAnalyzer = st.session_state["live-analyzer"]
live.min_confidence = st.sidebar.slider("Object confidence ≥", 0.05, 0.95, 0.25, 0.05, key="live-objects")
live.face_score = st.sidebar.slider("Face score ≥", 0.3, 0.99, 0.8, 0.01, key="live-faces")

video, facts = st.columns([3, 2])
with video:
    context = webrtc_streamer(
        key="live", mode=WebRtcMode.SENDRECV, rtc_configuration=RTC_CONFIGURATION,
        video_frame_callback=live, async_processing=True,
        media_stream_constraints={"video": {"width": 640, "height": 480}, "audio": False},
        translations={"start": "Start", "stop": "Stop"},
    )  # fmt: skip


@st.fragment(run_every=0.5)
def what_it_sees() -> None:
    """Polled twice a second while the page is open: the classes in the newest frame and the frame rate."""
    state = live.state()
    faces = f"{state.faces} face{'s' if state.faces != 1 else ''}"
    st.markdown(f"**{state.fps:.1f} fps** · {state.analyse_ms:.0f} ms to analyse a frame · boxes "
                f"{state.behind_ms:.0f} ms behind the camera · {faces}")  # fmt: skip
    if state.seen:
        st.dataframe([{"class": label, "confidence": f"{p:.0%}"} for label, p in state.seen], hide_index=True,
                     width="stretch", key=f"live-seen-{state.frames % 2}")  # fmt: skip
    else:
        st.caption("Nothing seen yet." if state.frames == 0 else "No object in this frame.")


with facts:
    what_it_sees()
    if st.button("Capture", icon=":material/photo_camera:", disabled=not context.state.playing, key="live-capture"):
        frame = live.latest_frame()
        if frame is None:
            st.warning("No frame yet: wait for the picture.", icon=":material/hourglass_empty:")
        else:
            try:
                stored = service.submit(encode_image(frame, "jpeg"), source="camera",
                                        name=f"camera {time.strftime('%Y-%m-%d %H:%M:%S')}.jpg")  # fmt: skip
                st.success(f"Stored: [{stored.analysis.name}](/history?sha={stored.sha256})", icon=":material/check:")
            except PicMetricError as exc:
                st.error(str(exc), icon=":material/block:")
