"""Lesson: a guided story through the three models on one photo; predict, then reveal, one step at a time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from picmetric import AnalysisOptions, load_image
from picmetric.core.explain import class_activations, explain_classifier, explain_detector, explain_yunet
from picmetric.core.samples import samples
from picmetric.interfaces.ui.charts import logits_chart
from picmetric.interfaces.ui.lesson import TERM_STYLE, box_iou, explained, verdict
from picmetric.interfaces.ui.presentation import counted, show_chart
from picmetric.interfaces.ui.resources import app_settings, browser_jpeg, get_analyzer, get_service, image_src

STEPS = ("numbers", "labels", "evidence", "guesses", "nms", "your box", "faces", "done")
#: the overlap NMS drops at: Analyze's own, so the boxes each step shows and counts are the ones Analyze draws
NMS_IOU = AnalysisOptions().iou_threshold
analyzer = get_analyzer()
service = get_service()
choices = {s.key: s.title for s in samples()}
# the class's own photos too: the newest in History (a board's photos among them)
choices |= {
    f"stored:{i.sha256}": f"{i.name or i.sha256[:12]} ({i.source})" for i in service.history(page_size=12).items
}
sample_key = st.sidebar.selectbox("Photo for the lesson", list(choices), format_func=choices.get, key="lesson-photo")
if sample_key.startswith("stored:"):
    stored_photo = service.image(sample_key.removeprefix("stored:"))
    if stored_photo is None:
        st.warning("That photo was deleted from History: choose another one.", icon=":material/search_off:")
        st.stop()
    source: bytes | Path = stored_photo.content
else:
    source = next(s for s in samples() if s.key == sample_key).path
image = load_image(source, settings=app_settings(), name=choices[sample_key])
step = st.session_state.setdefault("lesson-step", 0)
st.html(TERM_STYLE)
st.title("Lesson: how a computer sees a photo")
st.progress((step + 1) / len(STEPS), text=f"Step {step + 1} of {len(STEPS)} · hover an underlined word for its meaning")


def say(text: str) -> None:
    st.markdown(explained(text), unsafe_allow_html=True)


def kept(widget: str, default: object) -> None:
    """A step's answer as the student left it: Streamlit forgets a widget's value while its step is not shown, so
    it is kept beside it and given back when the student comes back (Next, then Back)."""
    if widget not in st.session_state:
        st.session_state[widget] = st.session_state.get(f"{widget}-kept", default)


def keep(widget: str) -> None:
    st.session_state[f"{widget}-kept"] = st.session_state.get(widget)


def predicted(question: str, key: str, *, low: int = 0, high: int = 10_000_000) -> int | None:
    """A number the student commits to before the reveal; None until they press Reveal."""
    kept(f"lesson-guess-{key}", low)
    guess = st.number_input(question, low, high, key=f"lesson-guess-{key}")
    keep(f"lesson-guess-{key}")
    if st.button("Reveal", icon=":material/visibility:", key=f"lesson-reveal-{key}") or st.session_state.get(
        f"lesson-revealed-{key}"
    ):
        st.session_state[f"lesson-revealed-{key}"] = True
        return int(guess)
    return None


def reveal(guess: int, truth: int, what: str, tolerance: int = 0) -> None:
    st.success(f"{verdict(guess, truth, tolerance)} {what}", icon=":material/lightbulb:")


stage = STEPS[step]
photo_column, story_column = st.columns([3, 2])
if stage == "numbers":
    photo_column.image(browser_jpeg(image), width="stretch")
    with story_column:
        walk = explain_classifier(analyzer, image, AnalysisOptions())
        side = walk.tensor_shape[2]
        say(
            "To a neural network this photo is only numbers: every pixel is three numbers (red, green, blue). "
            f"The classifier first cuts out the middle of the photo and shrinks it to {side}×{side} pixels; "
            "the result is a tensor."
        )
        guess = predicted(f"How many numbers does the classifier get for a {side}×{side} colour picture?", "numbers")
        if guess is not None:
            reveal(
                guess, 3 * side * side, f"3 × {side} × {side} = **{3 * side * side:,}** numbers.", 3 * side * side // 20
            )
            st.image(walk.network_input, caption=f"What the classifier sees: {side}×{side}", width=260)
elif stage == "labels":
    walk = explain_classifier(analyzer, image, AnalysisOptions())
    photo_column.image(browser_jpeg(image), width="stretch")
    with story_column:
        say(
            "Layer after layer of convolutions turn those numbers into 1,000 logits, one per ImageNet class; "
            "softmax turns them into probabilities."
        )
        options = list(dict.fromkeys([*walk.top_names[:3], "goldfish"]))
        kept("lesson-label", None)
        choice = st.radio("What will its top label be?", sorted(options), key="lesson-label")
        keep("lesson-label")
        if choice is not None:
            top = walk.top_names[0]
            right = choice == top
            st.success(("Right! " if right else f"Not this time: it says **{top}**. ") + f"{top}: "
                       f"{walk.top_probabilities[0]:.0%} sure.", icon=":material/lightbulb:")  # fmt: skip
            show_chart(logits_chart(walk.top_names, walk.top_logits, walk.top_probabilities), key="lesson-logits")
elif stage == "evidence":
    top_id = explain_classifier(analyzer, image, AnalysisOptions()).top_ids[0]  # the label the last step revealed
    maps = class_activations(analyzer, image, AnalysisOptions(), class_ids=[top_id])
    photo_column.image(maps[0].overlay, width="stretch", output_format="JPEG")
    with story_column:
        say(
            f"Why “{maps[0].name}”? Its class activation map shows how much each spot of the photo added to the "
            "label's score: red added most. The last feature map has one cell per 32×32 pixels, so the map is "
            "coarse, but it is exactly the network's own arithmetic."
        )
        say("Does the red sit on the thing you would have looked at? When it does not, the network was right for the "
            "wrong reasons (or wrong).")  # fmt: skip
elif stage in ("guesses", "nms"):
    walk = explain_detector(analyzer, image, min_confidence=0.25, iou_threshold=NMS_IOU)
    iou = NMS_IOU
    with story_column:
        if stage == "guesses":
            say(
                "The object detector (YOLOv4-tiny) letterboxes the photo into a 416 px square and lays two grids over "
                "it. Every cell makes 3 guesses from anchor shapes, each with an objectness score and 80 class scores."
            )
            guess = predicted("How many boxes does it guess in all, before any is thrown away?", "guesses")
            if guess is not None:
                reveal(guess, walk.raw_boxes, f"**{walk.raw_boxes:,}** guesses; {len(walk.above_threshold)} of them "
                       "are at least 25 % sure (the threshold).", walk.raw_boxes // 10)  # fmt: skip
            shown = walk.above_render
        else:
            say(
                f"Many of the sure guesses are the same object seen by neighbouring cells. NMS keeps the most "
                f"confident box and drops every box that overlaps it by more than an IoU of {iou}."
            )
            guess = predicted(f"How many boxes survive NMS at IoU {iou}?", "nms", high=1_000)
            shown = walk.above_render
            if guess is not None:
                reveal(guess, len(walk.after_nms), f"**{counted(len(walk.after_nms), 'box', 'boxes')}** survive, "
                       f"from {len(walk.above_threshold)}.")  # fmt: skip
                shown = walk.after_render
    photo_column.image(shown, width="stretch", output_format="JPEG")
elif stage == "your box":
    walk = explain_detector(analyzer, image, min_confidence=0.25, iou_threshold=NMS_IOU)  # the boxes NMS kept
    height, width = image.pixels.shape[:2]
    with story_column:
        say(
            "IoU is how NMS (and every benchmark) decides whether two boxes mean the same object. Draw a box around "
            "an object on the photo (drag on it), or type its corners, and see its IoU with the detector's box."
        )
        corners = st.columns(4)
        typed = [corners[i].number_input(n, 0, [width, height][i % 2], 0, key=f"lesson-box-{n}")
                 for i, n in enumerate(("x1", "y1", "x2", "y2"))]  # fmt: skip
    figure = go.Figure(go.Scatter(
        x=np.tile(np.linspace(0, width, 40), 30), y=np.repeat(np.linspace(0, height, 30), 40), mode="markers",
        marker={"opacity": 0}, hoverinfo="skip", showlegend=False,
    ))  # fmt: skip
    figure.add_layout_image(source=image_src(image, "lesson-draw"), x=0, y=0, sizex=width, sizey=height, xref="x",
                            yref="y", sizing="stretch", layer="below")  # fmt: skip
    for (x1, y1, x2, y2), label in zip(walk.after_nms.xyxy, walk.after_nms.labels, strict=True):
        figure.add_shape(type="rect", x0=x1, y0=y1, x1=x2, y1=y2, line={"color": "#16a34a", "width": 3}, label={
            "text": label, "textposition": "top left", "font": {"color": "#16a34a", "size": 18}})  # fmt: skip
    figure.update_xaxes(range=[0, width], visible=False)
    figure.update_yaxes(range=[height, 0], visible=False, scaleanchor="x")
    # as tall as the photo is at the column's width: no empty bands to drag in
    figure.update_layout(dragmode="select", margin={"l": 0, "r": 0, "t": 0, "b": 0},
                         height=int(np.clip(640 * height / width, 240, 640)))  # fmt: skip
    with photo_column:
        event = st.plotly_chart(figure, on_select="rerun", selection_mode="box", key="lesson-draw", width="stretch")
    drawn = event.selection.get("box", []) if event else []
    box = None
    if drawn:
        xs, ys = np.clip(drawn[0]["x"], 0, width), np.clip(drawn[0]["y"], 0, height)  # the part on the photo
        box = (float(min(xs)), float(min(ys)), float(max(xs)), float(max(ys)))
    elif typed[2] > typed[0] and typed[3] > typed[1]:
        box = tuple(float(v) for v in typed)
    if box is not None:
        overlaps = box_iou(box, walk.after_nms.xyxy)
        with story_column:
            if len(overlaps) and overlaps.max() > 0:
                best = int(overlaps.argmax())
                same = (
                    "NMS would call these the same object" if overlaps[best] > NMS_IOU else
                    "two different objects to NMS"
                )  # fmt: skip
                st.success(f"Your box overlaps the detector's **{walk.after_nms.labels[best]}** with IoU "
                           f"**{overlaps[best]:.2f}**: {same}.", icon=":material/crop_free:")  # fmt: skip
            else:
                st.info("Your box overlaps none of the detector's boxes (IoU 0).", icon=":material/crop_free:")
elif stage == "faces":
    walk_faces = explain_yunet(analyzer, image)
    with story_column:
        say(
            "The face detector (YuNet) is a third network: it reads the photo in BGR order at three strides and "
            "places five landmarks on every face it finds."
        )
        guess = predicted("How many faces will it find?", "faces", high=1_000)
        shown = image.pixels
        if guess is not None:
            reveal(guess, walk_faces.after_nms, f"**{counted(walk_faces.after_nms, 'face')}**, from "
                   f"{walk_faces.raw_candidates} candidates.")  # fmt: skip
            shown = walk_faces.faces_render
    photo_column.image(shown, width="stretch", output_format="JPEG")
else:
    say(
        "That is the whole trip: numbers in, convolutions, logits and softmax for the labels; anchors, thresholds and "
        "NMS for the objects; a third network for faces and their landmarks. The How it works page shows every "
        "step with sliders; Analyze runs all three on your own photo."
    )

back, forward = st.columns(2)
if back.button("Back", icon=":material/arrow_back:", disabled=step == 0, key="lesson-back", width="stretch"):
    st.session_state["lesson-step"] = step - 1
    st.rerun()
if forward.button("Next", icon=":material/arrow_forward:", type="primary", disabled=step == len(STEPS) - 1,
                  key="lesson-next", width="stretch"):  # fmt: skip
    st.session_state["lesson-step"] = step + 1
    st.rerun()
