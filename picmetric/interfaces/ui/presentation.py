"""Presentation mode, for a projector: larger text, metrics and chart fonts on every page, and step-by-step
stage images. One toggle in the sidebar (app.py), kept in the session across pages."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from picmetric.interfaces.ui.charts import BASE_TAG_FONT

PRESENTATION_KEY = "presentation"
#: the width a photo's figure is made for: CSS then sizes it to its half of the page, or, when presenting, to the
#: screen's height (plotly stretches a figure to its container, never shrinks one below its own size)
PHOTO_WIDTH = 420
#: how much larger chart fonts and chart heights get in presentation mode
CHART_SCALE = 1.4
#: what sits above and below the photo of a result when presenting (its name, the numbers, the view buttons, the
#: caption), measured at 1280x720 and 1920x1080: the photo takes the rest of the screen's height
PRESENTED_CHROME_PX = 370
_STYLE = """<style>
.stMainBlockContainer {padding-top: 2rem !important;}
.stMainBlockContainer [data-testid="stMetricValue"] > div {white-space: normal !important; overflow: visible !important;
  text-overflow: clip !important;}
.stMainBlockContainer p:not([data-testid="stMetricValue"] p), .stMainBlockContainer li,
.stMainBlockContainer label p,
.stMainBlockContainer [data-testid="stCaptionContainer"] {font-size: 1.35rem !important; line-height: 1.55;}
.stMainBlockContainer h1 {font-size: 3.2rem !important;}
.stMainBlockContainer h2 {font-size: 2.5rem !important;}
.stMainBlockContainer h3 {font-size: 2rem !important;}
.stMainBlockContainer [data-testid="stMetricValue"], .stMainBlockContainer [data-testid="stMetricValue"] * {
  font-size: 3rem !important; line-height: 1.2;}
.stMainBlockContainer [data-testid="stMetricLabel"] p {font-size: 1.35rem !important;}
.stMainBlockContainer code {font-size: 1.15rem !important;}
.stMainBlockContainer input, .stMainBlockContainer textarea, .stMainBlockContainer [data-baseweb="select"] *,
.stMainBlockContainer button p, .stMainBlockContainer [data-testid="stTable"] td,
.stMainBlockContainer [data-testid="stTable"] th {font-size: 1.35rem !important;}
.stMainBlockContainer [data-testid="stImage"] img {max-height: 80vh; width: auto !important; max-width: 100%;
  margin: 0 auto; display: block;}
</style>"""


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """ "1 object", "2 objects", "0 faces": the number with its noun in the right number."""
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


def presenting() -> bool:
    return bool(st.session_state.get(PRESENTATION_KEY, False))


def presentation_toggle() -> None:
    """The sidebar switch, and the larger type while it is on. The choice is kept under its own key, which
    Streamlit never clears the way it clears a widget's state on a run that does not draw the widget."""

    def keep() -> None:
        st.session_state[PRESENTATION_KEY] = on = st.session_state[f"{PRESENTATION_KEY}-toggle"]
        st.session_state["presentation-collapse-sidebar"] = on  # once, as it turns on: the room sees the page

    st.sidebar.toggle(
        "Presentation mode", value=presenting(), key=f"{PRESENTATION_KEY}-toggle", on_change=keep,
        help="For a projector: larger text, numbers and charts on every page, stage images one at a time",
    )  # fmt: skip
    if presenting():
        st.html(_STYLE)
    if st.session_state.pop("presentation-collapse-sidebar", False):
        script_in_page(
            "const button = window.parent.document.querySelector('[data-testid=\"stSidebarCollapseButton\"] button');"
            "if (button) button.click();"
        )


def script_in_page(script: str) -> None:
    """Run a few lines of our own JavaScript against the page (an invisible same-origin iframe)."""
    key = f"page-script-{hashlib.sha1(script.encode()).hexdigest()[:12]}"
    with st.container(key=key):  # out of the layout's flow: no gap where it sits
        st.html(f"<style>.st-key-{key} {{position: absolute; width: 0; height: 0; overflow: hidden;}}</style>")
        st.iframe(f"<script>{script}</script>", height=1)


#: box tags on a presented photo: readable from the back of a room on a 1280x720 projector (22 px)
PRESENTED_TAG_FONT = 22


def tag_font() -> int:
    """The size of box tags on photos drawn in the browser."""
    return PRESENTED_TAG_FONT if presenting() else BASE_TAG_FONT


def show_chart(figure: go.Figure, key: str, photo: bool = False, fill: bool = False) -> None:
    """A plotly chart, larger in presentation mode. A ``photo`` (sized for the mode already) keeps plotly's
    toolbar, to zoom in; charts drop it, since on a phone it would cover their title. ``fill``: as tall as its
    container (one whose shape CSS sets)."""
    if presenting() and not photo:
        figure.update_layout(
            font_size=round(14 * CHART_SCALE),
            title_font_size=round(18 * CHART_SCALE),
            height=round((figure.layout.height or 320) * CHART_SCALE),
        )
        figure.update_annotations(font_size=round(12 * CHART_SCALE))
        figure.update_traces(textfont_size=round(13 * CHART_SCALE), selector=dict(type="bar"))
        # class names and numbers on the axes too: they are what the back row reads
        figure.update_xaxes(tickfont_size=round(14 * CHART_SCALE), title_font_size=round(14 * CHART_SCALE))
        figure.update_yaxes(tickfont_size=round(14 * CHART_SCALE), title_font_size=round(14 * CHART_SCALE))
    st.plotly_chart(
        figure, key=key, width="stretch", height="stretch" if fill else "content",
        config={"displayModeBar": "hover" if photo else False, "displaylogo": False, "scrollZoom": False},
    )  # fmt: skip


def stage_images(stages: Sequence[tuple[str, np.ndarray, str]], key: str) -> None:
    """Images of successive stages, each (step name, image, caption): side by side, or, in presentation mode, one
    large image at a time with a control to step through them in front of a class."""
    if not presenting():
        with st.container(key=f"{key}-row"):  # the sliders above and these images fit one 720 px screen
            st.html(
                f"<style>.st-key-{key}-row img {{max-height: 60vh; width: auto !important; max-width: 100%;}}</style>"
            )
            for column, (_, image, caption) in zip(st.columns(len(stages)), stages, strict=True):
                column.image(image, caption=caption, width="stretch")
        return
    steps = [step for step, _, _ in stages]
    chosen = st.segmented_control("Stage", steps, default=steps[0], key=key, label_visibility="collapsed")
    _, image, caption = stages[steps.index(chosen) if chosen in steps else 0]
    portrait = image.shape[0] > image.shape[1]
    holder = st.columns([1, 2, 1] if portrait else [1, 8, 1])[1]  # as large as fits a 16:9 screen
    holder.image(image, caption=caption, width="stretch")
