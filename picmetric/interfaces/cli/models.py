"""The model commands: ``models list|warm|add|remove`` (the classifiers, the detectors, the face detectors and your
own) and ``explain`` (where the classifier's evidence is in a photo, and what its layers see)."""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from picmetric.core.analyzer import shared_analyzer
from picmetric.core.annotate import encode_image
from picmetric.core.catalog import (
    CLASSIFIERS,
    DETECTOR_SIZES,
    FACE_DETECTORS,
    INT8_SIZES,
    ONNX_LAYOUTS,
    PRECISIONS,
    add_darknet,
    add_onnx,
    detectors,
    remove_detector,
)
from picmetric.core.explain import LAYER_TITLES, class_activations, feature_grid
from picmetric.core.options import AnalysisOptions
from picmetric.interfaces.cli.common import DEFAULTS, load_target, prepare_out_dir
from picmetric.settings import Settings


def register(commands: argparse._SubParsersAction) -> None:
    explain = commands.add_parser(
        "explain", help="where the classifier's evidence is (class activation map) and what its layers see"
    )
    explain.add_argument("photo", metavar="PATH_OR_URL")
    explain.add_argument("--out", required=True, metavar="DIR", help="folder for the .npy map and the pictures")
    explain.add_argument("--classifier", default=DEFAULTS.classifier, choices=sorted(CLASSIFIERS))
    explain.set_defaults(func=cmd_explain)

    models = commands.add_parser("models", help="list, warm, add or remove models")
    models.set_defaults(func=cmd_models)
    model_actions = models.add_subparsers(dest="action")
    model_actions.add_parser("list", help="every classifier and detector, with its classes and source")
    warm = model_actions.add_parser("warm", help="load (and on first use convert) every model")
    warm.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    add = model_actions.add_parser("add", help="add your own object detector (Darknet or ONNX), converted once")
    add.add_argument("name", help="how analyses choose it: --detector NAME, detector=NAME")
    given = add.add_mutually_exclusive_group(required=True)
    given.add_argument("--darknet", nargs=2, metavar=("CFG", "WEIGHTS"), help="a Darknet cfg and its weights")
    given.add_argument("--onnx", metavar="FILE", help="an ONNX export (YOLOv5/v7, YOLOv8/v11, YOLOX layouts)")
    add.add_argument("--names", required=True, metavar="FILE", help="class names, one per line, in output order")
    add.add_argument("--layout", choices=ONNX_LAYOUTS, help="the ONNX output layout (found from its shape if unsaid)")
    remove = model_actions.add_parser("remove", help="remove a detector you added")
    remove.add_argument("name")


def cmd_models(args: argparse.Namespace, settings: Settings) -> int:
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
    analyzer = shared_analyzer(settings)
    if action == "warm":
        return _warm(analyzer, settings, quiet=args.quiet)
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


def cmd_explain(args: argparse.Namespace, settings: Settings) -> int:
    """Where the classifier's evidence for its top label is, and what three of its layers see, as files."""
    problem = prepare_out_dir(args.out)
    if problem:
        print(f"picmetric: {problem}", file=sys.stderr)
        return 2
    out = Path(args.out)
    image = load_target(args.photo, settings)
    options = AnalysisOptions(classifier=args.classifier)
    analyzer = shared_analyzer(settings)
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


def _warm(analyzer, settings: Settings, quiet: bool) -> int:
    """Load every model, converting it the first time: one progress line each on stderr (a first run converts for
    about a minute, a cached model loads in a second), then the models and their state."""
    steps: list[tuple[str, Callable[[], object]]] = []
    for key, spec in CLASSIFIERS.items():
        for precision in ("float32", "int8") if spec.int8 else ("float32",):
            steps.append((f"{key} {precision}", functools.partial(analyzer.classifier, key, precision)))
    for entry in detectors(settings):
        builtin = entry.family == "builtin"
        for size in DETECTOR_SIZES if builtin else (entry.input_size,):
            for precision in PRECISIONS if builtin and size in INT8_SIZES else ("float32",):  # quantized now
                steps.append((f"{entry.name} {size} px {precision}",
                              functools.partial(analyzer.detector, size, entry.name, precision)))  # fmt: skip
    for key in FACE_DETECTORS:
        steps.append((key, functools.partial(analyzer.face_detector, key)))
    for number, (what, model) in enumerate(steps, 1):
        started = time.monotonic()
        if not quiet:
            print(f"  model {number}/{len(steps)}: {what} …", end="", file=sys.stderr, flush=True)
        model().load()  # type: ignore[attr-defined]
        if not quiet:
            print(f" {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)
    for version, loaded in analyzer.loaded_models().items():
        print(f"{version:30s} {'loaded' if loaded else 'not loaded'}")
    return 0
