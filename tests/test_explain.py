"""Inside the network: class activation maps that are exact and land on the object, layers, one convolution step
computed by hand, and ``picmetric explain``."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from picmetric import AnalysisOptions, load_image
from picmetric.core.explain import LAYER_TITLES, class_activations, convolution_step, feature_grid
from picmetric.core.models.classifier import softmax
from picmetric.core.samples import hand_drawn_boxes, sample_photo_path
from picmetric.interfaces.cli import main

GROUND_TRUTH = hand_drawn_boxes()
#: shipped photos with one main object (their hand-drawn boxes say where it is)
ONE_OBJECT = [
    "darknet/eagle.jpg",
    "foolbox/data/imagenet_00_243.jpg",
    "foolbox/data/imagenet_06_609.jpg",
    "foolbox/data/imagenet_07_609.jpg",
    "foolbox/data/imagenet_16_251.jpg",
]


@pytest.mark.parametrize("classifier", ["efficientnet_lite2", "mobilenet_v2"])
def test_the_class_activation_map_is_exact(analyzer, zidane_path, classifier):
    """Global average pooling then one linear layer: the map's mean plus the class' bias is the class' logit."""
    image = load_image(zidane_path)
    inspector = analyzer.inspector(classifier)
    inspection = inspector.inspect(image.pixels)
    for found in class_activations(analyzer, image, AnalysisOptions(classifier=classifier)):
        logit = inspection.logits[found.class_id]
        assert found.grid.mean() + inspector.class_bias(found.class_id) == pytest.approx(logit, abs=1e-3)
        assert found.probability == pytest.approx(float(softmax(inspection.logits)[found.class_id]), abs=1e-6)
        assert found.on_photo.shape == (image.height, image.width) and found.on_photo.dtype == np.float32
        assert found.overlay.shape == image.pixels.shape


@pytest.mark.parametrize("key", ONE_OBJECT)
def test_the_evidence_for_the_top_label_lies_on_the_object(analyzer, key):
    image = load_image(sample_photo_path(key))
    (top, *_) = class_activations(analyzer, image, AnalysisOptions())
    x, y = top.peak
    boxes = [box[1:] for box in GROUND_TRUTH[key]]
    main = max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))  # the main object: the largest drawn box
    assert main[0] <= x <= main[2] and main[1] <= y <= main[3], (top.name, top.peak, main)


def test_layers_show_their_most_varied_channels(analyzer, bus_path):
    image = load_image(bus_path)
    shapes = {layer: feature_grid(analyzer, image, AnalysisOptions(), layer).shape for layer in LAYER_TITLES}
    assert shapes["early"][1] > shapes["middle"][1] > shapes["late"][1]  # deeper: coarser and more channels
    assert shapes["early"][0] < shapes["middle"][0] < shapes["late"][0]
    grid = feature_grid(analyzer, image, AnalysisOptions(), "middle", count=8)
    assert len(grid.channels) == 8 and grid.picture.shape[2] == 3 and grid.picture.dtype == np.uint8
    with pytest.raises(ValueError, match="layer must be one of early, middle, late"):
        feature_grid(analyzer, image, AnalysisOptions(), "deepest")


def test_one_convolution_step_by_hand_equals_the_real_layer(analyzer, zidane_path):
    image = load_image(zidane_path)
    for classifier in ("efficientnet_lite2", "mobilenet_v2"):
        for position in ((0, 0), (60, 40), (129, 129), (500, 500)):  # corners, the middle, past the edge (clamped)
            step = convolution_step(analyzer, image, AnalysisOptions(classifier=classifier), 3, *position)
            assert step.patch.shape == step.weights.shape == (3, 3, 3)
            assert step.total == pytest.approx(float(step.products.sum()) + step.bias, abs=1e-5)
            assert step.output == pytest.approx(step.checked, abs=1e-4)  # ONNX Runtime's own number


def test_picmetric_explain_writes_the_map_and_the_layers(tmp_path, analyzer, capsys):
    photo = sample_photo_path("darknet/eagle.jpg")
    assert main(["explain", str(photo), "--out", str(tmp_path / "out")]) == 0
    said = capsys.readouterr().out
    assert "bald eagle" in said and "strongest evidence at" in said
    heat = np.load(tmp_path / "out" / "class_activation.npy")
    width, height = Image.open(photo).size
    assert heat.shape == (height, width) and heat.dtype == np.float32 and heat.max() > 0
    for name in ("class_activation", "features_early", "features_middle", "features_late"):
        assert Image.open(tmp_path / "out" / f"{name}.png").format == "PNG"
