"""How it works: a step-by-step walkthrough of the three models on one image, readable on a projector."""

from __future__ import annotations

import time

import streamlit as st

from picmetric import AnalysisOptions, load_image
from picmetric.core.catalog import CLASSIFIERS
from picmetric.core.explain import (
    LAYER_TITLES,
    class_activations,
    compare_models,
    convolution_step,
    explain_classifier,
    explain_detector,
    explain_faces,
    explain_yunet,
    feature_grid,
)
from picmetric.core.samples import samples
from picmetric.interfaces.ui.charts import logits_chart
from picmetric.interfaces.ui.lesson import TERM_STYLE, explained
from picmetric.interfaces.ui.presentation import counted, show_chart, stage_images
from picmetric.interfaces.ui.resources import app_settings, get_analyzer, get_service, working_image

analyzer = get_analyzer()
service = get_service()

choices = {f"sample:{s.key}": s.title for s in samples()}
for sha, stored in st.session_state.get("results", {}).items():
    choices[f"stored:{sha}"] = f"Your photo: {stored.analysis.name or sha[:12]}"
for item in service.history(page_size=30).items:  # any recent photo from History, not only this tab's
    choices.setdefault(f"stored:{item.sha256}", f"History: {item.name or item.sha256[:12]}")
choice = st.sidebar.selectbox("Image", list(choices), format_func=choices.get)
classifier_key = st.sidebar.selectbox("Classifier", list(CLASSIFIERS), format_func=lambda k: CLASSIFIERS[k].title)

if choice.startswith("stored:"):
    image = working_image(service, choice.split(":", 1)[1])
else:
    image = load_image(next(s for s in samples() if f"sample:{s.key}" == choice).path, settings=app_settings())

st.html(TERM_STYLE)  # hover an underlined word for its meaning
st.title("How PicMetric sees a photo")
st.markdown(
    "Three neural networks look at the same photo **at the same time**. Each one first turns the photo into a "
    "grid of numbers of the size it was trained on, then produces raw numbers, which a little arithmetic turns "
    "into the answer you see."
)

st.header("1 · What is in the picture? — ImageNet classification")
walk = explain_classifier(analyzer, image, AnalysisOptions(classifier=classifier_key))  # as Analyze runs it
left, right = st.columns([1, 2])
left.image(
    walk.network_input,
    caption=f"What {walk.spec.title} ({walk.precision}) sees: {walk.tensor_shape[2]}×{walk.tensor_shape[3]} px",
    width="stretch",
)
right.markdown(
    explained(f"""
- **Pre-processing:** the central {walk.spec.input_size / walk.spec.resize_size:.0%} of the photo is cut out and
  resized to {walk.spec.input_size}×{walk.spec.input_size} pixels, then every colour value is rescaled to roughly
  −1…+1. The network receives a tensor of shape `{walk.tensor_shape}` (values {walk.tensor_range[0]:.2f} to
  {walk.tensor_range[1]:.2f}).
- **Raw output:** 1,000 *logits*, one score per ImageNet class. They can be any number.
- **Final output:** *softmax* turns logits into probabilities that add up to 100 %.
- **Accuracy:** {walk.spec.title} names the right class first for **{walk.spec.top1} %** of ImageNet's
  validation photos ({walk.spec.licence}).
"""),
    unsafe_allow_html=True,
)
show_chart(logits_chart(walk.top_names, walk.top_logits, walk.top_probabilities), key="logits")
options = AnalysisOptions(classifier=classifier_key)


@st.fragment
def inside_the_classifier() -> None:
    """Its own fragment: another label or layer redraws this section only."""
    st.subheader("Inside the classifier: why did it say that?")
    evidence_column, layer_column = st.columns(2)
    with evidence_column:
        # the labels (and probabilities) of the model Analyze runs, each with its map
        sure = dict(zip(walk.top_ids, walk.top_probabilities, strict=True))
        maps = {m.class_id: m for m in class_activations(analyzer, image, options, class_ids=walk.top_ids[:3])}
        chosen = st.segmented_control(
            "Evidence for", list(maps), default=next(iter(maps)), key="walk-evidence",
            format_func=lambda i: f"{maps[i].name} {sure[i]:.0%}",
        ) or next(iter(maps))  # fmt: skip
        st.image(maps[chosen].overlay, width="stretch", output_format="JPEG")
        st.caption(
            f"Where the evidence for “{maps[chosen].name}” is (red: most). The last layer scores every spot of the "
            "final feature map for each label; the average of those scores over the square is the label's logit, so "
            "this map is exactly how the network decided (a *class activation map*)."
        )
    with layer_column:
        layer = st.segmented_control(
            "Layer", list(LAYER_TITLES), default="early", key="walk-layer", format_func=str.capitalize
        ) or "early"  # fmt: skip
        grid = feature_grid(analyzer, image, options, layer)
        st.image(grid.picture, width="stretch")
        st.caption(
            f"{layer.capitalize()} layer, {LAYER_TITLES[layer]}: {grid.shape[0]} channels of "
            f"{grid.shape[1]}×{grid.shape[2]} cells, "
            f"the 16 that vary most over this photo shown (bright: the channel responds there). Deeper layers are "
            "coarser and have more channels, each responding to larger, more specific patterns."
        )


inside_the_classifier()


def advance() -> None:
    """One cell to the right (before the rerun draws the slider)."""
    st.session_state["walk-x"] = (st.session_state.get("walk-x", 60) + 1) % 130


PLAYING = bool(st.session_state.get("walk-play"))
PLAY_STEP_S = 0.8


@st.fragment(run_every=PLAY_STEP_S if PLAYING else None)  # playing: the filter slides along by itself
def convolution_walkthrough() -> None:
    """One number of the first layer computed in front of the class, step by step; its own fragment."""
    st.subheader("One step of a convolution, with the real numbers")
    just_started = PLAYING and st.session_state.pop("walk-started", False)  # the run turning Play on: no step
    if PLAYING and not just_started and time.monotonic() - st.session_state.get("walk-moved", 0.0) >= PLAY_STEP_S - 0.1:
        advance()  # a tick of the timer (not the reruns that turning Play on or off causes, however slow)
        st.session_state["walk-moved"] = time.monotonic()
    inspector = analyzer.inspector(classifier_key)
    filters = inspector.first_convolution[0].shape[0]
    controls = st.columns(4)
    number = controls[0].number_input("Filter", 0, filters - 1, 3, key="walk-filter")
    x = controls[1].slider("Column", 0, 129, 60, key="walk-x")
    y = controls[2].slider("Row", 0, 129, 40, key="walk-y")
    with controls[3]:
        st.button("Next position", icon=":material/skip_next:", key="walk-next", on_click=advance)

        def started() -> None:
            st.session_state["walk-moved"] = time.monotonic()  # the first step comes one tick later
            st.session_state["walk-started"] = True

        if st.toggle("Play", key="walk-play", help="Slide the filter along by itself", on_change=started) != PLAYING:
            st.rerun(scope="app")  # the fragment's timer starts or stops with a run of the page
    step = convolution_step(analyzer, image, options, int(number), x, y)
    picture, numbers = st.columns([1, 2])
    picture.image(step.input_picture, caption="The network's input, the 3×3 patch in red", width="stretch")
    picture.image(step.output_picture, caption=f"Filter {step.filter}'s whole output", width="stretch")
    colours = ("red", "green", "blue")
    lines = []
    for channel, colour in enumerate(colours):
        terms = " + ".join(
            f"{p:+.2f}×{w:+.2f}"
            for p, w in zip(step.patch[channel].ravel(), step.weights[channel].ravel(), strict=True)
        )
        lines.append(f"**{colour}**: {terms} = {step.products[channel].sum():+.3f}")
    numbers.markdown(
        "Each output number is 27 multiplications (a 3×3 patch × 3 colours, each by the filter's weight), added up, "
        "plus a bias; then *ReLU6* keeps it between 0 and 6.\n\n"
        + "\n\n".join(lines)
        + f"\n\nSum {float(step.products.sum()):+.3f} + bias {step.bias:+.3f} = **{step.total:+.3f}** → ReLU6 → "
        f"**{step.output:.3f}** (ONNX Runtime computed {step.checked:.3f}: the same)."
    )


convolution_walkthrough()

st.header("2 · Which objects, and where? — YOLOv4-tiny")
QUANTIZED_DETECTOR = (
    ": its weights rounded to 7-bit whole numbers and its layers computed in integers, twice as fast; every box the "
    "float model is at least 40 % sure of comes out in nearly the same place (IoU ≥ 0.87 with the float model's)"
)


@st.fragment
def objects_walkthrough() -> None:
    """Its own fragment: moving the two sliders reruns this section only, live in front of a class."""
    left, right = st.columns([1, 2])
    score_column, overlap_column = st.columns(2)
    score = score_column.slider("Score threshold", 0.05, 0.95, 0.25, 0.05, key="walk-score")
    overlap = overlap_column.slider("NMS overlap (IoU)", 0.1, 0.9, 0.40, 0.05, key="walk-iou")
    walk = explain_detector(analyzer, image, min_confidence=score, iou_threshold=overlap)
    left.image(
        walk.network_input, caption=f"Letterboxed to {walk.tensor_shape[2]}×{walk.tensor_shape[3]} px", width="stretch"
    )
    right.markdown(
        explained(f"""
- **Pre-processing:** the photo is shrunk to fit a {walk.tensor_shape[2]} px square without distortion;
  the empty bands are grey (*letterbox*). Tensor shape `{walk.tensor_shape}`.
- **Raw output:** two grids, `{walk.head_shapes[0]}` and `{walk.head_shapes[1]}`. Every cell guesses
  3 boxes, each with an *objectness* score and 80 class scores: **{walk.raw_boxes:,} guesses** in total,
  {len(walk.before_nms)} of them at least 5 % sure.
- **Thresholding** and **non-maximum suppression (NMS)**, live with the two sliders below: the threshold drops
  unsure guesses; NMS merges overlapping guesses for the same class, keeping the most confident one, and the
  overlap (IoU) decides what counts as "the same object". Here: **{counted(len(walk.after_nms), "object")}**.
- **Accuracy:** 40.2 % AP50 on COCO (the small, fast "tiny" version of YOLOv4). It runs here as on Analyze, in
  {walk.precision}{QUANTIZED_DETECTOR if walk.precision == "int8" else ""}.
"""),
        unsafe_allow_html=True,
    )
    stage_images(
        [
            (
                "Before NMS",
                walk.above_render,
                f"Candidates ≥ {score:.0%}, before NMS: {counted(len(walk.above_threshold), 'box', 'boxes')}",
            ),
            (
                "After NMS",
                walk.after_render,
                f"After NMS at IoU {overlap:.2f}: {counted(len(walk.after_nms), 'object')}",
            ),
        ],
        key="walk-objects-stage",
    )


objects_walkthrough()

st.header("3 · Where are the faces? — YuNet, one small network (the default)")
walk_yunet = explain_yunet(analyzer, image)
pass_lines = "\n".join(
    f"  - pass {i + 1}: the photo at {scale:.0%} → input {size[0]}×{size[1]} px; feature maps "
    + ", ".join(f"stride {s}: {grids[s][0]}×{grids[s][1]} cells ({counted(counts[s], 'candidate')})" for s in grids)
    for i, (scale, size, grids, counts) in enumerate(walk_yunet.passes)
)
st.markdown(
    explained(f"""
- **Pre-processing:** the photo (colours in BGR order, values 0–255, no normalisation) is padded to a multiple of
  32 px. YuNet finds faces of about 10–300 px at its input size, so a second, small pass catches close-ups.
- **Raw output:** three feature maps with strides 8, 16 and 32 px. Every cell gives a *class* score, an
  *objectness* score (face score = √(class × objectness)), a box and 5 landmarks as offsets from the cell:
{pass_lines}
- **Candidates:** **{walk_yunet.raw_candidates}** cells score at least 30 % (first picture).
- **Non-maximum suppression:** overlapping candidates are merged, and those scoring at least 80 % are kept:
  **{counted(walk_yunet.after_nms, "face")}** (second picture).
- **Accuracy:** WIDER FACE validation AP 88.4 % / 86.6 % / 75.0 % on its easy / medium / hard faces (MTCNN:
  about 85 / 82 / 60 %), at a fraction of MTCNN's time.
"""),
    unsafe_allow_html=True,
)
stage_images(
    [
        ("Candidates", walk_yunet.candidates_render, f"Candidates ≥ 30 %: {walk_yunet.raw_candidates}"),
        ("After NMS", walk_yunet.faces_render, f"After NMS, ≥ 80 %: {counted(walk_yunet.after_nms, 'face')}"),
    ],
    key="walk-yunet-stage",
)

st.header("4 · The older way: MTCNN, a cascade of three small networks")
walk_faces = explain_faces(analyzer, image)
st.markdown(
    explained(f"""
- **Image pyramid:** P-Net only sees 12×12 pixel windows, so the photo is shown to it at
  **{len(walk_faces.scales)} sizes**, from {walk_faces.pyramid_sizes[0][0]}×{walk_faces.pyramid_sizes[0][1]} down
  to {walk_faces.pyramid_sizes[-1][0]}×{walk_faces.pyramid_sizes[-1][1]} px: large faces become small enough to fit.
- **P-Net** (proposal network) marks every window that might be a face: **{walk_faces.stage_counts["pnet"]}
  candidates**.
- **R-Net** (refine network) looks at each candidate at 24×24 px and rejects most:
  **{walk_faces.stage_counts["rnet"]} left**.
- **O-Net** (output network) looks at 48×48 px, gives the final box, a score and **5 landmarks** (eyes, nose,
  mouth corners): **{counted(walk_faces.stage_counts["onet"], "face")}**.
- **Accuracy:** about 95 % of faces found on the FDDB benchmark (Zhang et al., 2016).
"""),
    unsafe_allow_html=True,
)
stage_images(
    [
        (step, walk_faces.stage_renders[stage], f"{title}: {walk_faces.stage_counts[stage]}")
        for step, stage, title in (
            ("P-Net", "pnet", "P-Net proposals"),
            ("R-Net", "rnet", "after R-Net"),
            ("O-Net", "onet", "after O-Net"),
        )
    ],
    key="walk-mtcnn-stage",
)

st.header("5 · Compare the models on this photo")
st.caption("Every classifier and both face detectors on the same photo, side by side (each run once to warm up).")
compared = st.session_state.setdefault("compared", {})  # image choice -> results, kept across reruns
if st.button("Run every model", icon=":material/compare:"):
    with st.spinner("Running every model…"):
        compared[choice] = compare_models(analyzer, image)
if choice in compared:
    classifier_runs, detector_runs = compared[choice]
    for column, run in zip(st.columns(len(classifier_runs)), classifier_runs, strict=True):
        column.markdown(f"**{run.title}** · {run.milliseconds:.0f} ms\n\n" + "\n".join(f"- {s}" for s in run.summary))
    for column, run in zip(st.columns(len(detector_runs)), detector_runs, strict=True):
        column.image(run.render, caption=f"{run.title} · {run.summary[0]} · {run.milliseconds:.0f} ms", width="stretch")
