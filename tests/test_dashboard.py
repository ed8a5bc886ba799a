"""Every dashboard page through Streamlit's AppTest: real uploads, real models, real storage."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from picmetric.core.samples import samples
from picmetric.service.analyses import AnalysisService
from picmetric.settings import Settings

APP = str(Path(__file__).resolve().parents[1] / "app.py")


@pytest.fixture()
def app(tmp_path, monkeypatch, analyzer):
    monkeypatch.setenv("PICMETRIC_DATA_DIR", str(tmp_path / "data"))
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    assert not at.exception
    return at


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def charts(at: AppTest) -> list[str]:
    return [c.key for c in at.get("plotly_chart")]


def figure(at: AppTest, key: str) -> dict:
    """The plotly figure a chart element sends to the browser."""
    return json.loads(next(c for c in at.get("plotly_chart") if c.key == key).proto.spec)


def upload(at: AppTest, path: Path, mime: str = "image/jpeg") -> None:
    at.file_uploader[0].set_value((path.name, path.read_bytes(), mime))
    at.run()
    assert not at.exception


def test_analyze_page_shows_metrics_images_and_charts(app, zidane_path, analyzer):
    assert "Upload a photo" in app.info[0].value
    calls = analyzer.calls
    upload(app, zidane_path)
    shown = metrics(app)
    assert shown["Objects"] == "4" and shown["Faces"] == "2" and shown["Top label"] == "suit"
    assert shown["Analysis time"].endswith(" ms")
    assert analyzer.calls == calls + 1
    # original and annotated side by side (the boxes drawn in the browser), then the chart; one view at a time
    assert charts(app) == ["analyze-objects-image", "analyze-objects-chart"]
    assert len(app.get("image")) == len(samples()) + 1  # the gallery's tiles and the original
    boxes = [t for t in figure(app, "analyze-objects-image")["data"] if t.get("fill") == "toself"]
    assert sorted(t["name"].split()[0] for t in boxes) == ["person", "person", "tie", "tie"]
    assert all(t["line"]["dash"] == "solid" for t in boxes)  # all at or above the analysis' threshold
    app.session_state["analyze-view"] = "Faces"
    app.run()
    assert charts(app) == ["analyze-faces-image", "analyze-faces-chart"]
    landmarks = [t["name"] for t in figure(app, "analyze-faces-image")["data"] if t.get("mode") == "markers"]
    assert landmarks == ["left eye", "right eye", "nose", "mouth left", "mouth right"]  # hovering a dot names it
    app.session_state["analyze-view"] = "Labels"
    app.run()
    assert any("spreads its probability" in c.value for c in app.caption)  # why Lite's top label looks unsure
    top, second = app.session_state["analyze-evidence"], None
    evidence = [c.value for c in app.caption if "Where the evidence for" in c.value]
    assert len(evidence) == 1  # the top label's class activation map beside the chart
    analysis = next(iter(app.session_state["results"].values())).analysis
    second = int(analysis.classification.class_id[1])
    app.session_state["analyze-evidence"] = second
    app.run()
    assert f"“{analysis.classification.names[1]}”" in next(c.value for c in app.caption if "evidence for" in c.value)
    assert top == int(analysis.classification.class_id[0])
    assert {b.label for b in app.get("download_button")} >= {
        "Objects image",
        "Faces image",
        "JSON",
        "Seed JSON",
        "Objects CSV",
    }


def test_display_thresholds_refilter_without_running_models(app, zidane_path, analyzer):
    upload(app, zidane_path)
    calls = analyzer.calls
    slider = next(s for s in app.sidebar.slider if s.label.startswith("Object confidence"))
    slider.set_value(0.9)
    app.run()
    assert metrics(app)["Objects"] == "1"  # only the 95 % person is left
    classes = app.sidebar.multiselect[0]
    classes.set_value(["tie"])
    slider = next(s for s in app.sidebar.slider if s.label.startswith("Object confidence"))
    slider.set_value(0.25)
    app.run()
    assert metrics(app)["Objects"] == "2"  # the two ties
    assert analyzer.calls == calls


def test_display_thresholds_go_down_to_the_models_floor_without_running_them(app, zidane_path, analyzer):
    """Below the analysis' own threshold the display shows the weaker candidates kept with the result, dashed."""
    upload(app, zidane_path)
    calls = analyzer.calls
    slider = next(s for s in app.sidebar.slider if s.label.startswith("Object confidence"))
    assert (slider.min, slider.value) == (0.05, 0.25)  # the detector's floor; the threshold it ran with
    slider.set_value(0.05).run()
    shown = int(metrics(app)["Objects"])
    assert shown > 4 and analyzer.calls == calls
    boxes = [t for t in figure(app, "analyze-objects-image")["data"] if t.get("fill") == "toself"]
    assert sum(t["line"]["dash"] == "dash" for t in boxes) == shown - 4  # the weaker ones, dashed
    assert any("dashed: below the 25% threshold" in c.value for c in app.caption)
    faces = next(s for s in app.sidebar.slider if s.label.startswith("Face score"))
    assert (faces.min, faces.value) == (0.3, 0.8)


def test_same_photo_again_is_loaded_from_history(app, zidane_path, analyzer):
    upload(app, zidane_path)
    calls = analyzer.calls
    again = AppTest.from_file(APP, default_timeout=180)  # a new browser session, same server
    again.run()
    upload(again, zidane_path)
    assert analyzer.calls == calls
    assert any("loaded from history" in i.value for i in again.info)


def test_analysis_option_change_reanalyses_the_same_photo(app, zidane_path):
    upload(app, zidane_path)
    calls = len(app.session_state["results"])
    app.sidebar.selectbox[0].set_value("mobilenet_v2")
    app.sidebar.slider[0].set_value(0.6)
    app.run()  # a form: nothing is analysed or stored until "Re-analyse"
    assert app.session_state["results"][app.session_state["current"]].analysis.options.classifier != "mobilenet_v2"
    assert len(app.session_state["results"]) == calls
    app.sidebar.selectbox[0].set_value("mobilenet_v2")
    next(b for b in app.button if b.label.startswith("Re-analyse")).click().run()
    assert not app.exception
    assert metrics(app)["Faces"] == "2"
    assert app.session_state["results"][app.session_state["current"]].analysis.options.classifier == "mobilenet_v2"


def test_bad_upload_gets_a_friendly_error_and_nothing_is_stored(app, tmp_path):
    fake = tmp_path / "holiday.jpg"
    fake.write_text("this is a text file pretending to be a photo")
    upload(app, fake)
    assert len(app.error) == 1 and "holiday.jpg: this is not an image" in app.error[0].value  # said once
    app.switch_page("pages/history.py").run()
    assert app.dataframe[0].value.empty


def test_refused_url_gets_a_friendly_error(app):
    app.text_input[0].set_value("http://169.254.169.254/latest/meta-data/")
    app.button[0].click()  # the form's submit button
    app.run()
    assert len(app.error) == 1 and "not a public internet address" in app.error[0].value
    assert not app.get("expandable")  # said once: no red progress box above the message repeating it


def test_sample_gallery_one_click(app):
    app.button(key="sample-bus").click()
    app.run()
    assert metrics(app)["Faces"] == "2" and int(metrics(app)["Objects"]) >= 4


def test_batch_upload_is_queued_followed_and_summarised(app, zidane_path, bus_path):
    """A multi-photo upload becomes a batch of jobs: the page returns at once with one progress bar, and once
    every job finished it shows one table with what each photo holds and a link to it."""
    app.file_uploader[0].set_value([(p.name, p.read_bytes(), "image/jpeg") for p in (zidane_path, bus_path)])
    app.run()
    assert not app.exception
    deadline = time.monotonic() + 120
    while "analysed" not in " ".join(map(str, app.dataframe[0].value["state"])) and time.monotonic() < deadline:
        assert len(app.get("progress")) == 1 and "queued" in app.get("progress")[0].proto.text
        time.sleep(0.5)
        app.run()
    table = app.dataframe[0].value
    assert list(table["file"]) == ["zidane.jpg", "bus.jpg"]
    assert list(table["state"]) == ["analysed", "analysed"] and list(table["faces"]) == [2, 2]
    assert all(link.startswith("/history?sha=") for link in table["open"])
    assert "2 done · 0 running · 0 queued · 0 failed" in app.get("progress")[0].proto.text
    # a gallery of the annotated photos; "Open" shows one large in the result view
    opens = [b for b in app.button if b.label == "Open"]
    assert len(opens) == 2 and len(app.get("image")) >= 2
    opens[1].click().run()
    assert not app.exception
    assert metrics(app)["Faces"] == "2" and app.session_state["current"] == list(app.session_state["results"])[-1]


def test_history_lists_filters_and_opens_an_analysis(app, zidane_path, bus_path):
    upload(app, zidane_path)
    upload(app, bus_path)
    app.switch_page("pages/history.py").run()
    assert not app.exception
    table = app.dataframe[0].value
    assert set(table["name"]) == {"zidane.jpg", "bus.jpg"}
    app.text_input[0].set_value("bus").run()
    assert list(app.dataframe[0].value["name"]) == ["bus.jpg"]
    app.text_input[0].set_value("").run()
    app.number_input[0].set_value(3).run()
    assert app.dataframe[0].value.empty
    assert "No analysis matches these filters." in [c.value for c in app.caption]
    assert list(table["settings"]) == ["defaults", "defaults"]
    app.number_input[0].set_value(0).run()
    today = datetime.now(UTC).date()
    dates = {d.label: d for d in app.date_input}
    dates["From"].set_value(today + timedelta(days=1)).run()  # either end alone filters
    assert app.dataframe[0].value.empty
    dates["From"].set_value(today).run()
    assert len(app.dataframe[0].value) == 2
    dates["To"].set_value(today - timedelta(days=1)).run()
    assert app.dataframe[0].value.empty and "“From” is after “To”" in app.warning[0].value
    dates["To"].set_value(None).run()
    sha = table[table["name"] == "zidane.jpg"]["sha256"].iloc[0]
    app.query_params["sha"] = sha[:10]  # a shared link may carry a prefix (or the seed's md5)
    app.number_input[0].set_value(0).run()
    assert metrics(app)["Faces"] == "2"


def test_how_it_works_walks_through_each_model(app):
    app.switch_page("pages/how_it_works.py").run()
    assert not app.exception
    headers = " ".join(h.value for h in app.header)
    assert "ImageNet classification" in headers and "YOLOv4-tiny" in headers and "MTCNN" in headers
    assert "YuNet" in headers
    text = " ".join(m.value for m in app.markdown)
    assert "(1, 3, 260, 260)" in text and "After NMS" not in text
    assert "P-Net" in text and "77.6" in text
    assert "stride 8: 128×72 cells" in text and "**2 faces**" in text  # zidane.jpg's first YuNet pass, and its faces

    # inside the classifier: the evidence map, a layer's channels, one convolution step with the real numbers
    assert any("Where the evidence for" in c.value for c in app.caption)
    next(b for b in app.get("button_group") if b.label == "Layer").set_value("late").run()
    assert any("1280 channels of 9×9 cells" in c.value for c in app.caption)
    step = next(m.value for m in app.markdown if "ReLU6 →" in m.value)
    computed, checked = re.search(r"ReLU6 → \*\*([\d.]+)\*\* \(ONNX Runtime computed ([\d.]+)", step).groups()
    assert computed == checked
    next(b for b in app.button if b.label == "Next position").click().run()
    assert next(s for s in app.slider if s.label == "Column").value == 61
    next(t for t in app.toggle if t.label == "Play").set_value(True).run()  # the filter slides by itself
    assert next(s for s in app.slider if s.label == "Column").value == 61  # turning it on does not move it
    time.sleep(0.8)
    app.run()  # what the fragment's timer does every 0.8 s
    assert next(s for s in app.slider if s.label == "Column").value == 62
    next(t for t in app.toggle if t.label == "Play").set_value(False).run()

    def objects_now() -> int:
        text = " ".join(m.value for m in app.markdown)
        return int(re.search(r"Here: \*\*(\d+) objects?\*\*", text).group(1))

    default = objects_now()
    walkthrough = re.sub(r"<[^>]+>|\s+", " ", " ".join(m.value for m in app.markdown))  # glossary tags, line breaks
    assert "as on Analyze, in int8: its weights rounded to 7-bit whole numbers" in walkthrough
    next(s for s in app.slider if s.label == "Score threshold").set_value(0.05).run()
    unsure = objects_now()  # the unsure guesses come in
    next(s for s in app.slider if s.label == "NMS overlap (IoU)").set_value(0.9).run()
    loose = objects_now()  # hardly any suppression: overlapping guesses of one object stay
    next(s for s in app.slider if s.label == "Score threshold").set_value(0.95).run()
    assert loose > unsure > default > objects_now(), (loose, unsure, default, objects_now())

    next(b for b in app.button if b.label == "Run every model").click().run()  # the compare-models view
    compared = " ".join(m.value for m in app.markdown)
    assert all(
        title in compared for title in ("EfficientNet-Lite2, int8", "EfficientNet-Lite0, float32", "MobileNetV2")
    )
    app.run()  # kept in the session: still there on the next rerun, without pressing again
    assert "MobileNetV2, float32" in " ".join(m.value for m in app.markdown)


def test_system_page_reset_needs_confirmation(app, zidane_path):
    upload(app, zidane_path)
    app.switch_page("pages/system.py").run()
    assert not app.exception
    assert metrics(app)["Images"] == "1"
    assert any("Broker: none" in note.value for note in app.info)  # the embedded default: jobs on this server
    next(b for b in app.button if b.label == "Reset all data").click().run()  # not typed: nothing happens
    assert metrics(app)["Images"] == "1" and any("Nothing was deleted" in e.value for e in app.error)
    app.text_input[0].set_value("delete everything")  # typed, and the one click commits it and resets
    next(b for b in app.button if b.label == "Reset all data").click().run()
    assert metrics(app)["Images"] == "0"
    assert any("deleted" in s.value for s in app.success)


def test_dashboard_runs_on_postgres_and_s3(tmp_path, monkeypatch, analyzer, seaweed, postgres, zidane_path):
    """Configured through the seed's variable names, as a deployment would be."""

    from picmetric.storage import Repository

    from .conftest import s3_settings

    settings = s3_settings(seaweed, tmp_path, bucket="dashboard-test", database_url=postgres.url)
    Repository(settings).blobs.ensure_bucket()
    monkeypatch.setenv("DATABASE_URL", postgres.url)
    monkeypatch.setenv("S3_BUCKET", "dashboard-test")
    monkeypatch.setenv("S3_KEY", "test-access")
    monkeypatch.setenv("S3_SECRET", "test-secret-value")
    monkeypatch.setenv("PICMETRIC_S3_ENDPOINT_URL", seaweed.endpoint)
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    upload(at, zidane_path)
    assert metrics(at)["Faces"] == "2"
    at.switch_page("pages/system.py").run()
    notes = " ".join(s.value for s in at.success)
    assert "Database: ok · postgresql" in notes and "Object store: ok · S3 bucket dashboard-test" in notes
    assert "test-secret-value" not in notes
    at.text_input[0].set_value("delete everything").run()
    next(b for b in at.button if b.label == "Reset all data").click().run()
    assert metrics(at)["Images"] == "0"


def test_uploaded_bytes_do_not_stay_in_the_session(app, zidane_path):
    """The uploader is emptied after each batch (Streamlit then drops the files); the session keeps results only."""
    upload(app, zidane_path)
    assert not app.file_uploader[0].value
    results = app.session_state["results"]
    assert len(results) == 1

    def holds_bytes(value, depth=0) -> bool:
        if isinstance(value, (bytes, bytearray, memoryview)):
            return len(value) > 100_000
        if depth < 4 and isinstance(value, dict):
            return any(holds_bytes(v, depth + 1) for v in value.values())
        if depth < 4 and hasattr(value, "__dict__"):
            return any(holds_bytes(v, depth + 1) for v in vars(value).values())
        return False

    assert not any(holds_bytes(stored) for stored in results.values())


def test_an_analysis_deleted_in_another_tab_is_not_shown_as_stored(app, tmp_path, zidane_path):
    from picmetric.settings import Settings
    from picmetric.storage import Repository

    upload(app, zidane_path)
    sha = app.session_state["current"]
    assert Repository(Settings(data_dir=tmp_path / "data")).delete(sha)  # e.g. History in another tab
    app.run()
    assert not app.exception and "Faces" not in metrics(app)
    assert any("was deleted from history meanwhile" in w.value for w in app.warning)


def test_samples_and_the_camera_are_stored_with_their_source(app, tmp_path, bus_path):
    from picmetric.settings import Settings
    from picmetric.storage import Repository

    app.button(key="sample-bus").click().run()
    app.camera_input[0].set_value(("photo.jpg", _room(), "image/jpeg"))
    app.run()
    assert not app.exception and metrics(app)["Objects"] != "—"
    repository = Repository(Settings(data_dir=tmp_path / "data"))
    assert {item.source for item in repository.history().items} == {"sample", "camera"}


def _room() -> bytes:
    """A photo as a webcam would send it: a JPEG of a real scene."""
    from .conftest import photo_variants

    return photo_variants(25)[24]


def test_history_tells_apart_analyses_of_one_photo_with_other_settings(app, zidane_path):
    upload(app, zidane_path)
    app.sidebar.selectbox[0].set_value("mobilenet_v2")  # the same photo, re-analysed with another classifier
    next(b for b in app.button if b.label.startswith("Re-analyse")).click().run()
    app.switch_page("pages/history.py").run()
    table = app.dataframe[0].value
    assert list(table["name"]) == ["zidane.jpg", "zidane.jpg"]
    assert sorted(table["settings"]) == ["classifier mobilenet_v2", "defaults"]  # the detector still runs int8


def test_presentation_mode_enlarges_charts_and_photos_and_steps_through_stages(app, zidane_path):
    upload(app, zidane_path)
    normal_chart = figure(app, "analyze-objects-chart")["layout"]
    normal_photo = figure(app, "analyze-objects-image")["layout"]
    app.session_state["presentation"] = True  # the sidebar toggle (AppTest leaves app.py's out of its tree here)
    app.run()
    assert charts(app) == ["analyze-objects-image", "analyze-objects-chart"]  # the annotated photo alone, larger
    assert len(app.get("image")) == len(samples())  # the gallery only
    chart, photo = figure(app, "analyze-objects-chart")["layout"], figure(app, "analyze-objects-image")["layout"]
    assert chart["font"]["size"] >= 18 and chart["height"] > normal_chart.get("height", 320)
    assert photo["height"] == normal_photo["height"]  # one figure: CSS fits it to the screen's height (see below)
    sized = " ".join(h.proto.body for h in app.get("html"))
    assert ".st-key-photo-analyze-objects-presented" in sized and "100vh" in sized  # test_browser measures it
    assert min(tag["font"]["size"] for tag in photo["annotations"]) >= 22
    app.switch_page("pages/how_it_works.py").run()
    assert not app.exception
    assert figure(app, "logits")["layout"]["font"]["size"] >= 18
    stages = [g for g in app.get("button_group") if g.proto.id.endswith("walk-mtcnn-stage")]
    assert len(stages) == 1  # P-Net, R-Net, O-Net one at a time, large


def test_history_delete_confirms_for_one_analysis_and_says_so(app, zidane_path, bus_path):
    upload(app, zidane_path)
    upload(app, bus_path)
    app.switch_page("pages/history.py").run()
    table = app.dataframe[0].value
    zidane = table[table["name"] == "zidane.jpg"]["sha256"].iloc[0]
    app.query_params["sha"] = zidane
    app.run()
    confirm = next(b for b in app.button if b.key == f"confirm-delete-{zidane}")
    confirm.click().run()
    assert not app.exception
    assert any("Deleted zidane.jpg" in s.value for s in app.success)
    assert list(app.dataframe[0].value["name"]) == ["bus.jpg"]
    assert not [b for b in app.button if (b.key or "").startswith("confirm-delete-")]  # nothing else opened


def test_with_an_admin_token_visitors_analyse_and_browse_but_only_the_teacher_deletes(
    tmp_path, monkeypatch, analyzer, zidane_path
):
    monkeypatch.setenv("PICMETRIC_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("PICMETRIC_ADMIN_TOKEN", "teacher-secret")
    visitor = AppTest.from_file(APP, default_timeout=180)
    visitor.run()
    upload(visitor, zidane_path)  # a visitor analyses
    assert metrics(visitor)["Faces"] == "2"
    visitor.switch_page("pages/history.py").run()
    visitor.query_params["sha"] = visitor.dataframe[0].value["sha256"].iloc[0]
    visitor.run()
    assert metrics(visitor)["Faces"] == "2"  # browses
    assert not [b for b in visitor.button if (b.key or "").startswith("confirm-delete-")]  # cannot delete
    visitor.switch_page("pages/system.py").run()
    assert not visitor.exception
    shown = " ".join(x.value for x in [*visitor.success, *visitor.error, *visitor.info])
    assert str(tmp_path) not in shown and "sqlite" not in shown  # no storage addresses
    assert "unlock teacher mode" in shown and not visitor.code  # no log
    assert not [b for b in visitor.button if b.label == "Reset all data"]

    teacher = AppTest.from_file(APP, default_timeout=180)  # another browser session
    teacher.run()
    assert any(t.label == "Admin token" for t in teacher.sidebar.text_input)  # the unlock, in app.py's sidebar
    # what its Unlock sets once the token matches (AppTest reruns only the page, not app.py's sidebar)
    teacher.session_state["teacher"] = True
    teacher.switch_page("pages/system.py").run()
    assert not teacher.exception
    assert [b for b in teacher.button if b.label == "Reset all data"] and teacher.code
    assert "sqlite" in " ".join(s.value for s in teacher.success)
    teacher.switch_page("pages/history.py").run()
    teacher.query_params["sha"] = teacher.dataframe[0].value["sha256"].iloc[0]
    teacher.run()
    assert [b for b in teacher.button if (b.key or "").startswith("confirm-delete-")]


def test_the_teacher_token_is_compared_in_constant_time_and_never_empty():
    from pydantic import SecretStr

    from picmetric.settings import tokens_match

    assert tokens_match("teacher-secret", SecretStr("teacher-secret"))
    assert not tokens_match("a guess", SecretStr("teacher-secret"))
    assert not tokens_match("", SecretStr(""))
    assert not tokens_match(None, SecretStr("teacher-secret"))


def test_the_lesson_walks_through_predict_then_reveal(app):
    """Every step draws; predictions come before reveals; the words explain themselves; a typed box gets its IoU."""
    app.switch_page("pages/lesson.py").run()
    assert not app.exception
    app.selectbox(key="lesson-photo").set_value("bus").run()
    assert 'class="term" title="A grid of numbers' in " ".join(m.value for m in app.markdown)  # "tensor" on hover
    app.number_input(key="lesson-guess-numbers").set_value(200_000).run()
    next(b for b in app.button if b.key == "lesson-reveal-numbers").click().run()
    assert any("3 × 260 × 260 = **202,800** numbers" in s.value and s.value.startswith("Right!") for s in app.success)
    next(b for b in app.button if b.key == "lesson-next").click().run()
    next(b for b in app.button if b.key == "lesson-back").click().run()  # back: the answer stays as it was left
    assert app.number_input(key="lesson-guess-numbers").value == 200_000
    assert any(s.value.startswith("Right!") for s in app.success)
    seen = []
    for _ in range(7):
        next(b for b in app.button if b.key == "lesson-next").click().run()
        assert not app.exception
        step = app.session_state["lesson-step"]
        seen.append(step)
        if step == 4:  # NMS: nothing revealed before the guess
            assert not app.success
            app.number_input(key="lesson-guess-nms").set_value(1).run()
            next(b for b in app.button if b.key == "lesson-reveal-nms").click().run()
            assert any("survive, from" in s.value for s in app.success)
        if step == 5:  # the student's own box, typed: the bus's box from the walkthrough
            for name, value in zip(("x1", "y1", "x2", "y2"), (20, 230, 800, 760), strict=True):
                app.number_input(key=f"lesson-box-{name}").set_value(value).run()
            said = " ".join(s.value for s in app.success)
            assert "overlaps the detector's **bus** with IoU" in said, said
    assert seen == [1, 2, 3, 4, 5, 6, 7]
    assert next(b for b in app.button if b.key == "lesson-next").disabled


def test_a_near_duplicate_is_said_and_more_like_this_lists_the_stored_photos(app, zidane_path, bus_path, tmp_path):
    upload(app, zidane_path)
    upload(app, bus_path)
    copy = tmp_path / "zidane-small.jpg"
    with Image.open(zidane_path) as photo:
        photo.resize((640, 360)).save(copy, "JPEG", quality=50)
    upload(app, copy)
    notice = " ".join(w.value for w in app.warning)
    assert "Near-duplicate of [zidane.jpg]" in notice and "/history?sha=" in notice
    app.session_state["analyze-view"] = "Similar"
    app.run()
    listed = " ".join(m.value for m in app.markdown if "/history?sha=" in m.value)
    assert "zidane.jpg" in listed and "same photo, edited" in listed and "bus.jpg" in listed
    # reopening the original: its copy came after it, and is named so
    app.session_state["current"] = next(
        sha for sha, result in app.session_state["results"].items() if result.analysis.name == "zidane.jpg"
    )
    app.session_state["analyze-view"] = "Objects"
    app.run()
    notice = " ".join(w.value for w in app.warning)
    assert "An edited copy of this photo was stored after it: [zidane-small.jpg]" in notice, notice
    assert "stored before" not in notice


def test_a_class_board_gets_phone_photos_hides_them_and_keeps_the_class_mistakes(
    app, zidane_path, bus_path, tmp_path, analyzer
):
    teacher = app
    teacher.switch_page("pages/board.py").run()
    teacher.text_input[0].set_value("Seeing machines")
    next(b for b in teacher.button if b.label == "Start a class board").click().run()
    assert not teacher.exception
    board_id = teacher.query_params["board"]
    assert any("/join?board=" + board_id in c.value for c in teacher.code)  # the QR code's address, written out
    assert len(teacher.get("image")) >= 1  # the QR code, made here
    phone = AppTest.from_file(APP, default_timeout=180)  # a student's phone: another browser session
    phone.query_params["board"] = board_id
    phone.switch_page("pages/join.py").run()
    assert [t.value for t in phone.title] == ["Seeing machines"]
    phone.file_uploader[0].set_value(("z.jpg", zidane_path.read_bytes(), "image/jpeg"))
    next(b for b in phone.button if b.label == "Send to the board").click().run()
    assert [s.value for s in phone.success] == ["On the board!"], [e.value for e in phone.error]
    phone.file_uploader[0].set_value(("bus.jpg", bus_path.read_bytes(), "image/jpeg"))
    next(b for b in phone.button if b.label == "Send to the board").click().run()
    assert "one photo every 5 seconds" in " ".join(e.value for e in phone.error)  # per-phone rate limit
    teacher.run()
    assert "1 photo from the class" in [h.value for h in teacher.subheader]
    assert any(c.value.startswith("Photo ") and "person" in c.value for c in teacher.caption)
    # the student marks a false box; the museum counts it for the objects model
    which = phone.selectbox(key=next(s.key for s in phone.selectbox if s.key.startswith("what-")))
    which.select_index(next(i for i, o in enumerate(which.options) if o.startswith("tie")))
    next(b for b in phone.button if b.label == "Mark it").click().run()
    assert any("mistake museum" in s.value for s in phone.success)
    # and draws a box around what it missed: the sliders move the box on the photo
    phone.selectbox(key=next(s.key for s in phone.selectbox if s.key.startswith("missed-class-"))).set_value("cup")
    phone.slider(key=next(s.key for s in phone.slider if s.key.startswith("missed-x-"))).set_value((10, 20))
    phone.slider(key=next(s.key for s in phone.slider if s.key.startswith("missed-y-"))).set_value((80, 95))
    next(b for b in phone.button if b.label == "Mark it as missed").click().run()
    assert any("a missed cup" in s.value for s in phone.success), [e.value for e in phone.exception]
    phone.radio(key=next(r.key for r in phone.radio if r.key.startswith("task-"))).set_value("labels")
    phone.radio(key=next(r.key for r in phone.radio if r.key.startswith("kind-"))).set_value("missed")
    next(b for b in phone.button if b.label == "Mark it").click().run()  # the classifier missed something
    teacher.run()
    museum = teacher.dataframe[0].value.set_index("model")
    assert museum.loc["objects", "a false box"] == 1 and museum.loc["objects", "something missed"] == 1
    assert museum.loc["labels", "something missed"] == 1
    next(b for b in teacher.button if b.label == "Export as COCO").click().run()  # the marks, as a dataset
    assert any(b.label == "Download the zip" for b in teacher.get("download_button")), teacher.exception
    next(b for b in teacher.button if b.label == "Hide").click().run()  # the teacher hides it
    assert "0 photos from the class" in [h.value for h in teacher.subheader]
    assert any("off the projected board only" in c.value for c in teacher.caption)  # what hiding does, said
    stored = AnalysisService(Settings(data_dir=tmp_path / "data"), analyzer=analyzer)
    sha = stored.history().items[0].sha256
    next(b for b in teacher.button if b.label.endswith("everywhere")).click().run()  # and deletes it for good
    assert stored.get(sha) is None and not stored.history().items
    missing = AppTest.from_file(APP, default_timeout=180)
    missing.query_params["board"] = "no-such-board"
    missing.switch_page("pages/join.py").run()
    assert "no class board at this address" in " ".join(e.value for e in missing.error)


def test_a_top_label_below_the_floor_is_said_to_be_a_guess(app, tmp_path):
    """Grey noise: the classifier's best label is under 15 %: the page says it is not sure and shows the three best
    guesses with their bars, instead of the label in large type."""
    noise = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (300, 400, 3), np.uint8)).save(noise)
    upload(app, noise, "image/png")
    shown = metrics(app)
    assert shown["Top label"] == "Not sure", shown
    assert any("not sure what this photo shows" in c.value for c in app.caption)
    assert any(key.startswith("not-sure-") for key in charts(app))
    assert any(c.value.startswith("YOLOv4-tiny ·") for c in app.caption)  # the detector that ran, by its name


def test_captions_name_the_detector_that_ran_and_a_guess_as_a_guess():
    from picmetric.core.results import Classification
    from picmetric.interfaces.ui.charts import detector_title, top_label_text

    assert detector_title("yolov4-tiny") == "YOLOv4-tiny" and detector_title("fruit") == "fruit"
    sure = Classification(np.array([1, 2]), np.array([0.45, 0.2], np.float32), ["horse", "ox"], model="m")
    guess = Classification(np.array([2, 1]), np.array([0.05, 0.04], np.float32), ["ox", "horse"], model="m")
    assert top_label_text(sure) == "horse 45%" and top_label_text(guess) == "not sure: ox 5%?"


def test_the_lesson_offers_the_class_photos_and_its_steps_agree(app, zidane_path):
    """A photo analysed on Analyze (or sent to a board) is one the lesson can walk through; the NMS step and the
    drawing step show the same boxes (Analyze's own overlap), so a box NMS dropped never comes back a step later."""
    upload(app, zidane_path)
    sha = app.session_state["current"]
    app.switch_page("pages/lesson.py").run()
    choice = app.selectbox(key="lesson-photo")
    assert "zidane.jpg (upload)" in choice.options
    choice.set_value(f"stored:{sha}").run()
    assert not app.exception
    app.session_state["lesson-step"] = 4  # NMS
    app.run()
    app.number_input(key="lesson-guess-nms").set_value(4).run()
    next(b for b in app.button if b.key == "lesson-reveal-nms").click().run()
    kept = int(re.search(r"\*\*(\d+) box", " ".join(s.value for s in app.success)).group(1))
    next(b for b in app.button if b.key == "lesson-next").click().run()  # the student's own box, on NMS's boxes
    drawn = json.loads(app.get("plotly_chart")[0].proto.spec)["layout"]["shapes"]
    assert len(drawn) == kept == 4, (len(drawn), kept)
    assert all(shape["label"]["font"]["size"] >= 16 for shape in drawn)  # readable from the back of the room
