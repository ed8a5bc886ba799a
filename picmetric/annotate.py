"""Draw results onto images. Each annotator has one ``annotate(image, result)`` method and returns a new array;
line widths and text sizes follow the image size so renders stay legible from thumbnails to 4K photos."""

from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image

from .results import Detections, Faces

# A qualitative palette readable on a washed-out projector: saturated, mid-to-dark colours only (no pale yellow,
# peach, pink or mint), each dark enough for white label text (luminance <= 150, tested) (RGB).
PALETTE = [
    (230, 25, 75), (0, 114, 200), (40, 150, 60), (145, 30, 180), (230, 100, 0), (0, 128, 128),
    (225, 0, 200), (128, 0, 0), (0, 0, 128), (128, 110, 0), (160, 82, 45), (90, 90, 90),
    (20, 100, 60), (90, 60, 200), (200, 60, 30), (0, 90, 140), (160, 0, 90), (70, 120, 20),
    (120, 40, 140), (30, 120, 180),
]  # fmt: skip
FACE_COLOUR = (0, 155, 255)
LANDMARK_COLOURS = [(255, 64, 64), (255, 64, 64), (64, 255, 64), (64, 160, 255), (64, 160, 255)]
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def colour_for(class_id: int) -> tuple[int, int, int]:
    return PALETTE[int(class_id) % len(PALETTE)]


def _line_width(image: np.ndarray) -> int:
    return max(2, round(max(image.shape[:2]) / 400))


def _text_colour(background: tuple[int, int, int]) -> tuple[int, int, int]:
    luminance = 0.299 * background[0] + 0.587 * background[1] + 0.114 * background[2]
    return (0, 0, 0) if luminance > 150 else (255, 255, 255)


def _label(image: np.ndarray, text: str, x: int, y: int, colour: tuple[int, int, int]) -> None:
    """A filled tag above (or, at the top edge, inside) the box corner at (x, y)."""
    scale = max(0.5, max(image.shape[:2]) / 1100)
    thickness = max(1, round(scale * 1.5))
    (tw, th), baseline = cv2.getTextSize(text, _FONT, scale, thickness)
    pad = max(2, th // 4)
    top = y - th - baseline - 2 * pad
    if top < 0:
        top = y
    x = min(max(x, 0), max(image.shape[1] - tw - 2 * pad, 0))
    cv2.rectangle(image, (x, top), (x + tw + 2 * pad, top + th + baseline + 2 * pad), colour, cv2.FILLED)
    cv2.putText(image, text, (x + pad, top + pad + th), _FONT, scale, _text_colour(colour), thickness, cv2.LINE_AA)


class BoxAnnotator:
    """Object boxes with a 'label 87%' tag, one colour per class."""

    def annotate(self, image: np.ndarray, detections: Detections) -> np.ndarray:
        canvas = image.copy()
        width = _line_width(canvas)
        order = np.argsort(detections.confidence)  # most confident drawn last, on top
        for i in order:
            x1, y1, x2, y2 = (int(round(v)) for v in detections.xyxy[i])
            colour = colour_for(detections.class_id[i])
            cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, width, cv2.LINE_AA)
            _label(canvas, f"{detections.labels[i]} {detections.confidence[i]:.0%}", x1, y1, colour)
        return canvas


class FaceAnnotator:
    """Face boxes with their score and the five landmarks (eyes, nose, mouth corners) as dots."""

    def annotate(self, image: np.ndarray, faces: Faces) -> np.ndarray:
        canvas = image.copy()
        width = _line_width(canvas)
        for box, score, points in zip(faces.xyxy, faces.confidence, faces.landmarks, strict=True):
            x1, y1, x2, y2 = (int(round(v)) for v in box)
            cv2.rectangle(canvas, (x1, y1), (x2, y2), FACE_COLOUR, width, cv2.LINE_AA)
            radius = max(2, round((x2 - x1) / 30))
            for (px, py), colour in zip(points, LANDMARK_COLOURS, strict=True):
                cv2.circle(canvas, (int(round(px)), int(round(py))), radius, colour, cv2.FILLED, cv2.LINE_AA)
            _label(canvas, f"face {score:.0%}", x1, y1, FACE_COLOUR)
        return canvas


RENDER_FORMATS = {"png": ".png", "webp": ".webp", "jpeg": ".jpg"}
CONTENT_TYPES = {"png": "image/png", "webp": "image/webp", "jpeg": "image/jpeg"}


def encode_image(image: np.ndarray, fmt: str = "webp") -> bytes:
    """RGB array to PNG / WebP / JPEG bytes, with the fastest encoder measured for each (see benchmarks)."""
    if fmt not in RENDER_FORMATS:
        raise ValueError(f"render format must be one of {', '.join(RENDER_FORMATS)}")
    if fmt == "webp":  # Pillow's libwebp at method 0: 4x faster than OpenCV's default effort, similar size
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "WEBP", quality=85, method=0)
        return buffer.getvalue()
    params = [cv2.IMWRITE_PNG_COMPRESSION, 1] if fmt == "png" else [cv2.IMWRITE_JPEG_QUALITY, 90]
    ok, encoded = cv2.imencode(RENDER_FORMATS[fmt], cv2.cvtColor(image, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {fmt} image")
    return encoded.tobytes()
