"""The one-call pipeline: concurrency, timings, JSON shapes (PicMetric's and the seed's), options."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from picmetric import AnalysisOptions, InvalidOptionsError, load_image, render, seed_response
from picmetric.core.results import LANDMARK_NAMES

from .conftest import sample_photo


def test_concurrent_and_sequential_runs_agree(analyzer, zidane_path):
    image = load_image(zidane_path)
    together = analyzer.analyze(image, concurrent=True)
    one_by_one = analyzer.analyze(image, concurrent=False)
    np.testing.assert_allclose(together.detections.xyxy, one_by_one.detections.xyxy)
    np.testing.assert_allclose(together.faces.xyxy, one_by_one.faces.xyxy)
    assert together.classification.names == one_by_one.classification.names


def test_analysis_records_timings_versions_and_draws_only_when_asked(analyzer, bus_path):
    image = load_image(bus_path)
    analysis = analyzer.analyze(image)
    assert set(analysis.timings_ms) == {"labels", "objects", "faces", "total"}  # no picture drawn meanwhile
    for value in analysis.timings_ms.values():
        assert value > 0
    assert analysis.timings_ms["total"] >= analysis.timings_ms["faces"]
    assert analysis.model_versions == {
        "labels": "efficientnet_lite2@260-int8w7h",
        "objects": "yolov4-tiny@416-int8w7h",
        "faces": "yunet@2023mar",
    }
    assert analysis.render_kinds == ["objects", "faces"] and analysis.to_dict()["renders"] == ["faces", "objects"]
    for kind in analysis.render_kinds:
        drawn = np.asarray(Image.open(io.BytesIO(render(image, analysis, kind))).convert("RGB"))
        assert drawn.shape == (1080, 810, 3)
        box = analysis.detections.xyxy[0] if kind == "objects" else analysis.faces.xyxy[0]
        corner = np.s_[int(box[1]) - 2 : int(box[1]) + 4, int(box[0]) - 2 : int(box[0]) + 4]
        assert np.abs(drawn[corner].astype(int) - image.pixels[corner]).max() > 60  # the outline is where it says


def test_to_dict_is_plain_json(analyzer, zidane_path):
    data = analyzer.analyze(load_image(zidane_path)).to_dict()
    text = json.dumps(data)
    again = json.loads(text)
    assert again["image"]["width"] == 1280 and again["image"]["md5"]
    assert {o["label"] for o in again["objects"]} >= {"person"}
    assert set(again["faces"][0]["landmarks"]) == set(LANDMARK_NAMES)
    assert len(again["labels"]) == 5


@pytest.mark.parametrize("face_detector", ["yunet", "mtcnn"])
def test_boxes_are_in_original_pixels_when_the_working_copy_is_smaller(analyzer, zidane_path, face_detector):
    from picmetric.settings import Settings

    options = AnalysisOptions(face_detector=face_detector)
    full = analyzer.analyze(load_image(zidane_path), options)
    small = analyzer.analyze(load_image(zidane_path, settings=Settings(working_max_side=640)), options)
    assert small.width == 1280
    best_full = full.faces.xyxy[np.argmax(full.faces.confidence)]
    best_small = small.faces.xyxy[np.argmax(small.faces.confidence)]
    # same face, same place, at half resolution: centres within 12 px, sizes within 10 %
    np.testing.assert_allclose((best_small[:2] + best_small[2:]) / 2, (best_full[:2] + best_full[2:]) / 2, atol=12)
    np.testing.assert_allclose(best_small[2:] - best_small[:2], best_full[2:] - best_full[:2], rtol=0.1)


def test_task_subset_runs_only_those_models(analyzer, zidane_path):
    analysis = analyzer.analyze(load_image(zidane_path), AnalysisOptions(tasks=("faces",)))
    assert analysis.classification is None and analysis.detections is None
    assert len(analysis.faces) == 2
    assert analysis.render_kinds == ["faces"]
    with pytest.raises(ValueError, match="no objects to draw"):
        render(load_image(zidane_path), analysis, "objects")
    assert "labels" not in analysis.timings_ms


def test_seed_shape_field_by_field(analyzer, zidane_path):
    analysis = analyzer.analyze(load_image(zidane_path))
    seed = seed_response(analysis, original_url="o", objects_url="y", faces_url="f")
    assert list(seed) == ["error", "hash", "original", "resnet", "yolov3", "yolov3_source", "faces_source"]
    assert seed["error"] == "" and seed["hash"] == analysis.md5
    assert (seed["original"], seed["yolov3_source"], seed["faces_source"]) == ("o", "y", "f")
    resnet = json.loads(seed["resnet"])  # a JSON document inside a string, as the seed sent it
    assert len(resnet) == 3 and all(isinstance(v, str) and 0 < float(v) <= 1 for v in resnet.values())
    assert all(" " not in label for label in resnet)
    yolo = json.loads(seed["yolov3"])
    assert float(yolo["person"]) == pytest.approx(float(analysis.detections.confidence.max()) * 100, rel=1e-5)


def test_seed_error_shape():
    seed = seed_response(None, error="this is not an image")
    assert seed["error"] == "this is not an image" and seed["hash"] == "" and len(seed) == 7


@pytest.mark.parametrize(
    "bad",
    [
        {"tasks": ()},
        {"classifier": "resnet"},
        {"top_k": 0},
        {"detector_size": 512},
        {"min_confidence": 1.5},
        {"iou_threshold": -0.1},
        {"min_face_size": 5},
        {"render_format": "gif"},
    ],
)
def test_bad_options_are_refused(bad):
    with pytest.raises(InvalidOptionsError):
        AnalysisOptions(**bad)


def test_options_cache_key_is_stable_and_distinguishes():
    assert AnalysisOptions().cache_key == AnalysisOptions().cache_key
    assert AnalysisOptions(tasks=("faces", "labels")).cache_key == AnalysisOptions(tasks=("labels", "faces")).cache_key
    assert AnalysisOptions(min_confidence=0.3).cache_key != AnalysisOptions().cache_key


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"top_k": 0}, "top_k must be between 1 and 20"),
        ({"top_k": True}, "top_k: must be a number"),
        ({"top_k": 2.5}, "fractional part"),
        ({"top_k": float("inf")}, "top_k"),
        ({"min_confidence": float("nan")}, "min_confidence: Input should be a finite number"),
        ({"min_confidence": "high"}, "min_confidence"),
        ({"tasks": [1, 2]}, "tasks"),
        ({"tasks": 3}, "tasks"),
        ({"tasks": "labels,cats"}, "not cats"),
        ({"classifier": ["efficientnet_lite2"]}, "classifier"),
        ({"face_confidence": 3}, "face_confidence must be between 0 and 1"),
        ({"detector_size": 500}, "detector_size must be one of 416, 608"),
    ],
)
def test_options_model_refuses_wrong_types_and_values(values, message):
    with pytest.raises(InvalidOptionsError, match=message):
        AnalysisOptions(**values)


def test_options_accept_form_text_and_round_trip():
    options = AnalysisOptions.from_input({"tasks": "faces,labels", "top_k": "3", "min_confidence": "0.5"})
    with pytest.raises(InvalidOptionsError, match="unknown option 'x'"):  # a typo is refused, not ignored
        AnalysisOptions.from_input({"top_k": "3", "x": "y"})
    assert options.tasks == ("labels", "faces") and options.top_k == 3 and options.min_confidence == 0.5
    assert AnalysisOptions(**options.to_dict()) == options and hash(options) == hash(
        AnalysisOptions(**options.to_dict())
    )
    with pytest.raises(InvalidOptionsError, match="options must be an object"):
        AnalysisOptions.from_input(["top_k", 3])


@pytest.mark.parametrize("face_detector", ["yunet", "mtcnn"])
def test_weaker_candidates_are_what_a_lower_threshold_would_have_found(analyzer, face_detector):
    """The candidates kept below the thresholds are exactly what running the models at the floor adds: the result
    above the threshold is unchanged (NMS is greedy by score), and threshold + weaker = a run at the floor."""
    options = AnalysisOptions(face_detector=face_detector)
    for path in (sample_photo("zidane.jpg"), sample_photo("bus.jpg")):
        image = load_image(path)
        kept = analyzer.analyze(image, options)
        floors = {
            "objects": analyzer.detector().candidate_floor,
            "faces": analyzer.face_detector(face_detector).candidate_floor,
        }
        assert kept.floors == floors and kept.floor("objects") == floors["objects"]
        assert len(kept.weaker_objects) > 0 and (kept.weaker_objects.confidence < options.min_confidence).all()
        assert (kept.weaker_faces.confidence < options.face_score).all()
        assert (kept.weaker_faces.confidence >= floors["faces"]).all()
        low = analyzer.analyze(
            image, AnalysisOptions(face_detector=face_detector, min_confidence=floors["objects"],
                                   face_confidence=floors["faces"]),
        )  # fmt: skip
        for shown, ran in ((kept.objects_from(floors["objects"]), low.detections),
                           (kept.faces_from(floors["faces"]), low.faces)):  # fmt: skip
            order_shown, order_ran = np.argsort(-shown.confidence), np.argsort(-ran.confidence)
            np.testing.assert_allclose(shown.confidence[order_shown], ran.confidence[order_ran], atol=1e-6)
            np.testing.assert_allclose(shown.xyxy[order_shown], ran.xyxy[order_ran], atol=1e-3)
        assert len(kept.objects_from(options.min_confidence)) == len(kept.detections)  # the result itself


def test_a_threshold_below_the_floor_keeps_no_weaker_candidates(analyzer, zidane_path):
    analysis = analyzer.analyze(load_image(zidane_path), AnalysisOptions(min_confidence=0.01, face_confidence=0.1))
    assert len(analysis.weaker_objects) == 0 and len(analysis.weaker_faces) == 0
    assert analysis.floor("objects") == 0.01 and analysis.floor("faces") == 0.1


def test_how_it_works_explains_the_classifier_analyze_runs(analyzer, zidane_path, bus_path):
    """The walkthrough runs the model at the precision Analyze runs (int8 for Lite2): the same top label, the same
    confidence, not the float32 model's."""
    from picmetric.core.explain import explain_classifier

    for path in (zidane_path, bus_path):
        image = load_image(path.read_bytes())
        for options in (
            AnalysisOptions(tasks=["labels"]),
            AnalysisOptions(tasks=["labels"], classifier="mobilenet_v2"),
        ):
            walk = explain_classifier(analyzer, image, options)
            analysis = analyzer.analyze(image, options)
            assert analysis.classification is not None and walk.precision == options.precision
            assert walk.top_names[0] == analysis.classification.names[0]
            assert abs(float(walk.top_probabilities[0]) - float(analysis.classification.confidence[0])) < 1e-4
