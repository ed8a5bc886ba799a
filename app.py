"""PicMetric dashboard: navigation only; every page lives in pages/ and calls the picmetric library."""

import streamlit as st

from picmetric.interfaces.ui import FAVICON
from picmetric.interfaces.ui.presentation import presentation_toggle
from picmetric.interfaces.ui.teacher import teacher_sidebar

# a shipped file, not a Material icon name: Streamlit would fetch that icon from fonts.gstatic.com (missing offline)
st.set_page_config(page_title="PicMetric", page_icon=str(FAVICON), layout="wide")

navigation = st.navigation(
    [
        st.Page("pages/analyze.py", title="Analyze", icon=":material/image_search:", default=True),
        st.Page("pages/history.py", title="History", icon=":material/history:", url_path="history"),
        st.Page("pages/video.py", title="Video", icon=":material/movie:", url_path="video"),
        st.Page("pages/evaluate.py", title="Evaluate", icon=":material/fact_check:", url_path="evaluate"),
        st.Page("pages/how_it_works.py", title="How it works", icon=":material/school:", url_path="how-it-works"),
        st.Page("pages/live.py", title="Live camera", icon=":material/videocam:", url_path="live"),
        st.Page("pages/lesson.py", title="Lesson", icon=":material/cast_for_education:", url_path="lesson"),
        st.Page("pages/board.py", title="Class board", icon=":material/co_present:", url_path="board"),
        st.Page("pages/join.py", title="Join a board", icon=":material/qr_code_scanner:", url_path="join"),
        st.Page("pages/system.py", title="System", icon=":material/monitor_heart:", url_path="system"),
    ]
)
presentation_toggle()  # every page: larger type for a projector
teacher_sidebar()  # with an admin token: deleting, reset and system details need it
navigation.run()
