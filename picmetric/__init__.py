"""PicMetric: what three neural networks see in a photo (ImageNet labels, COCO objects, faces with landmarks).

Typical use::

    from picmetric import analyze, load_image, render
    image = load_image("photo.jpg")
    analysis = analyze(image)
    print(analysis.to_dict())
    render(image, analysis, "objects")  # the boxes drawn on the photo, when a picture is wanted
"""

from pathlib import Path

from picmetric.core import decoding, fetching
from picmetric.core.analyzer import Analysis, Analyzer, shared_analyzer
from picmetric.core.catalog import TASKS
from picmetric.core.decoding import LoadedImage
from picmetric.core.drawing import render
from picmetric.core.options import AnalysisOptions, InvalidOptionsError
from picmetric.core.results import Classification, Detections, Faces
from picmetric.core.seed import seed_response
from picmetric.errors import (
    FetchError,
    ImageTooLargeError,
    InvalidImageError,
    ModelUnavailableError,
    PicMetricError,
    URLRefusedError,
)
from picmetric.settings import Settings, get_settings

__version__ = "0.2.0"

__all__ = [
    "TASKS",
    "Analysis",
    "AnalysisOptions",
    "Analyzer",
    "Classification",
    "Detections",
    "Faces",
    "FetchError",
    "ImageTooLargeError",
    "InvalidImageError",
    "InvalidOptionsError",
    "LoadedImage",
    "ModelUnavailableError",
    "PicMetricError",
    "URLRefusedError",
    "analyze",
    "shared_analyzer",
    "fetch_image",
    "load_image",
    "render",
    "seed_response",
]


# The one-call conveniences: the library's entry points read the environment's settings (``PICMETRIC_*``, ``.env``)
# when given none; everything below them takes its settings from its caller.


def load_image(
    source: bytes | str | Path, *, settings: Settings | None = None, origin: str = "upload", name: str | None = None
) -> LoadedImage:
    """Decode a photo (bytes or a path) into the working copy the models see."""
    return decoding.load_image(source, settings=settings or get_settings(), origin=origin, name=name)


def fetch_image(url: str, *, settings: Settings | None = None) -> LoadedImage:
    """Fetch an image URL (with the URL guards) and decode it like an upload."""
    return fetching.fetch_image(url, settings=settings or get_settings())


def analyze(
    image: LoadedImage, options: AnalysisOptions | None = None, *, settings: Settings | None = None
) -> Analysis:
    """Analyse a loaded image with the process's analyzer for these settings (the environment's by default)."""
    return shared_analyzer(settings or get_settings()).analyze(image, options)
