"""What every command shares: the analysis option flags (parsed by the options model; a refusal names the flags as
typed), inputs (files, folders, URLs), the ``--out`` folder, and the lines a result prints as."""

from __future__ import annotations

import argparse
import os
import re
from collections import Counter
from pathlib import Path

from picmetric.core.analyzer import Analysis
from picmetric.core.catalog import CLASSIFIERS, DETECTOR_SIZES, FACE_DETECTORS, PRECISIONS, TASKS
from picmetric.core.decoding import IMAGE_SUFFIXES, LoadedImage, load_image
from picmetric.core.fetching import fetch_image
from picmetric.core.options import AnalysisOptions
from picmetric.errors import PicMetricError
from picmetric.settings import Settings


class UsageError(PicMetricError):
    """A wrong flag or value on the command line: exit code 2, like argparse's own refusals."""


#: the flag a person typed for each option whose flag is not simply its name with dashes
_FLAG_NAMES = {"iou_threshold": "--iou", "render_format": "--format"}


DEFAULTS = AnalysisOptions()


def is_url(text: str) -> bool:
    return re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", text) is not None


def load_target(target: str, settings: Settings) -> LoadedImage:
    return fetch_image(target, settings=settings) if is_url(target) else load_image(target, settings=settings)


def prepare_out_dir(out: str) -> str | None:
    """Create the ``--out`` folder before any work; the reason it cannot be used, or None."""
    try:
        Path(out).mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        return f"--out {out}: a file of that name exists; give a folder"
    except OSError as exc:
        return f"--out {out}: cannot create that folder ({exc.strerror})"
    if not os.access(out, os.W_OK):
        return f"--out {out}: the folder is not writable"
    return None


def expand_inputs(inputs: list[str]) -> list[str]:
    """Files and URLs as given; a folder becomes every image file under it (recursively, by extension, sorted)."""
    expanded: list[str] = []
    for target in inputs:
        folder = Path(target)
        if not is_url(target) and folder.is_dir():
            found = sorted(str(p) for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not found:
                raise PicMetricError(f"{target}: no image files in this folder ({', '.join(IMAGE_SUFFIXES)})")
            expanded += found
        else:
            expanded.append(target)
    return expanded


def _percent(value: float) -> str:
    return f"{value:.0%}"


def summary(analysis: Analysis, from_history: bool = False) -> list[str]:
    """Readable lines for one analysis."""
    head = f"{analysis.name or analysis.sha256[:12]}  {analysis.width}x{analysis.height} {analysis.format}"
    when = f"from history, analysed {analysis.created_at:%Y-%m-%d %H:%M}" if from_history else None
    lines = [f"{head}  ({when or format(analysis.timings_ms['total'], '.0f') + ' ms'})"]
    if analysis.classification is not None:
        c = analysis.classification
        lines.append(
            "  labels : " + ", ".join(f"{n} {_percent(p)}" for n, p in zip(c.names, c.confidence, strict=True))
        )
    if analysis.detections is not None:
        d = analysis.detections
        counts = Counter(d.labels)
        text = ", ".join(f"{n} {label}" for label, n in counts.most_common()) or "none"
        lines.append(f"  objects: {text}")
    if analysis.faces is not None:
        scores = ", ".join(_percent(p) for p in analysis.faces.confidence)
        lines.append(f"  faces  : {len(analysis.faces)}" + (f" ({scores})" if scores else ""))
    return lines


def options_from(args: argparse.Namespace) -> AnalysisOptions:
    return AnalysisOptions(
        tasks=tuple(args.tasks.split(",")),
        classifier=args.classifier,
        top_k=args.top_k,
        detector=args.detector,
        detector_size=args.detector_size,
        min_confidence=args.min_confidence,
        iou_threshold=args.iou,
        merge_synonyms=args.merge_synonyms,
        min_face_size=args.min_face_size,
        face_confidence=args.face_confidence,
        render_format=args.format,
        face_detector=args.face_detector,
        precision=args.precision,
    )


def _flag(option: str) -> str:
    return _FLAG_NAMES.get(option, "--" + option.replace("_", "-"))


def checked_options(args: argparse.Namespace) -> AnalysisOptions:
    """The options from the flags; a refusal names the flags as typed (--top-k, not top_k)."""
    try:
        return options_from(args)
    except PicMetricError as exc:
        fields = "|".join(sorted(AnalysisOptions.model_fields, key=len, reverse=True))
        message = re.sub(rf"\b({fields})\b", lambda m: _flag(m.group(1)), str(exc))
        raise UsageError(message) from None


def option_flags(parser: argparse.ArgumentParser) -> None:
    """The analysis options, shared by ``analyze`` and ``ingest``."""
    parser.add_argument("--tasks", default=",".join(TASKS), help="comma-separated subset of labels,objects,faces")
    parser.add_argument("--classifier", default=DEFAULTS.classifier, choices=sorted(CLASSIFIERS))
    parser.add_argument("--top-k", type=int, default=DEFAULTS.top_k)
    parser.add_argument(
        "--detector",
        default=DEFAULTS.detector,
        help=f"object detector: {DEFAULTS.detector} or one you added (models add)",
    )
    parser.add_argument("--detector-size", type=int, default=DEFAULTS.detector_size, choices=DETECTOR_SIZES)
    parser.add_argument("--min-confidence", type=float, default=DEFAULTS.min_confidence)
    parser.add_argument("--iou", type=float, default=DEFAULTS.iou_threshold)
    parser.add_argument(
        "--no-merge-synonyms", dest="merge_synonyms", action="store_false",
        help="NMS per class only (by default car/truck/bus, horse/cow/sheep and dog/cat suppress each other)",
    )  # fmt: skip
    parser.add_argument("--min-face-size", type=int, default=DEFAULTS.min_face_size)
    parser.add_argument(
        "--face-confidence", type=float, default=None, help="minimum face score (default: the face detector's own)"
    )
    parser.add_argument("--face-detector", default=DEFAULTS.face_detector, choices=list(FACE_DETECTORS))
    parser.add_argument(
        "--precision", default=DEFAULTS.precision, choices=PRECISIONS,
        help="int8: the quantized models that keep the float models' accuracy (EfficientNet-Lite2, YOLOv4-tiny 416)",
    )  # fmt: skip
    parser.add_argument("--format", default=DEFAULTS.render_format, choices=("webp", "png", "jpeg"))
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def open_service(settings: Settings):
    """The service on the configured storage (a database connection: only the commands that store or read)."""
    from picmetric.service.analyses import AnalysisService

    return AnalysisService(settings)


def open_jobs(service):
    from picmetric.service.jobs import JobService

    return JobService(service)
