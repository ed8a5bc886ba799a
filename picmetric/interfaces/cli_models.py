"""The CLI's model commands (``picmetric models list|warm|add|remove``: the classifiers, the detectors, the face
detectors and your own; ``picmetric explain``: what the classifier sees in a photo), and the input helpers every
command shares."""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

import numpy as np

from picmetric.core.annotate import encode_image
from picmetric.core.explain import LAYER_TITLES, class_activations, feature_grid
from picmetric.core.intake import LoadedImage, fetch_image, load_image
from picmetric.core.pipeline import (
    CLASSIFIERS,
    DETECTOR_SIZES,
    FACE_DETECTORS,
    INT8_SIZES,
    PRECISIONS,
    AnalysisOptions,
    add_darknet,
    add_onnx,
    default_analyzer,
    detectors,
    remove_detector,
)
from picmetric.settings import get_settings


def is_url(text: str) -> bool:
    return re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", text) is not None


def load_target(target: str) -> LoadedImage:
    return fetch_image(target) if is_url(target) else load_image(target)


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


def cmd_models(args: argparse.Namespace) -> int:
    settings = get_settings()
    action = getattr(args, "action", None) or "list"
    if action == "add":
        if args.darknet:
            cfg, weights = (Path(p) for p in args.darknet)
            entry = add_darknet(settings, args.name, cfg, weights, Path(args.names))
        else:
            entry = add_onnx(settings, args.name, Path(args.onnx), Path(args.names), args.layout)
        print(f"added {entry.name}: {len(entry.classes)} classes, input {entry.input_size} px, {entry.source}")
        print(f"use it with --detector {entry.name} (CLI), detector={entry.name} (API), or the dashboard's sidebar")
        return 0
    if action == "remove":
        remove_detector(settings, args.name)
        print(f"removed {args.name} (its stored analyses stay in the history)")
        return 0
    analyzer = default_analyzer(settings)
    if action == "warm":
        for key, spec in CLASSIFIERS.items():
            for precision in ("float32", "int8") if spec.int8 else ("float32",):
                analyzer.classifier(key, precision).load()
        for entry in detectors(settings):
            builtin = entry.family == "builtin"
            for size in DETECTOR_SIZES if builtin else (entry.input_size,):
                for precision in PRECISIONS if builtin and size in INT8_SIZES else ("float32",):  # quantized now
                    analyzer.detector(size, entry.name, precision).load()
        for key in FACE_DETECTORS:
            analyzer.face_detector(key).load()
        for version, loaded in analyzer.loaded_models().items():
            print(f"{version:30s} {'loaded' if loaded else 'not loaded'}")
        return 0
    print("Classifiers (ImageNet labels)")
    for spec in CLASSIFIERS.values():
        print(f"  {spec.key:20s} {spec.title:20s} top-1 {spec.top1:.1f}%  {spec.licence}")
    print("Object detectors (--detector NAME)")
    for entry in detectors(settings):
        shown = ", ".join(entry.classes[:4]) + (", ..." if len(entry.classes) > 4 else "")
        sizes = DETECTOR_SIZES if entry.family == "builtin" else (entry.input_size,)
        sizes_text = " or ".join(f"{size} px" for size in sizes)
        print(f"  {entry.name:20s} {len(entry.classes)} classes ({shown}), input {sizes_text}; {entry.source}")
    print("Face detectors (--face-detector NAME)")
    for key, (_, score, title) in FACE_DETECTORS.items():
        print(f"  {key:20s} {title:30s} default face score {score}")
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    """Where the classifier's evidence for its top label is, and what three of its layers see, as files."""
    problem = prepare_out_dir(args.out)
    if problem:
        print(f"picmetric: {problem}", file=sys.stderr)
        return 2
    out = Path(args.out)
    image = load_target(args.photo)
    options = AnalysisOptions(classifier=args.classifier)
    analyzer = default_analyzer(get_settings())
    labels = analyzer.classifier(options.classifier, options.classifier_precision).predict(image.pixels, top_k=3)
    top = class_activations(analyzer, image, options, class_ids=[int(i) for i in labels.class_id])[0]
    np.save(out / "class_activation.npy", top.on_photo)
    written = [out / "class_activation.npy", out / "class_activation.png"]
    (out / "class_activation.png").write_bytes(encode_image(top.overlay, "png"))
    for layer in LAYER_TITLES:
        grid = feature_grid(analyzer, image, options, layer)
        path = out / f"features_{layer}.png"
        path.write_bytes(encode_image(grid.picture, "png"))
        written.append(path)
    sure = [f"{name} {p:.1%}" for name, p in zip(labels.names, labels.confidence, strict=True)]
    print(f"{image.name or args.photo}: {sure[0]}; strongest evidence at x={top.peak[0]}, y={top.peak[1]} "
          f"(then {', '.join(sure[1:])})")  # fmt: skip
    for path in written:
        print(f"  wrote {path}")
    return 0
