"""PicMetric: what three neural networks see in a photo (ImageNet labels, COCO objects, faces with landmarks).

Typical use::

    from picmetric import analyze, load_image, render
    image = load_image("photo.jpg")
    analysis = analyze(image)
    print(analysis.to_dict())
    render(image, analysis, "objects")  # the boxes drawn on the photo, when a picture is wanted
"""

from picmetric.core.intake import LoadedImage, fetch_image, load_image
from picmetric.core.pipeline import (
    TASKS,
    Analysis,
    AnalysisOptions,
    Analyzer,
    InvalidOptionsError,
    analyze,
    default_analyzer,
    render,
)
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
    "default_analyzer",
    "fetch_image",
    "load_image",
    "render",
    "seed_response",
]
