"""Darknet ``.cfg`` + ``.weights`` to ONNX, for the YOLOv4-tiny family.

The graph ends at the raw YOLO head convolutions (one output per ``[yolo]`` section, shape
``(1, anchors * (5 + classes), H, W)``); decoding and NMS stay in numpy so the walkthrough can show raw output,
and one graph serves every input size that is a multiple of 32.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from picmetric.core.convert.onnx_graph import GraphBuilder, fold_batch_norm

_DARKNET_BN_EPS = 1e-6  # darknet's normalize_cpu adds .000001f to the variance


@dataclass(frozen=True)
class YoloHead:
    """What decoding one ``[yolo]`` output needs."""

    anchors: list[tuple[float, float]]
    scale_x_y: float
    num_classes: int


@dataclass
class DarknetSection:
    kind: str
    options: dict[str, str] = field(default_factory=dict)

    def integer(self, key: str, default: int) -> int:
        return int(self.options.get(key, default))

    def ints(self, key: str) -> list[int]:
        return [int(v) for v in self.options[key].split(",") if v.strip()]


def parse_cfg(text: str) -> list[DarknetSection]:
    sections: list[DarknetSection] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            sections.append(DarknetSection(line[1:-1].strip()))
        elif "=" in line and sections:
            key, value = line.split("=", 1)
            sections[-1].options[key.strip()] = value.strip()
    return sections


def yolo_heads(sections: list[DarknetSection]) -> list[YoloHead]:
    heads = []
    for s in sections:
        if s.kind != "yolo":
            continue
        flat = [float(v) for v in s.options["anchors"].split(",")]
        pairs = list(zip(flat[0::2], flat[1::2], strict=True))
        heads.append(
            YoloHead(
                anchors=[pairs[i] for i in s.ints("mask")],
                scale_x_y=float(s.options.get("scale_x_y", 1.0)),
                num_classes=s.integer("classes", 80),
            )
        )
    return heads


class _WeightReader:
    def __init__(self, data: bytes) -> None:
        major, minor, _revision = np.frombuffer(data[:12], dtype="<i4")
        header = 20 if major * 10 + minor >= 2 else 16
        self._values = np.frombuffer(data[header:], dtype="<f4")
        self._pos = 0

    def take(self, count: int) -> np.ndarray:
        if self._pos + count > self._values.size:
            raise ValueError("darknet weights file is shorter than its cfg requires")
        out = self._values[self._pos : self._pos + count].astype(np.float32)
        self._pos += count
        return out

    @property
    def remaining(self) -> int:
        return self._values.size - self._pos


def darknet_to_onnx(cfg_path: str | Path, weights_path: str | Path) -> onnx.ModelProto:
    sections = parse_cfg(Path(cfg_path).read_text())
    net, layers = sections[0], sections[1:]
    if net.kind not in ("net", "network"):
        raise ValueError("cfg does not start with [net]")
    reader = _WeightReader(Path(weights_path).read_bytes())
    g = GraphBuilder()
    x = "image"
    in_channels = net.integer("channels", 3)
    outputs: list[str] = []  # per layer: tensor name
    channels: list[int] = []  # per layer: channel count
    heads: dict[str, tuple[str, list[int | str]]] = {}

    for index, layer in enumerate(layers):
        if layer.kind == "convolutional":
            filters, size = layer.integer("filters", 1), layer.integer("size", 1)
            stride = layer.integer("stride", 1)
            pad = size // 2 if layer.integer("pad", 0) else layer.integer("padding", 0)
            if layer.integer("batch_normalize", 0):
                beta, gamma, mean, var = (reader.take(filters) for _ in range(4))
                weight = reader.take(filters * in_channels * size * size).reshape(filters, in_channels, size, size)
                weight, bias = fold_batch_norm(weight, gamma, beta, mean, var, _DARKNET_BN_EPS)
            else:
                bias = reader.take(filters)
                weight = reader.take(filters * in_channels * size * size).reshape(filters, in_channels, size, size)
            x = g.conv(x, weight, bias, stride=stride, pads=(pad, pad, pad, pad))
            activation = layer.options.get("activation", "linear")
            if activation == "leaky":
                x = g.op("LeakyRelu", [x], alpha=0.1)
            elif activation != "linear":
                raise ValueError(f"unsupported darknet activation {activation!r}")
            in_channels = filters
        elif layer.kind == "maxpool":
            size, stride = layer.integer("size", 2), layer.integer("stride", 2)
            if stride != size:
                raise ValueError("only non-overlapping darknet maxpool layers are supported")
            x = g.op("MaxPool", [x], kernel_shape=[size, size], strides=[stride, stride])
        elif layer.kind == "route":
            sources = [i if i >= 0 else index + i for i in layer.ints("layers")]
            groups, group_id = layer.integer("groups", 1), layer.integer("group_id", 0)
            parts = []
            for src in sources:
                tensor, count = outputs[src], channels[src]
                if groups > 1:
                    step = count // groups
                    tensor = g.op(
                        "Slice",
                        [
                            tensor,
                            g.const(np.array([group_id * step], np.int64)),
                            g.const(np.array([(group_id + 1) * step], np.int64)),
                            g.const(np.array([1], np.int64)),
                        ],
                    )
                    count = step
                parts.append((tensor, count))
            x = parts[0][0] if len(parts) == 1 else g.op("Concat", [p[0] for p in parts], axis=1)
            in_channels = sum(p[1] for p in parts)
        elif layer.kind == "upsample":
            stride = layer.integer("stride", 2)
            x = g.op(
                "Resize",
                [x, "", g.const(np.array([1, 1, stride, stride], np.float32))],
                mode="nearest",
                coordinate_transformation_mode="asymmetric",
                nearest_mode="floor",
            )
        elif layer.kind == "yolo":
            name = f"yolo_{len(heads)}"
            heads[name] = (x, [1, in_channels, f"{name}_height", f"{name}_width"])
        else:
            raise ValueError(f"unsupported darknet layer [{layer.kind}]")
        outputs.append(x)
        channels.append(in_channels)

    if reader.remaining:
        raise ValueError(f"{reader.remaining} weights left over: cfg and weights do not match")
    return g.model(
        "image", [1, net.integer("channels", 3), "height", "width"], heads, doc=f"converted from {Path(cfg_path).name}"
    )
