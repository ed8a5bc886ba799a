"""Face detectors: YuNet (default) against OpenCV's own implementation and on real photos, MTCNN one option away."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from picmetric import AnalysisOptions, InvalidOptionsError, load_image
from picmetric.core.models import FACE_DETECTORS
from picmetric.core.models.yunet import nms_faces

from .conftest import imagenet_samples, sample_photo

# Faces in the shipped photos, found by hand (x1, y1, x2, y2): two on zidane.jpg, two behind bus.jpg's windscreen.
ZIDANE_FACES = [(913, 96, 1053, 285), (559, 272, 660, 418)]
BUS_FACES = [(113, 418, 155, 468), (269, 425, 305, 474)]
# foolbox ImageNet photos with no human face (dogs' faces are left out: YuNet scores them 0.80-0.85).
NO_FACE = [path for path, label in imagenet_samples() if label not in (243, 251)]


def _crop(image: np.ndarray, box, margin: float, side: int) -> np.ndarray:
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    x1, y1 = max(0, int(x1 - margin * w)), max(0, int(y1 - margin * h))
    x2, y2 = min(image.shape[1], int(x2 + margin * w)), min(image.shape[0], int(y2 + margin * h))
    crop = image[y1:y2, x1:x2]
    scale = side / max(crop.shape[:2])
    return cv2.resize(crop, (round(crop.shape[1] * scale), round(crop.shape[0] * scale)), interpolation=cv2.INTER_CUBIC)


def group_collage() -> np.ndarray:
    """Four real faces from the shipped photos, each scaled to a 300 px tile, in a row on a grey background."""
    zidane = load_image(sample_photo("zidane.jpg")).pixels
    bus = load_image(sample_photo("bus.jpg")).pixels
    tiles = [_crop(zidane, box, 0.6, 300) for box in ZIDANE_FACES] + [_crop(bus, box, 0.6, 300) for box in BUS_FACES]
    height = max(t.shape[0] for t in tiles) + 40
    canvas = np.full((height, sum(t.shape[1] + 40 for t in tiles) + 40, 3), 235, np.uint8)
    x = 40
    for tile in tiles:
        canvas[20 : 20 + tile.shape[0], x : x + tile.shape[1]] = tile
        x += tile.shape[1] + 40
    return canvas


@pytest.mark.parametrize("photo", ["zidane.jpg", "bus.jpg", "imagenet_00_243.jpg", "imagenet_16_251.jpg"])
def test_yunet_decoding_matches_opencv_face_detector_yn(analyzer, photo):
    """Same weights, same input size: our ORT run and decode give OpenCV's boxes, landmarks and scores."""
    path = (
        sample_photo(photo)
        if not photo.startswith("imagenet")
        else next(p for p, _ in imagenet_samples() if p.name == photo)
    )
    rgb = load_image(path).pixels
    model = analyzer.face_detector("yunet")
    height, width = rgb.shape[:2]
    reference = cv2.FaceDetectorYN.create(str(model.source_file()), "", (width, height), 0.5, 0.3, 5000)
    _, expected = reference.detect(np.ascontiguousarray(rgb[:, :, ::-1]))
    one_pass = model.detect_at(rgb, 1.0, 0.5)
    keep = nms_faces(one_pass.xyxy, one_pass.confidence)
    assert expected is not None and len(keep) == len(expected) >= 1
    ours = np.argsort(-one_pass.confidence[keep])
    theirs = expected[np.argsort(-expected[:, 14])]
    for i, row in zip(keep[ours], theirs, strict=True):
        x, y, w, h = row[:4]
        np.testing.assert_allclose(one_pass.xyxy[i], [x, y, x + w, y + h], atol=0.5)
        np.testing.assert_allclose(one_pass.landmarks[i], row[4:14].reshape(5, 2), atol=0.5)
        assert abs(one_pass.confidence[i] - row[14]) < 1e-4


def _matches(found, truths, min_iou: float = 0.5) -> bool:
    def iou(a, b):
        tl, br = np.maximum(a[:2], b[:2]), np.minimum(a[2:], b[2:])
        inter = np.prod(np.clip(br - tl, 0, None))
        return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)

    return all(max((iou(np.asarray(t, np.float32), box) for box in found.xyxy), default=0) >= min_iou for t in truths)


@pytest.mark.parametrize("key", list(FACE_DETECTORS))
def test_each_detector_finds_the_faces_of_the_shipped_photos(analyzer, key):
    for photo, truths in (("zidane.jpg", ZIDANE_FACES), ("bus.jpg", BUS_FACES)):
        image = load_image(sample_photo(photo))
        analysis = analyzer.analyze(image, AnalysisOptions(tasks=("faces",), face_detector=key))
        assert len(analysis.faces) == len(truths), f"{key} on {photo}: {analysis.faces.confidence}"
        assert _matches(analysis.faces, truths, 0.4), f"{key} on {photo}"


@pytest.mark.parametrize("key", list(FACE_DETECTORS))
def test_group_collage_gives_exactly_its_four_faces(analyzer, key):
    collage = group_collage()
    model, score = analyzer.face_detector(key), FACE_DETECTORS[key][1]
    faces = model.predict(collage, score, min_face_size=20)
    assert len(faces) == 4, faces.confidence
    centres = np.sort((faces.xyxy[:, 0] + faces.xyxy[:, 2]) / 2)
    assert (np.diff(centres) > 200).all()  # one face per tile
    eyes_y, nose_y, mouth_y = (
        faces.landmarks[:, :2, 1].mean(1),
        faces.landmarks[:, 2, 1],
        faces.landmarks[:, 3:, 1].mean(1),
    )
    assert ((eyes_y < nose_y) & (nose_y < mouth_y)).all()


def test_yunet_close_up_needs_and_gets_the_second_pass(analyzer):
    """A 1,100 px face is beyond what YuNet sees well at full size; the whole-photo pass at 320 px finds it."""
    close_up = _crop(load_image(sample_photo("zidane.jpg")).pixels, ZIDANE_FACES[0], 0.1, 1280)
    model = analyzer.face_detector("yunet")
    stages = model.stages(close_up, 20, 0.3)
    assert len(stages.passes) == 2 and stages.passes[1].input_size[1] == 320
    assert stages.passes[1].confidence.max() > stages.passes[0].confidence.max() + 0.1
    faces = model.predict(close_up, FACE_DETECTORS["yunet"][1], 20)
    assert len(faces) == 1
    x1, y1, x2, y2 = faces.xyxy[0]
    assert x2 - x1 > 700 and y2 - y1 > 900


@pytest.mark.parametrize("path", NO_FACE, ids=lambda p: p.name)
def test_yunet_finds_no_face_where_there_is_none(analyzer, path):
    analysis = analyzer.analyze(load_image(path), AnalysisOptions(tasks=("faces",)))
    assert len(analysis.faces) == 0


def test_face_detector_option_defaults_and_validation():
    assert AnalysisOptions().face_detector == "yunet" and AnalysisOptions().face_confidence == 0.8
    assert AnalysisOptions(face_detector="mtcnn").face_confidence == 0.9
    assert AnalysisOptions(face_detector="mtcnn", face_confidence=0.5).face_confidence == 0.5
    with pytest.raises(InvalidOptionsError, match="face_detector must be one of yunet, mtcnn"):
        AnalysisOptions(face_detector="haar")


def test_options_key_of_rows_stored_before_yunet_is_unchanged():
    """Rows written before the face_detector (and precision, merge_synonyms) options ran MTCNN, float32 and NMS
    per class: their key must still match."""
    pinned = (
        "tasks=labels,objects,faces;classifier=efficientnet_lite2;top_k=5;detector_size=416;min_confidence=0.25;"
        "iou_threshold=0.45;min_face_size=20;face_confidence=0.9;render_format=webp"
    )
    before = AnalysisOptions(face_detector="mtcnn", precision="float32", iou_threshold=0.45, merge_synonyms=False)
    assert before.cache_key == pinned
    now = pinned.replace("face_confidence=0.9", "face_confidence=0.8").replace(
        "iou_threshold=0.45", "iou_threshold=0.4"
    )
    assert AnalysisOptions().cache_key == now.replace("min_face", "merge_synonyms=True;min_face") + (
        ";face_detector=yunet;precision=int8"
    )
    stored_before = {
        k: v for k, v in before.to_dict().items() if k not in ("face_detector", "precision", "merge_synonyms")
    }
    assert AnalysisOptions.from_stored(stored_before) == before
    assert AnalysisOptions.from_stored(AnalysisOptions().to_dict()) == AnalysisOptions()
