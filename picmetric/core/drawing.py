"""Results drawn on the photo: the annotated pictures the API serves, the CLI writes and the board shows. Drawn
only when asked for: the dashboard draws boxes in the browser, and two eager renders were a third of an analysis'
CPU time."""

from __future__ import annotations

import numpy as np

from picmetric.core.analyzer import Analysis
from picmetric.core.annotate import BoxAnnotator, FaceAnnotator, encode_image
from picmetric.core.decoding import LoadedImage
from picmetric.core.results import Detections, Faces


def draw(image: LoadedImage, found: Detections | Faces) -> np.ndarray:
    """Results in original pixels drawn on the photo's working copy (``image``: the photo they were found in,
    loaded with the same working size): boxes with their class tags, or faces with their landmarks."""
    on_working = found.scaled(1 / image.scale)
    if isinstance(on_working, Detections):
        return BoxAnnotator().annotate(image.pixels, on_working)
    return FaceAnnotator().annotate(image.pixels, on_working)


def render(image: LoadedImage, analysis: Analysis, kind: str) -> bytes:
    """``analysis``' objects or faces drawn on the photo (``draw``), encoded in its ``render_format``."""
    found = {"objects": analysis.detections, "faces": analysis.faces}.get(kind)
    if found is None:
        raise ValueError(f"this analysis has no {kind} to draw (it can draw {', '.join(analysis.render_kinds)})")
    return encode_image(draw(image, found), analysis.options.render_format)
