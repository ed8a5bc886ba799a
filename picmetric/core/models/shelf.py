"""A user's own object detectors, kept under the data folder (``<data_dir>/detectors/<name>/``), converted once.

Each folder holds ``model.onnx`` (a Darknet pair converted when added, or the ONNX export as given), ``classes.txt``,
the Darknet cfg where there was one (its heads decode the output), and ``detector.json`` (family, layout, input size,
where it came from). A detector is checked completely when added: the weights against the cfg, the names against
the output, the output against its layout, and one run on a blank photo; so a bad file is refused with its cause
then, never at analysis time.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
import threading
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnx

from picmetric.core.convert.darknet import (
    MAX_CFG_BYTES,
    MAX_CLASSES,
    MAX_INPUT_SIDE,
    DarknetError,
    darknet_to_onnx,
    net_size,
    parse_cfg,
    read_bounded,
    yolo_heads,
)
from picmetric.core.models.base import create_session
from picmetric.core.models.detector import (
    DETECTOR,
    DETECTOR_SIZES,
    ONNX_LAYOUTS,
    BuiltinDetector,
    DarknetDetector,
    ExportedDetector,
    ObjectDetector,
    cells,
    coco_class_names,
)
from picmetric.errors import InvalidModelError, UnknownModelError
from picmetric.settings import Settings

NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]{0,39}")
#: a class name is stored with every box it labels (an indexed text column): short, printable
MAX_CLASS_NAME = 64
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
#: the largest ONNX export read (YOLOv8x is 275 MB)
MAX_ONNX_BYTES = 1 << 30
_lock = threading.Lock()


@dataclass(frozen=True)
class DetectorEntry:
    """One object detector that analyses can choose (``detector=<name>``)."""

    name: str
    family: str  # builtin | darknet | onnx
    layout: str  # darknet | yolov5 | yolov8 | yolox
    classes: list[str]
    input_size: int
    source: str  # where it came from, for ``models list``
    added_at: str = ""

    @property
    def version(self) -> str:
        """Changes when a detector of this name is removed and added again: models and results keep apart."""
        return hashlib.sha256(f"{self.name}|{self.added_at}".encode()).hexdigest()[:8]


def shelf_folder(settings: Settings) -> Path:
    return settings.data_dir / "detectors"


def builtin_entry() -> DetectorEntry:
    return DetectorEntry(DETECTOR.key, "builtin", "darknet", coco_class_names(), DETECTOR_SIZES[0],
                         f"{DETECTOR.title}; from the {DETECTOR.source}; {DETECTOR.licence}")  # fmt: skip


def detectors(settings: Settings) -> list[DetectorEntry]:
    """Every detector an analysis can choose: the built-in one first, then the added ones by name."""
    folder = shelf_folder(settings)
    added = (_read_entry(meta) for meta in sorted(folder.glob("*/detector.json"))) if folder.is_dir() else ()
    return [builtin_entry(), *(entry for entry in added if entry is not None)]


def _read_entry(meta: Path) -> DetectorEntry | None:
    """An added detector's description; None for a folder someone edited by hand (not offered; `models remove`
    still clears it)."""
    try:
        return DetectorEntry(**json.loads(meta.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def detector_entry(settings: Settings, name: str) -> DetectorEntry:
    """The detector of this name: its own file is read (every analysis asks), the shelf listed only to refuse."""
    if name == DETECTOR.key:
        return builtin_entry()
    found = _read_entry(shelf_folder(settings) / name / "detector.json") if NAME_PATTERN.fullmatch(name) else None
    if found is not None and found.name == name:
        return found
    names = ", ".join(entry.name for entry in detectors(settings))
    raise UnknownModelError(f"no object detector named {name!r}; the detectors here are {names}")


def load_detector(
    settings: Settings,
    entry: DetectorEntry,
    input_size: int = DETECTOR_SIZES[0],
    folder: Path | None = None,
    precision: str = "float32",
) -> ObjectDetector:
    """The model of an entry; ``input_size`` and ``precision`` apply to the built-in detector only (an added one
    runs at its own size, in float)."""
    if entry.family == "builtin":
        return BuiltinDetector(input_size, precision)
    folder = folder or shelf_folder(settings) / entry.name
    model: ObjectDetector
    if entry.family == "darknet":
        model = DarknetDetector(
            entry.name, folder / "model.cfg", folder / "model.onnx", entry.classes, entry.input_size
        )
    else:
        model = ExportedDetector(entry.name, folder / "model.onnx", entry.classes, entry.input_size, entry.layout)
    model.settings = settings
    return model


def read_names(path: Path) -> list[str]:
    """Class names, one per line (Darknet's ``.names``, a ``classes.txt``); blank lines are skipped. Checked before
    any weights are read: each name is stored with every box it labels, so it must be short, printable text."""
    try:
        text = read_bounded(path, MAX_CFG_BYTES, "names").decode("utf-8-sig")
    except DarknetError as exc:
        raise InvalidModelError(str(exc)) from None
    except UnicodeDecodeError:
        raise InvalidModelError(f"the names file {path.name} is not UTF-8 text") from None
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise InvalidModelError(f"the names file {path.name} has no class names (one per line)")
    if len(names) > MAX_CLASSES:
        raise InvalidModelError(f"the names file {path.name} has {len(names):,} lines; at most {MAX_CLASSES:,} classes")
    for number, name in enumerate(names, 1):
        if len(name) > MAX_CLASS_NAME:
            raise InvalidModelError(
                f"class {number} in {path.name} is {len(name)} characters long; at most {MAX_CLASS_NAME}"
            )
        if _CONTROL.search(name):
            raise InvalidModelError(f"class {number} in {path.name} contains a control character (or NUL)")
    return names


def _check_name(settings: Settings, name: str) -> None:
    if not NAME_PATTERN.fullmatch(name):
        raise InvalidModelError(
            f"{name!r} is not a usable detector name: 1-40 lower-case letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    if name == DETECTOR.key:
        raise InvalidModelError(f"{name!r} is the built-in detector's name, reserved: choose another name")
    if any(entry.name == name for entry in detectors(settings)):
        raise InvalidModelError(f"a detector named {name!r} exists already; remove it first (picmetric models remove)")


def add_darknet(settings: Settings, name: str, cfg: Path, weights: Path, names: Path) -> DetectorEntry:
    """Check, convert and keep a Darknet cfg + weights pair with its class names."""
    _check_name(settings, name)
    classes = read_names(names)
    try:
        sections = parse_cfg(read_bounded(cfg, MAX_CFG_BYTES, "cfg").decode(errors="replace"))
        width, height = net_size(sections)
        if width != height or width % 32:
            raise InvalidModelError(
                f"the cfg's input is {width}x{height}; PicMetric runs square inputs, a multiple of 32"
            )
        heads = yolo_heads(sections)
        for number, head in enumerate(heads):
            if head.num_classes != len(classes):
                raise InvalidModelError(
                    f"the names file has {len(classes)} classes but the cfg's head {number} ([{head.kind}]) "
                    f"has classes={head.num_classes}"
                )
        model = darknet_to_onnx(cfg, weights, (width, height))
    except DarknetError as exc:
        raise InvalidModelError(str(exc)) from None
    except OSError as exc:
        raise InvalidModelError(f"cannot read {exc.filename}: {exc.strerror}") from None
    except (ValueError, ArithmeticError, MemoryError) as exc:  # a cfg whose numbers agree with no network
        raise InvalidModelError(
            f"the cfg does not describe a network: {exc.__class__.__name__}: {str(exc)[:200]}"
        ) from None
    for number, (output, head) in enumerate(zip(model.graph.output, heads, strict=True)):
        channels = output.type.tensor_type.shape.dim[1].dim_value
        if channels != len(head.anchors) * (5 + head.num_classes):
            raise InvalidModelError(
                f"head {number} ([{head.kind}]) gets {channels} channels from the convolution before it; "
                f"{len(head.anchors)} anchors x (5 + {head.num_classes} classes) = "
                f"{len(head.anchors) * (5 + head.num_classes)} are needed (set that layer's filters=)"
            )
    entry = DetectorEntry(name, "darknet", "darknet", classes, width, f"Darknet {cfg.name} + {weights.name}",
                          _now())  # fmt: skip
    return _keep(settings, entry, model, cfg)


def add_onnx(settings: Settings, name: str, file: Path, names: Path, layout: str | None = None) -> DetectorEntry:
    """Check and keep an ONNX export in one of ``ONNX_LAYOUTS`` (detected from its output shape when unambiguous)."""
    _check_name(settings, name)
    classes = read_names(names)
    try:
        data = read_bounded(file, MAX_ONNX_BYTES, "ONNX")
    except DarknetError as exc:
        raise InvalidModelError(str(exc)) from None
    try:
        model = onnx.load_from_string(data)
    except Exception as exc:  # onnx raises protobuf's own errors for files that are not ONNX
        raise InvalidModelError(f"{file.name} is not an ONNX model ({exc.__class__.__name__})") from None
    graph_inputs = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    if len(graph_inputs) != 1:
        raise InvalidModelError(f"{file.name} has {len(graph_inputs)} inputs; a detector has one image input")
    dims = [d.dim_value or None for d in graph_inputs[0].type.tensor_type.shape.dim]
    if len(dims) != 4 or dims[1] not in (3, None):
        raise InvalidModelError(f"{file.name}'s input has shape {dims}; a detector takes (1, 3, size, size)")
    if dims[2] != dims[3]:
        raise InvalidModelError(f"{file.name}'s input is {dims[3]}x{dims[2]}; PicMetric runs square inputs")
    size = dims[2] or 640
    if not 32 <= size <= MAX_INPUT_SIDE:
        raise InvalidModelError(
            f"{file.name}'s input is {size}x{size}; PicMetric runs inputs from 32 to {MAX_INPUT_SIDE} pixels a side"
        )
    session = create_session(model.SerializeToString(), settings)
    blank = np.full((1, 3, size, size), 0.5, np.float32)
    try:
        shape = session.run(None, {session.get_inputs()[0].name: blank})[0].shape
    except Exception as exc:  # ONNX Runtime's own errors: the graph cannot run on a square input of this size
        raise InvalidModelError(f"{file.name} does not run on a {size}x{size} input: {str(exc)[:200]}") from None
    chosen = _layout_of(tuple(shape), len(classes), size, layout, file.name)
    entry = DetectorEntry(name, "onnx", chosen, classes, size, f"ONNX {file.name} ({chosen} layout)", _now())
    return _keep(settings, entry, model, None)


def _layout_of(shape: tuple[int, ...], classes: int, size: int, layout: str | None, file: str) -> str:
    """The layout an output shape has for ``classes`` classes at a ``size`` input; ``layout`` when given is checked."""
    if layout is not None and layout not in ONNX_LAYOUTS:
        raise InvalidModelError(f"layout must be one of {', '.join(ONNX_LAYOUTS)}, not {layout!r}")
    if len(shape) != 3 or shape[0] != 1:
        raise InvalidModelError(
            f"{file}'s first output has shape {shape}: not a layout PicMetric reads ({', '.join(ONNX_LAYOUTS)}: "
            "one (1, rows, columns) output)"
        )
    _, rows, columns = shape
    fits = {
        "yolov8": rows == 4 + classes and columns != 5 + classes,
        "yolov5": columns == 5 + classes and rows == 3 * cells(size),
        "yolox": columns == 5 + classes and rows == cells(size),
    }
    if layout is not None:
        expected = {"yolov8": f"(1, {4 + classes}, N)", "yolov5": f"(1, {3 * cells(size)}, {5 + classes})",
                    "yolox": f"(1, {cells(size)}, {5 + classes})"}  # fmt: skip
        if not (fits[layout] or (layout == "yolov5" and columns == 5 + classes)):
            raise InvalidModelError(
                f"{file}'s output {shape} is not the {layout} layout for {classes} classes at {size}x{size}: "
                f"expected {expected[layout]}{_class_hint(shape, classes, size)}"
            )
        return layout
    matching = [name for name, ok in fits.items() if ok]
    if len(matching) == 1:
        return matching[0]
    if columns == 5 + classes:  # boxes in rows with objectness, of a count neither layout predicts
        raise InvalidModelError(
            f"{file}'s output {shape} has {classes} classes with objectness but {rows} rows, neither YOLOv5's "
            f"{3 * cells(size)} nor YOLOX's {cells(size)} at {size}x{size}: say which with --layout"
        )
    raise InvalidModelError(
        f"{file}'s output {shape} is of an unknown layout for {classes} classes: PicMetric reads yolov5 "
        f"(1, N, {5 + classes}), yolov8 (1, {4 + classes}, N) and yolox (1, N, {5 + classes})"
        + _class_hint(shape, classes, size)
    )


def _class_hint(shape: tuple[int, ...], classes: int, size: int) -> str:
    """When the shape fits a layout with another class count, the names file is the likely culprit: say so."""
    _, rows, columns = shape
    fitting = [rows - 4] if columns in (cells(size), 3 * cells(size)) or columns > rows else []
    fitting += [columns - 5] if rows in (cells(size), 3 * cells(size)) else []
    counts = sorted({n for n in fitting if 0 < n <= MAX_CLASSES and n != classes})
    if not counts:
        return ""
    return f"; the output fits {' or '.join(map(str, counts))} classes, the names file has {classes}"


def _keep(settings: Settings, entry: DetectorEntry, model: onnx.ModelProto, cfg: Path | None) -> DetectorEntry:
    """Write the detector's folder under a temporary name and rename it: never half a detector on the shelf."""
    folder = shelf_folder(settings)
    folder.mkdir(parents=True, exist_ok=True)
    with _lock:
        staging = Path(tempfile.mkdtemp(dir=folder, prefix=f".{entry.name}."))
        try:
            (staging / "model.onnx").write_bytes(model.SerializeToString())
            if cfg is not None:
                shutil.copyfile(cfg, staging / "model.cfg")
            (staging / "classes.txt").write_text("\n".join(entry.classes) + "\n")
            (staging / "detector.json").write_text(json.dumps(asdict(entry), indent=1))
            check = load_detector(settings, entry, folder=staging)
            check.predict(np.full((64, 64, 3), 127, np.uint8))  # one run: the decode fits the outputs
            staging.rename(folder / entry.name)
        except InvalidModelError:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        except Exception as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise InvalidModelError(f"the detector does not run: {exc.__class__.__name__}: {str(exc)[:200]}") from None
    return entry


def remove_detector(settings: Settings, name: str) -> None:
    """Take a detector off the shelf. A folder someone replaced by a symbolic link loses the link only: what it
    points to was never PicMetric's to delete."""
    if name == DETECTOR.key:
        raise InvalidModelError(f"{name} is the built-in detector: its name is reserved and it cannot be removed")
    target = shelf_folder(settings) / name
    if not NAME_PATTERN.fullmatch(name) or not (target.is_dir() or target.is_symlink()):
        raise UnknownModelError(f"no added detector named {name!r}")
    with _lock:
        try:
            if target.is_symlink():
                target.unlink()
            else:
                shutil.rmtree(target)
        except OSError as exc:
            raise InvalidModelError(
                f"cannot remove the detector {name!r}: {exc.strerror or exc.__class__.__name__}"
            ) from None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
