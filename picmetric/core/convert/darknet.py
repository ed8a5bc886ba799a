"""Darknet ``.cfg`` + ``.weights`` to ONNX, for the YOLO family: v2 and v2-tiny, v3, v3-tiny, v3-spp, v4, v4-tiny
and v7-tiny.

Layers: ``convolutional`` (grouped, batch-normalised or biased; leaky, linear, logistic, relu, relu6, mish, swish),
``maxpool`` (any size and stride, with darknet's padding), ``route`` (several layers, or one channel group),
``shortcut``, ``upsample``, ``reorg``, and the heads ``yolo`` and ``region``. The graph ends at the raw head
convolutions (one output per head, ``(1, anchors * (5 + classes), H, W)``); decoding and NMS stay in numpy so the
walkthrough can show raw output. Without ``input_size`` one graph serves every input that is a multiple of 32;
a cfg with ``[reorg]`` (YOLOv2) is converted at a fixed size.

Every mismatch between the cfg and the weights names the layer where it shows, so a user who mixed up two files
learns which.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from picmetric.core.convert.onnx_graph import GraphBuilder, fold_batch_norm

_DARKNET_BN_EPS = 1e-6  # darknet's normalize_cpu adds .000001f to the variance
HEAD_KINDS = ("yolo", "region")
#: bounds on a cfg's numbers, far beyond any published YOLO and well below what would exhaust memory
MAX_INPUT_SIDE = 2048
MAX_FILTERS = 8192
MAX_KERNEL = 31
MAX_STRIDE = 32
MAX_CLASSES = 10_000
#: the largest weights file read (YOLOv4 is 246 MB, YOLOv3-SPP 250 MB)
MAX_WEIGHTS_BYTES = 1 << 30


class DarknetError(ValueError):
    """The cfg cannot be read, or the weights do not fit it."""


@dataclass(frozen=True)
class YoloHead:
    """What decoding one head's output needs. ``anchors`` are in input pixels for ``yolo`` heads and in grid cells
    for ``region`` heads (YOLOv2); ``new_coords`` heads (scaled YOLOv4, v7) come out of a logistic already."""

    anchors: list[tuple[float, float]]
    scale_x_y: float
    num_classes: int
    kind: str = "yolo"
    new_coords: bool = False


@dataclass
class DarknetSection:
    kind: str
    line: int
    options: dict[str, str] = field(default_factory=dict)

    def integer(self, key: str, default: int, low: int | None = None, high: int | None = None) -> int:
        """``key=`` as a whole number, refused outside ``low``..``high`` (a stride of 0, negative filters, a
        billion-pixel input) with the line it is on, before anything is built from it."""
        try:
            value = int(self.options.get(key, default))
        except ValueError:
            raise DarknetError(f"cfg line {self.line}: [{self.kind}] {key}= is not a whole number") from None
        if (low is not None and value < low) or (high is not None and value > high):
            raise DarknetError(
                f"cfg line {self.line}: [{self.kind}] {key}={value} is out of range; it must be from {low} to {high}"
            )
        return value

    def ints(self, key: str) -> list[int]:
        try:
            return [int(v) for v in self.options[key].split(",") if v.strip()]
        except (KeyError, ValueError):
            raise DarknetError(f"cfg line {self.line}: [{self.kind}] needs {key}= as whole numbers") from None

    def floats(self, key: str) -> list[float]:
        try:
            return [float(v) for v in self.options[key].split(",") if v.strip()]
        except (KeyError, ValueError):
            raise DarknetError(f"cfg line {self.line}: [{self.kind}] needs {key}= as numbers") from None


def parse_cfg(text: str) -> list[DarknetSection]:
    sections: list[DarknetSection] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].split(";", 1)[0].strip()
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            sections.append(DarknetSection(line[1:-1].strip(), number))
        elif "=" in line and sections:
            key, value = line.split("=", 1)
            sections[-1].options[key.strip()] = value.strip()
        else:
            raise DarknetError(f"cfg line {number} is neither a [section] nor key=value: {line[:60]!r}")
    if not sections or sections[0].kind not in ("net", "network"):
        raise DarknetError("this is not a Darknet cfg: it does not start with [net]")
    return sections


def yolo_heads(sections: list[DarknetSection]) -> list[YoloHead]:
    heads = []
    for s in sections:
        if s.kind not in HEAD_KINDS:
            continue
        flat = s.floats("anchors")
        pairs = list(zip(flat[0::2], flat[1::2], strict=False))
        if s.kind == "yolo":
            try:
                anchors = [pairs[i] for i in s.ints("mask")] if "mask" in s.options else pairs
            except IndexError:
                raise DarknetError(f"cfg line {s.line}: [yolo] mask= names an anchor that is not there") from None
        else:
            anchors = pairs[: s.integer("num", len(pairs), 1, len(pairs) or 1)]
        heads.append(
            YoloHead(
                anchors=anchors,
                scale_x_y=float(s.options.get("scale_x_y", 1.0)),
                num_classes=s.integer("classes", 80, 1, MAX_CLASSES),
                kind=s.kind,
                new_coords=bool(s.integer("new_coords", 0, 0, 1)),
            )
        )
    return heads


def net_size(sections: list[DarknetSection]) -> tuple[int, int]:
    """The cfg's own input width and height (``[net] width= height=``)."""
    net = sections[0]
    return net.integer("width", 416, 32, MAX_INPUT_SIDE), net.integer("height", 416, 32, MAX_INPUT_SIDE)


#: a cfg or names file is text of a few kilobytes; more is not one
MAX_CFG_BYTES = 1 << 20


def read_bounded(path: Path, limit: int, what: str) -> bytes:
    """A regular file's bytes, refused before reading when it is something else (``/dev/zero``, a pipe, a folder)
    or larger than ``limit``: a user's file must not read until memory runs out."""
    try:
        if not path.is_file():
            raise DarknetError(f"the {what} file {path.name} is not a regular file")
        size = path.stat().st_size
        if size > limit:
            raise DarknetError(f"the {what} file {path.name} is {size:,} bytes; at most {limit:,} are read")
        with path.open("rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise DarknetError(
            f"cannot read the {what} file {path.name} ({exc.strerror or exc.__class__.__name__})"
        ) from None
    if len(data) > limit:  # grew while read
        raise DarknetError(f"the {what} file {path.name} is larger than {limit:,} bytes")
    return data


#: what a file given as weights often is instead, by its first bytes
_OTHER_FILES = (
    (b"\xff\xd8\xff", "a JPEG image"), (b"\x89PNG", "a PNG image"), (b"PK\x03\x04", "a ZIP archive (a PyTorch .pt?)"),
    (b"\x08", "an ONNX model (add it with --onnx)"), (b"[net]", "a Darknet cfg"),
)  # fmt: skip


class _WeightReader:
    """Darknet's weights file: a header (major, minor, revision; then 'seen', 64-bit from version 0.2), then float32
    values in layer order."""

    def __init__(self, data: bytes) -> None:
        if len(data) < 16:
            raise DarknetError(f"the weights file is {len(data)} bytes: too short for even Darknet's header")
        major, minor, _revision = (int(v) for v in np.frombuffer(data[:12], dtype="<i4"))
        if major not in (0, 1) or not 0 <= minor < 10:  # every Darknet writes 0.1 or 0.2
            kind = next((what for magic, what in _OTHER_FILES if data.startswith(magic)), "some other file")
            raise DarknetError(f"this is not a Darknet weights file (it looks like {kind}: its header is no Darknet "
                               "version)")  # fmt: skip
        header = 20 if major * 10 + minor >= 2 else 16
        self._values = np.frombuffer(data[header : header + (len(data) - header) // 4 * 4], dtype="<f4")
        self._pos = 0

    def take(self, count: int, where: str) -> np.ndarray:
        if self._pos + count > self._values.size:
            short = self._pos + count - self._values.size
            raise DarknetError(
                f"the weights file ends inside {where}: {short:,} more values are needed "
                f"({self._values.size:,} in the file); the weights are for another cfg"
            )
        out = self._values[self._pos : self._pos + count].astype(np.float32)
        self._pos += count
        return out

    @property
    def remaining(self) -> int:
        return self._values.size - self._pos


class _CountingReader(_WeightReader):
    """Zeros for every value asked for, counting them: how many a cfg needs, for a message about a file that
    has not got them."""

    def __init__(self) -> None:
        self.count = 0

    def take(self, count: int, where: str) -> np.ndarray:
        self.count += count
        return np.zeros(count, np.float32)

    @property
    def remaining(self) -> int:
        return 0


def weights_needed(cfg_path: str | Path) -> int:
    """The float32 values a cfg's layers take from a weights file (the file is 20 bytes of header and 4 per value)."""
    sections = parse_cfg(read_bounded(Path(cfg_path), MAX_CFG_BYTES, "cfg").decode(errors="replace"))
    reader = _CountingReader()
    with np.errstate(all="ignore"):
        _network(sections, reader, None, Path(cfg_path).name)
    return reader.count


@dataclass
class _Tensor:
    """A layer's output: its ONNX name, channels, and height and width (None in a size-independent graph)."""

    name: str
    channels: int
    height: int | None
    width: int | None


def _activation(g: GraphBuilder, x: str, kind: str, where: str) -> str:
    if kind == "linear":
        return x
    if kind == "leaky":
        return g.op("LeakyRelu", [x], alpha=0.1)
    if kind == "relu":
        return g.op("Relu", [x])
    if kind == "relu6":
        return g.op("Clip", [x, g.const(np.array(0, np.float32)), g.const(np.array(6, np.float32))])
    if kind == "logistic":
        return g.op("Sigmoid", [x])
    if kind == "mish":  # x * tanh(softplus(x)); ONNX's Mish needs opset 18
        return g.op("Mul", [x, g.op("Tanh", [g.op("Softplus", [x])])])
    if kind == "swish":
        return g.op("Mul", [x, g.op("Sigmoid", [x])])
    raise DarknetError(f"{where}: activation {kind!r} is not supported")


def _pool_size(size: int | None, kernel: int, stride: int, padding: int) -> int | None:
    return None if size is None else (size + padding - kernel) // stride + 1


def _reorg(g: GraphBuilder, x: _Tensor, stride: int, where: str) -> _Tensor:
    """Darknet's reorg as its C code computes it (``reorg_cpu`` with forward=0, which is not space-to-depth: it
    reads the input as if it had 1/stride² the channels at stride x the size)."""
    if x.height is None or x.width is None:
        raise DarknetError(f"{where}: [reorg] needs a fixed input size")
    c, h, w, s = x.channels, x.height, x.width, stride
    if c % (s * s) or h % s or w % s:
        raise DarknetError(f"{where}: [reorg] stride {s} does not divide {c} channels of {h}x{w}")
    shape = g.const(np.array([1, c // (s * s), h, s, w, s], np.int64))
    viewed = g.op("Reshape", [x.name, shape])  # (c2, j, dy, i, dx) of the input read as (c/s², h*s, w*s)
    moved = g.op("Transpose", [viewed], perm=[0, 3, 5, 1, 2, 4])  # out channel k = (dy*s + dx) * c/s² + c2
    out = g.op("Reshape", [moved, g.const(np.array([1, c * s * s, h // s, w // s], np.int64))])
    return _Tensor(out, c * s * s, h // s, w // s)


def darknet_to_onnx(
    cfg_path: str | Path, weights_path: str | Path, input_size: tuple[int, int] | None = None
) -> onnx.ModelProto:
    """The network of ``cfg_path`` with the weights of ``weights_path``; ``input_size`` (width, height) fixes the
    graph's input size (needed for ``[reorg]``), else height and width are free. A weights file that is not one,
    or not this cfg's, is refused with the size the cfg needs."""
    sections = parse_cfg(read_bounded(Path(cfg_path), MAX_CFG_BYTES, "cfg").decode(errors="replace"))
    try:
        reader = _WeightReader(read_bounded(Path(weights_path), MAX_WEIGHTS_BYTES, "weights"))
        with np.errstate(all="ignore"):  # another model's weights can hold anything: the check says what is wrong
            return _network(sections, reader, input_size, Path(cfg_path).name)
    except DarknetError as exc:
        if "weights" not in str(exc):
            raise
        try:
            needed = weights_needed(cfg_path)
        except DarknetError:  # the cfg has its own problem: the weights' is the one to tell
            raise exc from None
        raise DarknetError(
            f"{exc}; {Path(cfg_path).name} needs {needed:,} values: a weights file of {20 + 4 * needed:,} bytes"
        ) from None


def _network(
    sections: list[DarknetSection], reader: _WeightReader, input_size: tuple[int, int] | None, cfg_name: str
) -> onnx.ModelProto:
    net, layers = sections[0], sections[1:]
    g = GraphBuilder()
    width, height = input_size if input_size else (None, None)
    x = _Tensor("image", net.integer("channels", 3, 1, MAX_FILTERS), height, width)
    outputs: list[_Tensor] = []
    heads: dict[str, tuple[str, list[int | str]]] = {}

    def source(index: int, offset: int, where: str) -> _Tensor:
        absolute = offset if offset >= 0 else index + offset
        if not 0 <= absolute < index:
            raise DarknetError(f"{where} refers to layer {offset}, which is not an earlier layer")
        return outputs[absolute]

    for index, layer in enumerate(layers):
        where = f"layer {index} ([{layer.kind}], cfg line {layer.line})"
        if layer.kind == "convolutional":
            filters, size = layer.integer("filters", 1, 1, MAX_FILTERS), layer.integer("size", 1, 1, MAX_KERNEL)
            stride, groups = layer.integer("stride", 1, 1, MAX_STRIDE), layer.integer("groups", 1, 1, MAX_FILTERS)
            pad = size // 2 if layer.integer("pad", 0) else layer.integer("padding", 0, 0, MAX_KERNEL)
            if x.channels % groups or filters % groups:
                raise DarknetError(
                    f"{where}: groups={groups} does not divide {x.channels} inputs and {filters} filters"
                )
            count = filters * (x.channels // groups) * size * size
            if layer.integer("batch_normalize", 0):
                beta, gamma, mean, var = (reader.take(filters, where) for _ in range(4))
                weight = reader.take(count, where).reshape(filters, x.channels // groups, size, size)
                weight, bias = fold_batch_norm(weight, gamma, beta, mean, var, _DARKNET_BN_EPS)
            else:
                bias = reader.take(filters, where)
                weight = reader.take(count, where).reshape(filters, x.channels // groups, size, size)
            name = g.conv(x.name, weight, bias, stride=stride, pads=(pad, pad, pad, pad), groups=groups)
            name = _activation(g, name, layer.options.get("activation", "logistic"), where)
            x = _Tensor(
                name, filters, _pool_size(x.height, size, stride, 2 * pad), _pool_size(x.width, size, stride, 2 * pad)
            )
        elif layer.kind == "maxpool":
            stride = layer.integer("stride", 1, 1, MAX_STRIDE)
            size = layer.integer("size", stride, 1, MAX_KERNEL)
            padding = layer.integer("padding", size - 1, 0, 2 * MAX_KERNEL)
            begin, end = padding // 2, padding - padding // 2
            name = g.op("MaxPool", [x.name], kernel_shape=[size, size], strides=[stride, stride],
                        pads=[begin, begin, end, end])  # fmt: skip
            x = _Tensor(
                name,
                x.channels,
                _pool_size(x.height, size, stride, padding),
                _pool_size(x.width, size, stride, padding),
            )
        elif layer.kind == "route":
            groups = layer.integer("groups", 1, 1, MAX_FILTERS)
            group_id = layer.integer("group_id", 0, 0, groups - 1)
            parts = []
            for offset in layer.ints("layers"):
                part = source(index, offset, where)
                if groups > 1:
                    step = part.channels // groups
                    first = g.const(np.array([group_id * step], np.int64))
                    last = g.const(np.array([(group_id + 1) * step], np.int64))
                    sliced = g.op("Slice", [part.name, first, last, g.const(np.array([1], np.int64))])
                    part = _Tensor(sliced, step, part.height, part.width)
                parts.append(part)
            if len({(p.height, p.width) for p in parts}) > 1:
                raise DarknetError(f"{where} joins layers of different sizes")
            name = parts[0].name if len(parts) == 1 else g.op("Concat", [p.name for p in parts], axis=1)
            x = _Tensor(name, sum(p.channels for p in parts), parts[0].height, parts[0].width)
        elif layer.kind == "shortcut":
            other = source(index, layer.ints("from")[0], where)
            if other.channels != x.channels:
                raise DarknetError(f"{where} adds {other.channels} channels to {x.channels}")
            name = g.op("Add", [x.name, other.name])
            x = _Tensor(_activation(g, name, layer.options.get("activation", "linear"), where), x.channels,
                        x.height, x.width)  # fmt: skip
        elif layer.kind == "upsample":
            stride = layer.integer("stride", 2, 1, MAX_STRIDE)
            name = g.op("Resize", [x.name, "", g.const(np.array([1, 1, stride, stride], np.float32))], mode="nearest",
                        coordinate_transformation_mode="asymmetric", nearest_mode="floor")  # fmt: skip
            x = _Tensor(name, x.channels, *(None if v is None else v * stride for v in (x.height, x.width)))
        elif layer.kind == "reorg":
            x = _reorg(g, x, layer.integer("stride", 2, 1, MAX_STRIDE), where)
        elif layer.kind in HEAD_KINDS:
            head = f"yolo_{len(heads)}"
            heads[head] = (x.name, [1, x.channels, x.height or f"{head}_height", x.width or f"{head}_width"])
        elif layer.kind in ("dropout",):
            pass  # identity at inference
        else:
            raise DarknetError(f"{where}: layer type [{layer.kind}] is not supported")
        outputs.append(x)

    if reader.remaining:
        raise DarknetError(
            f"{reader.remaining:,} values are left over after the last layer: the weights are for a larger cfg"
        )
    if not heads:
        raise DarknetError("the cfg has no [yolo] or [region] layer: it is not a detector")
    input_shape: list[int | str] = [1, net.integer("channels", 3, 1, MAX_FILTERS), height or "height", width or "width"]
    return g.model("image", input_shape, heads, doc=f"converted from {cfg_name}")
