"""Your own detectors: ONNX exports in each layout (small models built here in that layout), Darknet pairs, the
shelf under the data folder, and choosing one from the library, the CLI, the API and DeepStack's custom route."""

from __future__ import annotations

import re

import httpx
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from picmetric import AnalysisOptions, load_image
from picmetric.core.analyzer import Analyzer
from picmetric.core.catalog import add_darknet, add_onnx, detectors, remove_detector
from picmetric.core.options import InvalidOptionsError
from picmetric.errors import InvalidModelError, UnknownModelError
from picmetric.interfaces.api import create_app
from picmetric.interfaces.cli import main
from picmetric.service.analyses import AnalysisService
from picmetric.settings import Settings

from .services import ApiServer
from .test_converters import DARKNET_CFGS, random_darknet_weights

SIZE = 64  # the exports' input: 8x8 + 4x4 + 2x2 = 84 cells over strides 8, 16, 32
CELLS = 84
CLASSES = ["apple", "pear", "plum"]
#: the one confident box every test export finds: centre (24, 40), 16 x 8 input pixels, class "pear", score 0.72
BOX_CXCYWH, CLASS, OBJECTNESS, CLASS_SCORE = (24.0, 40.0, 16.0, 8.0), 1, 0.9, 0.8


def export_in_layout(layout: str, classes: int = len(CLASSES), rows: int | None = None) -> onnx.ModelProto:
    """A model whose output is a fixed table in ``layout`` (plus 0 x the mean of the input, so it depends on it)."""
    cx, cy, w, h = BOX_CXCYWH
    if layout == "yolov8":
        table = np.zeros((1, 4 + classes, rows or CELLS), np.float32)
        table[0, :4, 5] = BOX_CXCYWH
        table[0, 4 + CLASS, 5] = OBJECTNESS * CLASS_SCORE
    else:
        table = np.zeros((1, rows or (3 * CELLS if layout == "yolov5" else CELLS), 5 + classes), np.float32)
        if layout == "yolov5":
            table[0, 7, :4] = BOX_CXCYWH
        else:  # yolox: cell (gx, gy) of the stride-8 grid, offsets and log sizes in strides
            gx, gy = 2, 4
            table[0, gy * 8 + gx, :4] = (cx / 8 - gx, cy / 8 - gy, np.log(w / 8), np.log(h / 8))
            row = gy * 8 + gx
            table[0, row, 4], table[0, row, 5 + CLASS] = OBJECTNESS, CLASS_SCORE
        if layout == "yolov5":
            table[0, 7, 4], table[0, 7, 5 + CLASS] = OBJECTNESS, CLASS_SCORE
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["mean"], keepdims=0),
        helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
        helper.make_node("Add", ["table", "nothing"], ["output0"]),
    ]
    graph = helper.make_graph(
        nodes, layout,
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(table.shape))],
        initializer=[numpy_helper.from_array(table, "table"),
                     numpy_helper.from_array(np.zeros((), np.float32), "zero")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


@pytest.fixture()
def shelf(tmp_path):
    """Settings with an empty data folder, and the files a user would bring."""
    settings = Settings(data_dir=tmp_path / "data")
    names = tmp_path / "fruit.names"
    names.write_text("\n".join(CLASSES) + "\n")

    def export(layout: str, **kwargs) -> str:
        path = tmp_path / f"{layout}.onnx"
        onnx.save(export_in_layout(layout, **kwargs), str(path))
        return str(path)

    return settings, names, export


@pytest.mark.parametrize("layout", ["yolov5", "yolov8", "yolox"])
def test_each_export_layout_is_found_from_its_shape_and_decoded(shelf, layout):
    settings, names, export = shelf
    from pathlib import Path

    entry = add_onnx(settings, f"fruit-{layout}", Path(export(layout)), names)
    assert entry.layout == layout and entry.classes == CLASSES and entry.input_size == SIZE
    analyzer = Analyzer(settings, max_workers=1)
    photo = np.full((128, 128, 3), 90, np.uint8)  # twice the input: boxes come back at twice the size
    found = analyzer.detector(name=entry.name).predict(photo, min_confidence=0.5)
    assert found.labels == ["pear"]
    assert found.confidence[0] == pytest.approx(OBJECTNESS * CLASS_SCORE, abs=1e-5)
    cx, cy, w, h = BOX_CXCYWH
    np.testing.assert_allclose(found.xyxy[0], [2 * (cx - w / 2), 2 * (cy - h / 2), 2 * (cx + w / 2), 2 * (cy + h / 2)],
                               atol=1e-3)  # fmt: skip
    assert [d.name for d in detectors(settings)] == ["yolov4-tiny", f"fruit-{layout}"]


def test_bad_exports_and_names_are_refused_with_the_cause(shelf, tmp_path):
    from pathlib import Path

    settings, names, export = shelf
    two = tmp_path / "two.names"
    two.write_text("apple\npear\n")
    with pytest.raises(InvalidModelError, match="fits 3 classes, the names file has 2"):
        add_onnx(settings, "fruit", Path(export("yolov8")), two)
    with pytest.raises(InvalidModelError, match="unknown layout"):
        add_onnx(settings, "fruit", Path(export("yolov8", rows=7, classes=40)), names)
    with pytest.raises(InvalidModelError, match="say which with --layout"):
        add_onnx(settings, "fruit", Path(export("yolov5", rows=100)), names)
    assert add_onnx(settings, "fruit", Path(export("yolov5", rows=100)), names, layout="yolov5").layout == "yolov5"
    with pytest.raises(InvalidModelError, match="not the yolox layout"):
        add_onnx(settings, "fruit2", Path(export("yolov8")), names, layout="yolox")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model at all")
    with pytest.raises(InvalidModelError, match="junk.onnx is not an ONNX model"):
        add_onnx(settings, "junk", junk, names)
    with pytest.raises(InvalidModelError, match="exists already"):
        add_onnx(settings, "fruit", Path(export("yolov8")), names)
    with pytest.raises(InvalidModelError, match="not a usable detector name"):
        add_onnx(settings, "../evil", Path(export("yolov8")), names)
    empty = tmp_path / "empty.names"
    empty.write_text("\n\n")
    with pytest.raises(InvalidModelError, match="no class names"):
        add_onnx(settings, "fruit3", Path(export("yolov8")), empty)
    remove_detector(settings, "fruit")
    with pytest.raises(UnknownModelError):
        remove_detector(settings, "fruit")
    with pytest.raises(InvalidModelError, match="the built-in detector: its name is reserved"):
        remove_detector(settings, "yolov4-tiny")
    assert [d.name for d in detectors(settings)] == ["yolov4-tiny"]
    assert not list((settings.data_dir / "detectors").iterdir())  # nothing half-added left behind


def test_darknet_pairs_are_checked_against_their_names_and_kept_converted(tmp_path, bus_path):
    settings = Settings(data_dir=tmp_path / "data")
    cfg, weights = DARKNET_CFGS / "yolov3-tiny.cfg", tmp_path / "v3-tiny.weights"
    random_darknet_weights(cfg, weights)
    coco = tmp_path / "coco.names"
    coco.write_text("\n".join(f"class{i}" for i in range(80)))
    three = tmp_path / "three.names"
    three.write_text("a\nb\nc\n")
    with pytest.raises(InvalidModelError, match="names file has 3 classes but the cfg's head 0"):
        add_darknet(settings, "v3tiny", cfg, weights, three)
    with pytest.raises(InvalidModelError, match=r"ends inside layer \d+ \(\[convolutional\]"):
        add_darknet(settings, "v3", DARKNET_CFGS / "yolov3.cfg", weights, coco)
    entry = add_darknet(settings, "v3tiny", cfg, weights, coco)
    assert (entry.family, entry.input_size, len(entry.classes)) == ("darknet", 416, 80)
    analyzer = Analyzer(settings, max_workers=1)
    analysis = analyzer.analyze(load_image(bus_path), AnalysisOptions(tasks=("objects",), detector="v3tiny"))
    assert analysis.model_versions["objects"] == "v3tiny@416"
    assert all(label.startswith("class") for label in analysis.detections.labels)
    with pytest.raises(InvalidOptionsError, match="no object detector named 'nope'"):
        analyzer.analyze(load_image(bus_path), AnalysisOptions(tasks=("objects",), detector="nope"))


@pytest.fixture()
def fruit_analyzer(shelf):
    """An analyzer (and service) whose data folder holds the yolov8-layout fruit detector."""
    from pathlib import Path

    settings, names, export = shelf
    add_onnx(settings, "fruit", Path(export("yolov8")), names)
    return settings, Analyzer(settings)


def test_one_photo_analysed_with_two_detectors_keeps_both(fruit_analyzer, zidane_path):
    settings, analyzer = fruit_analyzer
    service = AnalysisService(settings, analyzer=analyzer)
    coco = service.submit(zidane_path.read_bytes(), options=AnalysisOptions(tasks=("objects",)))
    fruit = service.submit(zidane_path.read_bytes(), options=AnalysisOptions(tasks=("objects",), detector="fruit"))
    assert not fruit.cached and "person" in coco.analysis.detections.labels
    assert fruit.analysis.detections.labels == ["pear"]
    again = service.submit(zidane_path.read_bytes(), options=AnalysisOptions(tasks=("objects",), detector="fruit"))
    assert again.cached and again.id == fruit.id
    assert service.history().total == 2


def test_the_api_and_deepstacks_custom_route_use_an_added_detector(fruit_analyzer, zidane_path):
    settings, analyzer = fruit_analyzer
    photo = {"image": ("z.jpg", zidane_path.read_bytes(), "image/jpeg")}
    with ApiServer(create_app(settings, AnalysisService(settings, analyzer=analyzer))) as url:
        made = httpx.post(f"{url}/api/v1/analyses", files={"file": photo["image"]},
                          data={"tasks": "objects", "detector": "fruit"}, timeout=60)  # fmt: skip
        assert made.status_code == 201, made.text
        assert [o["label"] for o in made.json()["analysis"]["objects"]] == ["pear"]
        assert made.json()["analysis"]["options"]["detector"] == "fruit"
        custom = httpx.post(f"{url}/v1/vision/custom/fruit", files=photo, data={"min_confidence": "0.5"}, timeout=60)
        assert custom.status_code == 200, custom.text
        (prediction,) = custom.json()["predictions"]
        assert prediction["label"] == "pear" and prediction["confidence"] == pytest.approx(0.72, abs=1e-4)
        missing = httpx.post(f"{url}/v1/vision/custom/nope", files=photo, timeout=60)
        assert missing.status_code == 404 and "no detector named 'nope'" in missing.json()["error"]
        refused = httpx.post(f"{url}/api/v1/analyses", files={"file": photo["image"]}, data={"detector": "nope"})
        assert refused.status_code == 400 and "no object detector named 'nope'" in refused.json()["detail"]


def test_the_cli_adds_lists_uses_and_removes_a_detector(shelf, monkeypatch, capsys, zidane_path, tmp_path):
    settings, names, export = shelf
    monkeypatch.setenv("PICMETRIC_DATA_DIR", str(settings.data_dir))
    from picmetric.settings import get_settings

    get_settings.cache_clear()
    try:
        assert main(["models", "add", "fruit", "--onnx", export("yolov8"), "--names", str(names)]) == 0
        assert "added fruit: 3 classes, input 64 px" in capsys.readouterr().out
        assert main(["models", "list"]) == 0
        listed = capsys.readouterr().out
        assert "fruit" in listed and "3 classes (apple, pear, plum)" in listed and "yolov8 layout" in listed
        assert "yolov4-tiny" in listed and "80 classes" in listed
        code = main(["analyze", str(zidane_path), "--detector", "fruit", "--tasks", "objects", "--json"])
        assert code == 0
        assert "pear" in capsys.readouterr().out
        assert main(["analyze", str(zidane_path), "--detector", "nope", "--tasks", "objects"]) == 1
        assert "no object detector named 'nope'" in capsys.readouterr().err
        assert main(["models", "add", "fruit", "--onnx", export("yolox"), "--names", str(names)]) == 1
        assert "exists already" in capsys.readouterr().err
        assert main(["models", "remove", "fruit"]) == 0
        assert "removed fruit" in capsys.readouterr().out
        assert main(["models", "list"]) == 0
        assert "fruit" not in capsys.readouterr().out
    finally:
        get_settings.cache_clear()


def _tiny_cfg(tmp_path, replace: tuple[str, str] = ("", "")):
    """yolov3-tiny's cfg with one text replaced, random weights that fit the original, 80 class names."""
    cfg = tmp_path / "edited.cfg"
    original = (DARKNET_CFGS / "yolov3-tiny.cfg").read_text()
    assert replace[0] in original, replace
    cfg.write_text(original.replace(*replace, 1))
    weights = tmp_path / "tiny.weights"
    random_darknet_weights(DARKNET_CFGS / "yolov3-tiny.cfg", weights)
    coco = tmp_path / "coco.names"
    coco.write_text("\n".join(f"class{i}" for i in range(80)))
    return cfg, weights, coco


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("stride=1", "stride=0"), r"stride=0 is out of range; it must be from 1 to 32"),
        (("size=2\nstride=2", "size=0\nstride=0"), r"\[maxpool\] stride=0 is out of range"),
        (("filters=16", "filters=-8"), r"filters=-8 is out of range"),
        (("width=416", "width=100000"), r"width=100000 is out of range; it must be from 32 to 2048"),
        (("classes=80", "classes=0"), r"classes=0 is out of range"),
    ],
)  # fmt: skip
def test_a_cfg_with_impossible_numbers_gets_one_line_naming_them(tmp_path, monkeypatch, capsys, edit, message):
    from picmetric.settings import get_settings

    cfg, weights, coco = _tiny_cfg(tmp_path, edit)
    monkeypatch.setenv("PICMETRIC_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    try:
        code = main(["models", "add", "edited", "--darknet", str(cfg), str(weights), "--names", str(coco)])
    finally:
        get_settings.cache_clear()
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert re.search(message, err), err


def test_files_that_never_end_or_are_too_large_are_refused_before_reading(tmp_path, shelf):
    from pathlib import Path

    settings, names, export = shelf
    cfg, weights, coco = _tiny_cfg(tmp_path)
    for paths, what in (((cfg, Path("/dev/zero"), coco), "weights"), ((cfg, weights, Path("/dev/zero")), "names"),
                        ((Path("/dev/zero"), weights, coco), "cfg")):  # fmt: skip
        with pytest.raises(InvalidModelError, match=f"the {what} file zero is not a regular file"):
            add_darknet(settings, "endless", *paths)
    with pytest.raises(InvalidModelError, match="the ONNX file zero is not a regular file"):
        add_onnx(settings, "endless", Path("/dev/zero"), names)
    huge = tmp_path / "huge.names"
    with huge.open("wb") as sparse:  # 2 MB of holes: refused by its size, not read
        sparse.truncate(2 << 20)
    with pytest.raises(InvalidModelError, match="is 2,097,152 bytes; at most 1,048,576 are read"):
        add_onnx(settings, "huge", Path(export("yolov8")), huge)


def test_an_onnx_input_of_absurd_size_is_refused_before_any_run(tmp_path, shelf):
    settings, names, _ = shelf
    graph = helper.make_graph(
        [helper.make_node("Identity", ["images"], ["output0"])], "huge",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 100_000, 100_000])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 3, 100_000, 100_000])],
    )  # fmt: skip
    path = tmp_path / "huge.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    with pytest.raises(InvalidModelError, match="input is 100000x100000; PicMetric runs inputs from 32 to 2048"):
        add_onnx(settings, "huge", path, names)


@pytest.mark.parametrize(
    ("line", "message"),
    [("x" * 65, "class 2 in bad.names is 65 characters long; at most 64"),
     ("app\x00le", "class 2 in bad.names contains a control character"),
     ("tab\tbed", "class 2 in bad.names contains a control character")],
)  # fmt: skip
def test_class_names_are_short_printable_text_checked_before_the_weights(tmp_path, shelf, line, message):
    from pathlib import Path

    settings, _, _ = shelf
    bad = tmp_path / "bad.names"
    bad.write_text(f"apple\n{line}\npear\n")
    with pytest.raises(InvalidModelError, match=message):
        add_darknet(settings, "bad", DARKNET_CFGS / "yolov3-tiny.cfg", Path("/dev/zero"), bad)  # weights not read


def test_removing_a_detector_folder_that_is_a_link_removes_the_link_only(shelf, tmp_path):
    from pathlib import Path

    settings, names, export = shelf
    add_onnx(settings, "fruit", Path(export("yolov8")), names)
    kept = tmp_path / "kept-elsewhere"
    (settings.data_dir / "detectors" / "fruit").rename(kept)
    (settings.data_dir / "detectors" / "fruit").symlink_to(kept, target_is_directory=True)
    remove_detector(settings, "fruit")
    assert not (settings.data_dir / "detectors" / "fruit").exists() and (kept / "model.onnx").is_file()
    assert [d.name for d in detectors(settings)] == ["yolov4-tiny"]


def test_the_wrong_file_as_weights_is_named_with_the_size_the_cfg_needs(tmp_path, shelf, zidane_path):
    """A JPEG given as weights: one line saying it is not Darknet weights and how large this cfg's are; no numpy
    warnings. The built-in detector's name is reserved, both for add and for remove."""
    import warnings
    from pathlib import Path

    from picmetric.core.convert.darknet import weights_needed

    settings, names, export = shelf
    cfg, weights, coco = _tiny_cfg(tmp_path)
    needed = weights_needed(cfg)
    assert weights.stat().st_size == 20 + 4 * needed  # the count agrees with a real weights file
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a RuntimeWarning (numpy on garbage weights) fails the test
        with pytest.raises(InvalidModelError) as refused:
            add_darknet(settings, "photo", cfg, zidane_path, coco)
    said = str(refused.value)
    assert "not a Darknet weights file (it looks like a JPEG image" in said and f"{20 + 4 * needed:,} bytes" in said
    short = tmp_path / "short.weights"
    short.write_bytes(weights.read_bytes()[: 20 + 4 * 1000])
    with pytest.raises(InvalidModelError, match=f"needs {needed:,} values: a weights file of"):
        add_darknet(settings, "short", cfg, short, coco)
    with pytest.raises(InvalidModelError, match="built-in detector's name, reserved"):
        add_onnx(settings, "yolov4-tiny", Path(export("yolov8")), names)
