"""Evaluate: the scorer equals pycocotools, datasets in four formats read the same truth, bad datasets are refused
with nothing kept, and the CLI, the API and the page measure the real models on the shipped sample."""

from __future__ import annotations

import io
import json
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from streamlit.testing.v1 import AppTest

from benchmarks.bench_scoring import coco_inputs, reference
from picmetric import PicMetricError
from picmetric.core.datasets import MAX_ANNOTATIONS, DatasetError, read_dataset
from picmetric.core.samples import SAMPLE_LABELS, SAMPLE_OBJECTS, sample_dataset, sample_photo_path
from picmetric.core.scoring import BoxTable, at_threshold, coco_metrics, label_metrics, match
from picmetric.interfaces.api.app import create_app
from picmetric.interfaces.cli import main
from picmetric.service.datasets import DatasetService
from picmetric.service.evaluation import EvaluationService
from picmetric.service.jobs import JobService
from picmetric.settings import Settings

from .conftest import ROOT

HAND_DRAWN = ROOT / "picmetric" / "core" / "sample_data" / "hand-drawn-boxes.json"


def _random_boxes(seed: int, photos: int = 120, classes: int = 6) -> tuple[BoxTable, BoxTable]:
    """Truths of every size with a few crowds, and predictions near them, some of another class, some false,
    with scores rounded so that ties happen."""
    rng = np.random.default_rng(seed)
    truth: list[list] = [[], [], [], []]
    preds: list[list] = [[], [], [], []]
    for i in range(photos):
        k = int(rng.integers(0, 12))
        xy = rng.uniform(0, 500, (k, 2))
        boxes = np.c_[xy, xy + rng.uniform(2, 200, (k, 2)) ** rng.uniform(0.6, 1.0, (k, 1))]
        cls = rng.integers(0, classes, k)
        for row, values in zip(truth, ([i] * k, cls, boxes, rng.random(k) < 0.05), strict=True):
            row += list(values)
        keep = rng.random(k) < 0.8
        moved = boxes[keep] + rng.normal(0, 5, (int(keep.sum()), 4))
        moved[:, 2:] = np.maximum(moved[:, 2:], moved[:, :2] + 1)
        guess = np.where(rng.random(int(keep.sum())) < 0.9, cls[keep], rng.integers(0, classes, int(keep.sum())))
        extra = int(rng.integers(0, 4))
        fxy = rng.uniform(0, 500, (extra, 2))
        found = np.r_[moved, np.c_[fxy, fxy + rng.uniform(3, 150, (extra, 2))]]
        for row, values in zip(
            preds,
            ([i] * len(found), np.r_[guess, rng.integers(0, classes, extra)], found,
             np.round(rng.uniform(0.05, 1, len(found)), 2)),
            strict=True,
        ):  # fmt: skip
            row += list(values)
    return (
        BoxTable.of(truth[0], truth[1], np.array(truth[2]).reshape(-1, 4), crowd=truth[3]),
        BoxTable.of(preds[0], preds[1], np.array(preds[2]).reshape(-1, 4), score=preds[3]),
    )


def _cocoeval(ground_truth: dict, results: list[dict]) -> list[float]:
    """pycocotools' numbers (the reference) in ``_ours``' order: the benchmark's call of it."""
    return reference("pycocotools", ground_truth, results)[1]


def _ours(metrics) -> list[float]:
    return [metrics.map, metrics.map50, metrics.map75, metrics.map_small, metrics.map_medium, metrics.map_large,
            metrics.mar_100]  # fmt: skip


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_detection_metrics_equal_pycocotools(seed):
    truth, preds = _random_boxes(seed)
    ours = coco_metrics(match(truth, preds, 120, 6))
    ground_truth, results = coco_inputs(truth, preds, 120, 6)
    np.testing.assert_allclose(_ours(ours), _cocoeval(ground_truth, results), atol=1e-3)


def test_precision_and_recall_at_a_threshold_need_no_second_matching():
    """Greedy by score: the matching of every box answers any threshold as matching the boxes above it alone."""
    truth, preds = _random_boxes(7)
    once = match(truth, preds, 120, 6)
    for threshold in (0.1, 0.3, 0.55, 0.8):
        keep = preds.score >= threshold
        alone = BoxTable.of(preds.image[keep], preds.class_id[keep], preds.xyxy[keep], score=preds.score[keep])
        again = at_threshold(match(truth, alone, 120, 6), 0.0)
        assert at_threshold(once, threshold) == again.__class__(
            threshold, again.true_positives, again.false_positives, again.missed
        )


def test_label_metrics_count_top1_top5_and_confusion():
    truth = np.array([0, 0, 1, 2])
    ranked = np.array([[0, 5, 6, 7, 8], [1, 0, 6, 7, 8], [9, 9, 9, 9, 1], [2, 0, 1, 3, 4]])
    found = label_metrics(truth, ranked, [0, 1, 2])
    assert (found.top1, found.top5) == (0.5, 1.0)
    assert found.per_class == {0: 0.5, 1: 0.0, 2: 1.0}
    assert found.confusion.tolist() == [[1, 1, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]]


# -- the real models on the shipped sample ---------------------------------------------------------------------------


@pytest.fixture
def evaluation(service) -> EvaluationService:
    jobs = JobService(service)
    yield EvaluationService(jobs, DatasetService(service))
    jobs.close()


def test_sample_dataset_scored_as_pycocotools_scores_its_predictions(evaluation):
    """End to end on both backends: the sample's photos analysed once, scored; pycocotools, given the shipped
    annotations file and ``coco_results()``, agrees; a second run analyses nothing."""
    model = evaluation.model("objects")
    started = time.perf_counter()
    report = evaluation.evaluate(SAMPLE_OBJECTS, model)
    took = time.perf_counter() - started
    analysed = evaluation.service.analyzer.calls
    assert analysed == 15 and not report.failed and not report.unmatched
    ground_truth = json.loads(HAND_DRAWN.read_text())
    np.testing.assert_allclose(_ours(report.detection), _cocoeval(ground_truth, report.coco_results()),
                               atol=1e-3)  # fmt: skip
    assert 0.4 < report.detection.map < 0.8, report.detection.map
    assert evaluation.evaluate(SAMPLE_OBJECTS, model).to_json() == report.to_json()
    assert evaluation.service.analyzer.calls == analysed  # kept analyses are scored again, not re-run
    print(f"sample-objects end to end: {took:.1f} s")


def test_labels_dataset_top1_top5(evaluation):
    report = evaluation.evaluate(SAMPLE_LABELS, evaluation.model("labels", precision="float32"))
    data = report.to_json()
    assert data["photos"] == 20 and data["top1"] >= 0.85 and data["top5"] >= data["top1"]
    assert sum(sum(row) for row in data["confusion"]["matrix"]) == 20


def _write_formats(folder: Path) -> dict[str, Path]:
    """The sample dataset written as YOLO, Pascal VOC and COCO (a zip), from its shipped photos."""
    sample = sample_dataset(SAMPLE_OBJECTS)
    names = [n for _, n in sample.categories]
    yolo, voc = folder / "yolo", folder / "voc"
    for path in (yolo / "images", yolo / "labels", voc / "JPEGImages", voc / "Annotations"):
        path.mkdir(parents=True)
    (yolo / "data.yaml").write_text("names:\n" + "".join(f"  {i}: {n}\n" for i, n in enumerate(names)))
    archive = zipfile.ZipFile(folder / "coco.zip", "w")
    document = json.loads(HAND_DRAWN.read_text())
    for number, (photo, image) in enumerate(zip(sample.photos, document["images"], strict=True)):
        flat = f"photo{number:02d}.jpg"
        data = sample_photo_path(photo.file_name).read_bytes()
        width, height = Image.open(io.BytesIO(data)).size
        for target in (yolo / "images" / flat, voc / "JPEGImages" / flat):
            target.write_bytes(data)
        archive.writestr(f"images/{flat}", data)
        image["file_name"] = flat
        (yolo / "labels" / f"photo{number:02d}.txt").write_text("".join(
            f"{names.index(b.category)} {(b.xyxy[0] + b.xyxy[2]) / 2 / width} {(b.xyxy[1] + b.xyxy[3]) / 2 / height} "
            f"{(b.xyxy[2] - b.xyxy[0]) / width} {(b.xyxy[3] - b.xyxy[1]) / height}\n" for b in photo.boxes
        ))  # fmt: skip
        objects = "".join(
            f"<object><name>{b.category}</name><difficult>0</difficult><bndbox><xmin>{b.xyxy[0]}</xmin>"
            f"<ymin>{b.xyxy[1]}</ymin><xmax>{b.xyxy[2]}</xmax><ymax>{b.xyxy[3]}</ymax></bndbox></object>"
            for b in photo.boxes
        )
        (voc / "Annotations" / f"photo{number:02d}.xml").write_text(
            f"<annotation><filename>{flat}</filename>{objects}</annotation>"
        )
    archive.writestr("annotations.json", json.dumps(document))
    archive.close()
    return {"yolo": yolo, "voc": voc, "coco": folder / "coco.zip"}


def test_coco_yolo_and_voc_read_the_same_truth_and_score_the_same(evaluation, tmp_path):
    model = evaluation.model("objects")
    reference = evaluation.evaluate(SAMPLE_OBJECTS, model).detection
    analysed = evaluation.service.analyzer.calls
    for kind, path in _write_formats(tmp_path).items():
        dataset = evaluation.datasets.add(f"as-{kind}", path)
        assert (dataset.format, dataset.photo_count) == (kind, 15)
        found = evaluation.evaluate(dataset.name, model).detection
        np.testing.assert_allclose(_ours(found), _ours(reference), atol=1e-6, err_msg=kind)
    assert evaluation.service.analyzer.calls == analysed  # the same photos: an image analysed is not analysed again


def test_image_folder_by_name_or_wordnet_id(evaluation, tmp_path):
    source = sample_photo_path("foolbox/data/imagenet_00_243.jpg").read_bytes()
    for folder in ("bull mastiff", "n02108422", "Unheard_Of"):
        (tmp_path / "set" / folder).mkdir(parents=True)
        (tmp_path / "set" / folder / "a.jpg").write_bytes(source)
    dataset = evaluation.datasets.add("folders", tmp_path / "set")
    report = evaluation.evaluate(dataset.name, evaluation.model("labels"))
    assert report.matches == {"bull mastiff": "bull mastiff", "n02108422": "bull mastiff", "Unheard_Of": None}
    assert report.unmatched == ["Unheard_Of"] and len(report.photos) == 2


def test_user_synonyms_match_a_category_the_names_miss(evaluation, tmp_path):
    document = json.loads(HAND_DRAWN.read_text())
    for category in document["categories"]:
        if category["name"] == "person":
            category["name"] = "pedestrian"
    folder = tmp_path / "renamed"
    folder.mkdir()
    (folder / "annotations.json").write_text(json.dumps(document))
    for image in document["images"]:
        target = folder / image["file_name"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(sample_photo_path(image["file_name"]).read_bytes())
    evaluation.datasets.add("renamed", folder)
    model = evaluation.model("objects")
    assert evaluation.evaluate("renamed", model).unmatched == ["pedestrian"]
    evaluation.datasets.set_synonyms("renamed", {"pedestrian": "person"})
    again = evaluation.evaluate("renamed", model)
    assert again.unmatched == [] and again.detection.map == evaluation.evaluate(SAMPLE_OBJECTS, model).detection.map


# -- bad datasets: a clear error and nothing kept ---------------------------------------------------------------------


def _coco_folder(folder: Path, images: list[dict], annotations: list[dict], raw: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "photo.jpg").write_bytes(sample_photo_path("darknet/eagle.jpg").read_bytes())
    document = {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "bird"}]}
    (folder / "annotations.json").write_text(raw if raw is not None else json.dumps(document))
    return folder


EAGLE = {"id": 1, "file_name": "photo.jpg"}  # 773 x 512


def _box(bbox, **extra) -> dict:
    return {"id": 1, "image_id": 1, "category_id": 1, "bbox": bbox, **extra}


@pytest.mark.parametrize(
    ("images", "annotations", "raw", "message"),
    [
        ([EAGLE], [], '{"images": [1, "annotations": []}', "annotations.json is not valid JSON"),
        ([{"id": 1, "file_name": "gone.jpg"}], [], None, "names 1 photo(s) not in the dataset: gone.jpg"),
        ([{"id": 1, "file_name": "../../etc/passwd"}], [], None, "not in the dataset: ../../etc/passwd"),
        ([{"id": 1, "file_name": "/etc/passwd"}], [], None, "not in the dataset: /etc/passwd"),
        ([{"id": 1, "file_name": "C:\\Windows\\win.ini"}], [], None, "not in the dataset"),
        ([EAGLE], [_box([10, 10, -5, 20])], None, "a bird box has no size"),
        ([EAGLE], [_box([700, 400, 300, 300])], None, "lies outside the 773x512 photo"),
        ([EAGLE], [_box([10, 10, "wide", 5])], None, "bbox must be four numbers"),
    ],
)
def test_bad_coco_datasets_are_refused_with_nothing_kept(evaluation, tmp_path, images, annotations, raw, message):
    folder = _coco_folder(tmp_path / "bad", images, annotations, raw)
    blobs_before = set(evaluation.service._repository.blobs.keys())
    with pytest.raises(DatasetError, match=message.replace("(", r"\(").replace(")", r"\)")):
        evaluation.datasets.add("bad", folder)
    assert evaluation.datasets.kept() == []
    assert set(evaluation.service._repository.blobs.keys()) == blobs_before


def test_unreadable_photo_named_and_nothing_kept(evaluation, tmp_path):
    folder = _coco_folder(tmp_path / "bad", [EAGLE], [])
    (folder / "photo.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(DatasetError, match="photo.jpg: "):
        evaluation.datasets.add("bad", folder)
    assert evaluation.datasets.kept() == []


def test_unknown_categories_are_listed_not_fatal(evaluation, tmp_path):
    folder = _coco_folder(tmp_path / "odd", [EAGLE], [_box([99, 105, 553, 322]), _box([1, 1, 5, 5], category_id=7)])
    dataset = evaluation.datasets.add("odd", folder)
    assert dataset.photo_count == 1
    assert dataset.notes == ["1 annotation(s) of category id 7, which annotations.json does not list, were left out"]


def test_a_hundred_thousand_annotations_are_refused_at_once(tmp_path):
    boxes = [_box([1, 1, 5, 5], id=i) for i in range(100_000)]
    folder = _coco_folder(tmp_path / "huge", [EAGLE], boxes)
    started = time.perf_counter()
    with pytest.raises(DatasetError, match=f"100,000 annotations; at most {MAX_ANNOTATIONS:,}"):
        read_dataset(folder)
    assert time.perf_counter() - started < 5


def test_zip_bomb_stops_at_the_cap(evaluation, tmp_path):
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("annotations.json", json.dumps({"images": [EAGLE], "annotations": [], "categories": []}))
        archive.writestr("photo.jpg", b"\0" * (64 * 1024 * 1024))  # 64 MB of zeros: about 64 KB packed
    assert bomb.stat().st_size < 1_000_000
    with pytest.raises(DatasetError, match="photo.jpg in bomb.zip inflates to more than"):
        evaluation.datasets.add("bomb", bomb)
    assert evaluation.datasets.kept() == []


def test_a_link_out_of_the_dataset_is_not_read(tmp_path):
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(sample_photo_path("darknet/eagle.jpg").read_bytes())
    folder = _coco_folder(tmp_path / "set", [EAGLE, {"id": 2, "file_name": "link.jpg"}], [])
    (folder / "link.jpg").symlink_to(secret)
    with pytest.raises(DatasetError, match="not in the dataset: link.jpg"):
        read_dataset(folder)


# -- the CLI, the API and the page -------------------------------------------------------------------------------------


def test_cli_evaluate_json_and_predictions_out(tmp_path, capsys, analyzer):
    out = tmp_path / "predictions.json"
    assert main(["evaluate", SAMPLE_OBJECTS, "--json", "--predictions-out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    for key in ("map", "map50", "map75", "map_small", "map_medium", "map_large", "ap_per_class", "precision",
                "recall", "confusion", "per_photo"):  # fmt: skip
        assert key in report
    assert len(report["per_photo"]) == 15 and report["confusion"]["classes"][-1] == "background"
    expected = _cocoeval(json.loads(HAND_DRAWN.read_text()), json.loads(out.read_text()))
    assert abs(expected[0] - report["map"]) < 1e-3
    assert main(["datasets", "list"]) == 0
    assert SAMPLE_OBJECTS in capsys.readouterr().out
    assert main(["evaluate", "no-such-set"]) == 1


def test_api_datasets_and_evaluations(tmp_path, analyzer):
    settings = Settings(data_dir=tmp_path, admin_token="a" * 32)
    folder = _coco_folder(tmp_path / "eagle", [EAGLE], [_box([99, 105, 553, 322])])
    packed = io.BytesIO()
    with zipfile.ZipFile(packed, "w") as archive:
        for path in folder.iterdir():
            archive.write(path, path.name)
    with TestClient(create_app(settings)) as client:
        added = client.post("/api/v1/datasets", data={"name": "eagle"}, files={"file": ("e.zip", packed.getvalue())})
        assert added.status_code == 201, added.text
        assert added.json()["photos"] == 1 and added.json()["categories"] == [{"id": 1, "name": "bird"}]
        again = client.post("/api/v1/datasets", data={"name": "eagle"}, files={"file": ("e.zip", packed.getvalue())})
        assert again.status_code == 400 and "exists already" in again.json()["detail"]
        scored = client.post("/api/v1/evaluations", json={"dataset": "eagle"})
        assert scored.status_code == 200 and scored.json()["map50"] == 1.0
        assert client.post("/api/v1/evaluations", json={"dataset": "nope"}).status_code == 404
        assert client.delete("/api/v1/datasets/eagle").status_code == 401
        admin = {"Authorization": "Bearer " + "a" * 32}
        assert client.delete("/api/v1/datasets/eagle", headers=admin).status_code == 204
        assert client.get("/api/v1/datasets/eagle").status_code == 404


def test_evaluate_page_compares_models_and_moves_with_the_slider(analyzer):
    page = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    page.switch_page("pages/evaluate.py")
    page.run()
    assert not page.exception
    page.button[0].click().run()
    assert not page.exception

    def table():
        return next(d.value for d in page.dataframe if "model" in d.value.columns)

    first = table()
    assert list(first["model"]) == ["yolov4-tiny int8", "yolov4-tiny float32"]
    assert first["mAP"].between(0.4, 0.8).all()
    page.slider[0].set_value(0.6).run()
    moved = table()
    assert (moved["recall @0.60"] <= first["recall @0.25"]).all() and list(moved["mAP"]) == list(first["mAP"])
    assert any("Worst photos" in s.value for s in page.subheader)


def test_a_boards_marks_become_ground_truth_and_export_as_coco(evaluation, zidane_path, tmp_path):
    """The detector's boxes on a board photo, less the one marked false, plus the one drawn around what it missed:
    scored against that truth, the model has exactly one false box and one missed object; exported as COCO and
    imported again, the truth is the same."""
    from picmetric.service.board import ClassBoard

    boards = ClassBoard(evaluation.service)
    board = boards.start("Seeing machines")
    sent = boards.send(board.id, zidane_path.read_bytes(), boards.new_device(), name="z.jpg")
    found = sent.stored.analysis.detections
    tie = found.labels.index("tie")
    boards.mark(sent.id, "objects", "false", "tie", box=found.xyxy[tie].tolist(), category="tie")
    boards.mark(sent.id, "objects", "missed", "cup (drawn)", box=[10, 600, 120, 700], category="cup")
    boards.mark(sent.id, "labels", "missed")  # no box: not part of the objects' truth
    with pytest.raises(PicMetricError, match="four numbers"):
        boards.mark(sent.id, "objects", "missed", box=[1, 2, 3], category="cup")
    truth = boards.ground_truth(board.id)
    assert truth.format == "board" and len(truth.photos) == 1
    assert sorted(b.category for b in truth.photos[0].boxes) == sorted(
        [*(label for i, label in enumerate(found.labels) if i != tie), "cup"]
    )
    evaluation.datasets.keep("board-truth", truth, replace=True)
    evaluation.datasets.keep("board-truth", boards.ground_truth(board.id), replace=True)  # made again: replaced
    report = evaluation.evaluate("board-truth", evaluation.model("objects"))
    at = report.at(report.threshold)
    assert (at.false_positives, at.missed) == (1, 1), at
    packed = tmp_path / "board.zip"
    packed.write_bytes(evaluation.datasets.export_coco("board-truth"))
    again = evaluation.datasets.add("board-again", packed)
    assert (again.format, again.photo_count) == ("coco", 1)
    assert again.categories == evaluation.datasets.require("board-truth").categories

    def boxes(name: str) -> list[list]:  # the export writes each box's area out; the board's truth leaves it to be
        return [[box[:6] for box in p.boxes] for p in evaluation.datasets.photos(name)]  # computed from the box

    assert boxes("board-again") == boxes("board-truth")


def test_a_worst_photo_opens_in_analyze(analyzer):
    page = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    page.switch_page("pages/evaluate.py").run()
    page.button[0].click().run()
    link = next(m.value for m in page.markdown if "[open](/?sha=" in m.value)
    sha = link.split("/?sha=")[1].rstrip(")")
    page.query_params["sha"] = sha
    page.switch_page("pages/analyze.py").run()
    assert not page.exception and page.session_state["current"] == sha
