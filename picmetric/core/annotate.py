"""Draw results onto images. Each annotator has one ``annotate(image, result)`` method and returns a new array;
line widths and text sizes follow the image size so renders stay legible from thumbnails to 4K photos."""

from __future__ import annotations

import io
from collections.abc import Callable

import cv2
import numpy as np
from PIL import Image

from picmetric.core.results import Detections, Faces

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


Rect = tuple[int, int, int, int]  # x1, y1, x2, y2


def _text_metrics(shape: tuple[int, ...], text: str) -> tuple[float, int, int, int, int]:
    """Font scale, thickness, tag width and height, and text height for a label on an image of this shape."""
    scale = max(0.5, max(shape[:2]) / 1100)
    thickness = max(1, round(scale * 1.5))
    (tw, th), baseline = cv2.getTextSize(text, _FONT, scale, thickness)
    pad = max(2, th // 4)
    return scale, thickness, tw + 2 * pad, th + baseline + 2 * pad, th


def _place(shape: tuple[int, ...], text: str, box: tuple[int, int, int, int], taken: list[Rect]) -> Rect:
    """Where a tag goes: on its own box, at the first free one of: above its top-left corner, inside that corner,
    under its bottom edge, inside its bottom-left corner. Only when all four are taken does it stack under the tag in
    its way (a weak face's tag never wanders off beside another face's box while its own box has room)."""
    _, _, width, height, _ = _text_metrics(shape, text)
    x1, y1, _, y2 = box
    x = min(max(x1, 0), max(shape[1] - width, 0))
    bottom = max(shape[0] - height, 0)
    for top in (y1 - height, y1, y2, y2 - height):
        top = min(max(top, 0), bottom)
        if not any(x < r[2] and r[0] < x + width and top < r[3] and r[1] < top + height for r in taken):
            taken.append((x, top, x + width, top + height))
            return taken[-1]
    top = y1 - height if y1 - height >= 0 else y1
    for _ in range(len(taken) + 1):
        hit = next((r for r in taken if x < r[2] and r[0] < x + width and top < r[3] and r[1] < top + height), None)
        if hit is None:
            break
        top = hit[3]
    top = min(top, max(shape[0] - height, 0))
    taken.append((x, top, x + width, top + height))
    return taken[-1]


def _label(image: np.ndarray, text: str, where: Rect, colour: tuple[int, int, int]) -> None:
    """A filled tag with the text, at a place ``_place`` chose."""
    scale, thickness, _, _, th = _text_metrics(image.shape, text)
    x1, y1, x2, y2 = where
    pad = max(2, th // 4)
    cv2.rectangle(image, (x1, y1), (x2, y2), colour, cv2.FILLED)
    cv2.putText(image, text, (x1 + pad, y1 + pad + th), _FONT, scale, _text_colour(colour), thickness, cv2.LINE_AA)


def _tag_places(
    shape: tuple[int, ...], found: Detections | Faces, text: Callable[[int], str]
) -> list[tuple[int, Rect]]:
    """Each box's tag, most confident first (it gets its natural place); later ones stack clear of it."""
    taken: list[Rect] = []
    placed = []
    for i in np.argsort(-found.confidence, kind="stable"):
        x1, y1, x2, y2 = (int(round(v)) for v in found.xyxy[i])
        placed.append((int(i), _place(shape, text(int(i)), (x1, y1, x2, y2), taken)))
    return placed


class BoxAnnotator:
    """Object boxes with a 'label 87%' tag, one colour per class."""

    def annotate(self, image: np.ndarray, detections: Detections) -> np.ndarray:
        canvas = image.copy()
        width = _line_width(canvas)
        order = np.argsort(detections.confidence)  # most confident drawn last, on top
        for i in order:
            x1, y1, x2, y2 = (int(round(v)) for v in detections.xyxy[i])
            cv2.rectangle(canvas, (x1, y1), (x2, y2), colour_for(detections.class_id[i]), width, cv2.LINE_AA)
        for i, where in self.label_places(canvas.shape, detections):  # tags after every box: no line crosses one
            _label(canvas, self.text(detections, i), where, colour_for(detections.class_id[i]))
        return canvas

    @staticmethod
    def text(detections: Detections, i: int) -> str:
        return f"{detections.labels[i]} {detections.confidence[i]:.0%}"

    def label_places(self, shape: tuple[int, ...], detections: Detections) -> list[tuple[int, Rect]]:
        return _tag_places(shape, detections, lambda i: self.text(detections, i))


class FaceAnnotator:
    """Face boxes with their score and the five landmarks (eyes, nose, mouth corners) as dots."""

    def annotate(self, image: np.ndarray, faces: Faces) -> np.ndarray:
        canvas = image.copy()
        width = _line_width(canvas)
        for box, points in zip(faces.xyxy, faces.landmarks, strict=True):
            x1, y1, x2, y2 = (int(round(v)) for v in box)
            cv2.rectangle(canvas, (x1, y1), (x2, y2), FACE_COLOUR, width, cv2.LINE_AA)
            radius = max(2, round((x2 - x1) / 30))
            for (px, py), colour in zip(points, LANDMARK_COLOURS, strict=True):
                cv2.circle(canvas, (int(round(px)), int(round(py))), radius, colour, cv2.FILLED, cv2.LINE_AA)
        for i, where in self.label_places(canvas.shape, faces):
            _label(canvas, self.text(faces, i), where, FACE_COLOUR)
        return canvas

    @staticmethod
    def text(faces: Faces, i: int) -> str:
        return f"face {faces.confidence[i]:.0%}"

    def label_places(self, shape: tuple[int, ...], faces: Faces) -> list[tuple[int, Rect]]:
        return _tag_places(shape, faces, lambda i: self.text(faces, i))


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
