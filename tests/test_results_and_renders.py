"""Result types validate what they hold; annotators draw where the results are; encoders give real files."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from picmetric.core.annotate import BoxAnnotator, FaceAnnotator, encode_image
from picmetric.core.results import Classification, Detections, Faces
from picmetric.core.wire import objects_of

NAMES = ["person", "bus"]


def test_detections_validate_their_arrays():
    with pytest.raises(ValueError, match="shape"):
        Detections(np.zeros((2, 3)), [0.5, 0.5], [0, 1], NAMES)
    with pytest.raises(ValueError, match="confidence"):
        Detections(np.zeros((1, 4)), [1.5], [0], NAMES)
    with pytest.raises(ValueError, match="class id"):
        Detections(np.zeros((1, 4)), [0.5], [7], NAMES)
    with pytest.raises(ValueError, match="x2 >= x1"):
        Detections([[10, 10, 5, 20]], [0.5], [0], NAMES)
    assert len(Detections(np.zeros((0, 4)), [], [], NAMES)) == 0


def test_faces_and_classification_validate():
    with pytest.raises(ValueError, match="landmarks"):
        Faces([[0, 0, 10, 10]], [0.9], np.zeros((1, 4, 2)))
    with pytest.raises(ValueError, match="one name"):
        Classification([1, 2], [0.5, 0.2], ["a"], model="m")


def test_display_filter_keeps_the_same_boxes():
    d = Detections([[0, 0, 10, 10], [5, 5, 20, 20], [1, 1, 3, 3]], [0.9, 0.3, 0.6], [0, 1, 0], NAMES)
    assert d.filter(0.5).labels == ["person", "person"]
    assert objects_of(d.filter(0.0, classes={"bus"}))[0].box == [5, 5, 20, 20]


def test_box_annotator_draws_on_the_box_edges_only():
    image = np.full((200, 300, 3), 127, np.uint8)
    d = Detections([[50, 60, 150, 160]], [0.9], [1], NAMES)
    out = BoxAnnotator().annotate(image, d)
    assert out.shape == image.shape and (image == 127).all()  # input untouched
    assert (out[110, 50] != 127).any()  # left edge drawn
    assert (out[110, 100] == 127).all()  # box interior untouched
    assert (out[190, 250] == 127).all()  # far away untouched


def test_face_annotator_marks_landmarks():
    image = np.zeros((120, 120, 3), np.uint8)
    landmarks = np.array([[[40, 50], [80, 50], [60, 65], [45, 85], [75, 85]]], np.float32)
    out = FaceAnnotator().annotate(image, Faces([[20, 20, 100, 110]], [0.99], landmarks))
    for x, y in landmarks[0].astype(int):
        assert out[y, x].any()


@pytest.mark.parametrize("fmt", ["webp", "png", "jpeg"])
def test_encoders_write_decodable_files(fmt):
    image = np.random.default_rng(1).integers(0, 255, size=(50, 70, 3), dtype=np.uint8)
    data = encode_image(image, fmt)
    decoded = Image.open(io.BytesIO(data))
    assert decoded.format == {"webp": "WEBP", "png": "PNG", "jpeg": "JPEG"}[fmt]
    assert decoded.size == (70, 50)
    if fmt == "png":
        assert (np.asarray(decoded) == image).all()  # lossless and RGB order kept


def test_the_palette_is_readable_on_a_projector():
    """No pale colour (yellow, peach, pink, mint) that a projector washes out: every class colour takes white text,
    and no two of the first ten look alike."""
    from picmetric.core.annotate import PALETTE, _text_colour

    assert len(set(PALETTE)) == len(PALETTE) >= 20
    for colour in PALETTE:
        assert _text_colour(colour) == (255, 255, 255), colour
        assert max(colour) - min(colour) >= 60 or max(colour) <= 128, colour  # saturated, or dark grey at most
    first = np.array(PALETTE[:10], float)
    distances = np.linalg.norm(first[:, None] - first[None], axis=-1) + np.eye(10) * 1e9
    assert distances.min() > 60


def test_labels_of_crowded_boxes_stack_instead_of_covering_each_other():
    """Five people side by side with boxes starting at the same height (a team photo): every tag stays readable."""
    boxes = [[40 + 30 * i, 100, 200 + 30 * i, 300] for i in range(5)]
    d = Detections(boxes, [0.9, 0.8, 0.7, 0.6, 0.5], [0] * 5, NAMES)
    places = [where for _, where in BoxAnnotator().label_places((400, 600, 3), d)]
    for a, rect_a in enumerate(places):
        assert rect_a[0] >= 0 and rect_a[2] <= 600 and rect_a[1] >= 0 and rect_a[3] <= 400, rect_a
        for rect_b in places[a + 1 :]:
            overlap = min(rect_a[2], rect_b[2]) > max(rect_a[0], rect_b[0]) and min(rect_a[3], rect_b[3]) > max(
                rect_a[1], rect_b[1]
            )
            assert not overlap, (rect_a, rect_b)
    assert places[0][3] <= 100  # the most confident keeps its natural place, above its box
    out = BoxAnnotator().annotate(np.full((400, 600, 3), 127, np.uint8), d)
    assert (out != 127).any()


def test_a_weak_faces_tag_stays_on_its_own_box():
    """Two faces side by side, the weaker one's box starting under the stronger one's tag: its tag goes inside or
    under its own box, never beside the other face."""
    from picmetric.core.annotate import FaceAnnotator
    from picmetric.core.results import Faces

    boxes = np.array([[100, 100, 220, 260], [150, 120, 260, 270]], np.float32)
    faces = Faces(boxes, np.array([0.95, 0.4], np.float32), np.zeros((2, 5, 2), np.float32))
    places = dict(FaceAnnotator().label_places((400, 600, 3), faces))
    strong, weak = places[0], places[1]
    assert not (min(strong[2], weak[2]) > max(strong[0], weak[0]) and min(strong[3], weak[3]) > max(strong[1], weak[1]))
    x1, y1, x2, y2 = boxes[1]
    assert x1 - 1 <= weak[0] <= x2 and y1 - (weak[3] - weak[1]) <= weak[1] <= y2, (weak, boxes[1])
