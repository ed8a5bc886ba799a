"""Evaluate: how right each model is on labelled photos, side by side."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
import streamlit as st

from picmetric import PicMetricError
from picmetric.core.samples import SAMPLE_DATASETS, SAMPLE_OBJECTS
from picmetric.interfaces.ui.evaluation import (
    cached_mistakes,
    comparison_table,
    confusion_figure,
    get_evaluation,
    pr_figure,
    show_comparison,
)
from picmetric.interfaces.ui.presentation import show_chart
from picmetric.service.evaluation import Evaluation

evaluation = get_evaluation()
datasets = evaluation.datasets
st.title("Evaluate")
st.caption(
    "How right is each model? Pick labelled photos and models: every photo is analysed once (as jobs), then "
    "scored against its labels the way COCO scores detectors."
)

for sample in SAMPLE_DATASETS:  # the page's default works with no file at hand
    datasets.add_sample(sample)
kept = datasets.kept()
names = [d.name for d in kept]
with st.sidebar:
    chosen_name = st.selectbox("Dataset", names, index=names.index(SAMPLE_OBJECTS), key="evaluate-dataset")
    dataset = next(d for d in kept if d.name == chosen_name)
    choices = evaluation.models(dataset.task)
    titles = [m.title for m in choices]
    picked = st.multiselect("Models", titles, default=titles[:2], key=f"evaluate-models-{dataset.task}")
    with st.expander("Add a dataset", icon=":material/upload:"):
        st.caption(
            "A zip of COCO (annotations.json + images), YOLO (images/, labels/, data.yaml), Pascal VOC (.xml)"
            " or ImageFolder (a folder per ImageNet class, by name or WordNet id)."
        )
        upload = st.file_uploader("Dataset zip", type=["zip"], key="evaluate-upload")
        new_name = st.text_input("Name", value=Path(upload.name).stem if upload else "", key="evaluate-new-name")
        if st.button("Add", disabled=upload is None or not new_name, key="evaluate-add") and upload is not None:
            with tempfile.TemporaryDirectory() as folder, st.spinner("Checking every photo and box…"):
                path = Path(folder, "dataset.zip")
                path.write_bytes(upload.getvalue())
                try:
                    datasets.add(new_name, path)
                    st.session_state["evaluate-dataset"] = new_name
                    st.rerun()
                except PicMetricError as exc:
                    st.error(str(exc), icon=":material/error:")

st.subheader(f"{dataset.name}: {dataset.photo_count} photos, {len(dataset.categories)} categories")
for note in dataset.notes[:5]:
    st.caption(f"Note: {note}")

models = [m for m in choices if m.title in picked]
results: list[Evaluation] = []
key_of = {m.title: f"evaluation:{dataset.name}:{dataset.created_at.isoformat()}:{m.title}" for m in models}
missing = [m for m in models if key_of[m.title] not in st.session_state]
if models and missing and st.button(f"Evaluate {len(missing)} model(s)", type="primary", icon=":material/play_arrow:"):
    with st.status("Evaluating…", expanded=True) as status:
        for model in missing:
            try:
                run = evaluation.start(dataset.name, model)
                bar = st.progress(0.0, text=f"{model.title}: starting")

                def report(done: int, total: int, bar=bar, title=model.title) -> None:
                    bar.progress(done / max(total, 1), text=f"{title}: {done} of {total} photos analysed")

                st.session_state[key_of[model.title]] = evaluation.finish(run, report)
            except PicMetricError as exc:
                status.update(label=f"{model.title}: {exc}", state="error")
                st.stop()
        status.update(label="Evaluated", state="complete", expanded=False)
    st.rerun()  # the button goes: every picked model has its result
results = [st.session_state[key_of[m.title]] for m in models if key_of[m.title] in st.session_state]
if not models:
    st.info("Pick one or more models in the sidebar.", icon=":material/tune:")
elif not results:
    st.info("Press **Evaluate**: photos analysed before are not analysed again.", icon=":material/play_arrow:")
    st.stop()

with st.expander("Categories and the model classes they were matched to", icon=":material/join:"):
    first = results[0]
    table = pd.DataFrame(
        {
            "category": list(first.matches),
            "model class": [m or "" for m in first.matches.values()],
            "means (your synonym)": [dataset.synonyms.get(c, "") for c in first.matches],
        }
    )
    edited = st.data_editor(table, disabled=["category", "model class"], hide_index=True, key="evaluate-synonyms")
    if st.button("Save synonyms and evaluate again"):
        datasets.set_synonyms(dataset.name, dict(zip(edited["category"], edited["means (your synonym)"], strict=True)))
        for model in models:
            st.session_state.pop(key_of[model.title], None)
        st.rerun()
    if first.unmatched:
        st.warning(f"Not scored (no such model class): {', '.join(first.unmatched)}", icon=":material/warning:")


@st.fragment
def detection_panels(results: list[Evaluation]) -> None:
    """Everything that moves with the confidence slider: no model runs again, the matching is reused."""
    threshold = st.slider(
        "Confidence threshold",
        0.05,
        0.95,
        results[0].threshold,
        0.05,
        key="evaluate-threshold",
        help="Precision, recall, the confusion matrix and the worst photos at this confidence; "
        "mAP counts every box down to 0.05.",
    )
    show_comparison(comparison_table(results, threshold))
    names = results[0].categories
    scored = sorted({k for r in results if r.detection for k in r.detection.ap_per_class})
    left, right = st.columns(2)
    with left:
        pick = st.selectbox("Class", [names[k] for k in scored], key="evaluate-pr-class")
        if pick is not None:
            show_chart(pr_figure(results, names.index(pick), pick), key="evaluate-pr")
    with right:
        model = st.selectbox("Model", [r.model.title for r in results], key="evaluate-confusion-model")
        shown = next(r for r in results if r.model.title == model)
        labels = [*names, "background"]
        show_chart(
            confusion_figure(shown.confusion(threshold), labels, labels, f"Confusion at {threshold:.2f} (IoU 0.5)"),
            key="evaluate-confusion",
        )
    st.subheader(f"Worst photos for {shown.model.title}")
    st.caption("Solid red: a false box. Dashed orange: a missed object. Open one in Analyze for the full analysis.")
    worst = [e for e in shown.photo_errors(threshold) if e.count][:6]
    if not worst:
        st.success("No false box and no missed object at this threshold.", icon=":material/check_circle:")
    for row_start in range(0, len(worst), 3):
        for column, errors in zip(st.columns(3), worst[row_start : row_start + 3], strict=False):
            assert shown.matching is not None
            picture = evaluation.service.image(errors.photo.image.sha256)
            if picture is None:
                continue
            false = [
                (names[int(shown.matching.predictions.class_id[i])], shown.matching.predictions.xyxy[i])
                for i in errors.false
            ]
            missed = [
                (names[int(shown.matching.truth.class_id[i])], shown.matching.truth.xyxy[i]) for i in errors.missed
            ]
            column.image(
                cached_mistakes(
                    errors.photo.image.sha256, threshold, shown.model.title, picture.content, false, missed
                ),
                width="stretch",
            )
            column.markdown(
                f"**{errors.photo.file_name}** · {len(errors.false)} false, {len(errors.missed)} missed "
                f"· [open](/?sha={errors.photo.image.sha256})"
            )


def label_panels(results: list[Evaluation]) -> None:
    show_comparison(comparison_table(results, 0.0))
    names = results[0].categories
    accuracy = pd.DataFrame(
        {r.model.title: {names[k]: v for k, v in (r.labels.per_class if r.labels else {}).items()} for r in results}
    )
    st.bar_chart(accuracy, horizontal=True, stack=False, y_label="", x_label="accuracy per class")
    model = st.selectbox("Model", [r.model.title for r in results], key="evaluate-label-model")
    shown = next(r for r in results if r.model.title == model)
    assert shown.labels is not None
    show_chart(
        confusion_figure(shown.labels.confusion, names, [*names, "another class"], "Confusion (top-1)"),
        key="evaluate-label-confusion",
    )
    wrong = [(p, a) for p, a in zip(shown.photos, shown.answers, strict=True) if a and a[0] != p.label]
    if wrong:
        st.subheader("Photos it got wrong")
        for column, (photo, answers) in zip(st.columns(min(4, len(wrong))), wrong[:4], strict=False):
            picture = evaluation.service.image(photo.image.sha256, "thumbnail")
            if picture is not None:
                column.image(picture.content, width="stretch")
            column.markdown(f"truth **{photo.label}**, said **{answers[0]}** · [open](/?sha={photo.image.sha256})")


if results and dataset.task == "objects":
    detection_panels(results)
elif results:
    label_panels(results)
if results and any(r.failed for r in results):
    st.warning(
        "Not analysed: " + ", ".join(sorted({f for r in results for f in r.failed})[:10]), icon=":material/error:"
    )
