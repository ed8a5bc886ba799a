"""EfficientNet-Lite and MobileNetV2 checkpoints to ONNX.

Both are the same family: a 3x3 stride-2 stem, inverted-residual blocks (1x1 expand, depthwise kxk, 1x1
project, skip when shape is kept), a 1x1 head, global average pooling and a linear classifier, all with ReLU6.
Each checkpoint is read into one ``MobileNet`` description (batch norm already folded) and one builder writes it.
Strides are not stored in a checkpoint: both architectures use 7 stages with strides 1,2,2,2,1,2,1, and a stage
starts wherever a block's output width changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from picmetric.core.convert.onnx_graph import GraphBuilder, fold_batch_norm
from picmetric.core.convert.torch_checkpoint import load_state_dict

_STAGE_STRIDES = (1, 2, 2, 2, 1, 2, 1)


@dataclass(frozen=True)
class FoldedConv:
    weight: np.ndarray  # (out, in / groups, k, k)
    bias: np.ndarray
    stride: int = 1
    depthwise: bool = False


@dataclass(frozen=True)
class InvertedResidual:
    expand: FoldedConv | None
    depthwise: FoldedConv
    project: FoldedConv

    @property
    def residual(self) -> bool:
        in_channels = self.expand.weight.shape[1] if self.expand else self.depthwise.weight.shape[0]
        return self.depthwise.stride == 1 and in_channels == self.project.weight.shape[0]


@dataclass(frozen=True)
class MobileNet:
    stem: FoldedConv
    blocks: list[InvertedResidual]
    head: FoldedConv
    fc_weight: np.ndarray
    fc_bias: np.ndarray
    tf_same_padding: bool  # EfficientNet-Lite was trained in TensorFlow: stride-2 padding is asymmetric


def _assign_strides(blocks: list[tuple[FoldedConv | None, FoldedConv, FoldedConv]]) -> list[InvertedResidual]:
    result, stage, previous_out = [], -1, None
    for expand, dw, project in blocks:
        out = project.weight.shape[0]
        first_of_stage = out != previous_out
        if first_of_stage:
            stage += 1
        if stage >= len(_STAGE_STRIDES):
            raise ValueError("checkpoint has more stages than the architecture")
        stride = _STAGE_STRIDES[stage] if first_of_stage else 1
        dw = FoldedConv(dw.weight, dw.bias, stride=stride, depthwise=True)
        result.append(InvertedResidual(expand, dw, project))
        previous_out = out
    return result


def _folded(sd: dict[str, np.ndarray], conv: str, bn: str, eps: float) -> FoldedConv:
    gamma, beta, mean, var = (sd[f"{bn}.{k}"] for k in _BN_KEYS)
    return FoldedConv(*fold_batch_norm(sd[f"{conv}.weight"], gamma, beta, mean, var, eps))


def _efficientnet_lite(sd: dict[str, np.ndarray]) -> MobileNet:
    eps = 1e-3

    def folded(conv: str, bn: str) -> FoldedConv:
        return _folded(sd, conv, bn, eps)

    count = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("_blocks."))
    raw: list[tuple[FoldedConv | None, FoldedConv, FoldedConv]] = []
    for i in range(count):
        p = f"_blocks.{i}"
        expand = folded(f"{p}._expand_conv", f"{p}._bn0") if f"{p}._expand_conv.weight" in sd else None
        raw.append((expand, folded(f"{p}._depthwise_conv", f"{p}._bn1"), folded(f"{p}._project_conv", f"{p}._bn2")))
    stem = folded("_conv_stem", "_bn0")
    return MobileNet(
        stem=FoldedConv(stem.weight, stem.bias, stride=2),
        blocks=_assign_strides(raw),
        head=folded("_conv_head", "_bn1"),
        fc_weight=sd["_fc.weight"],
        fc_bias=sd["_fc.bias"],
        tf_same_padding=True,
    )


def _mobilenet_v2(sd: dict[str, np.ndarray]) -> MobileNet:
    eps = 1e-5

    def folded(conv: str, bn: str) -> FoldedConv:
        return _folded(sd, conv, bn, eps)

    last = max(int(k.split(".")[1]) for k in sd if k.startswith("features."))
    raw: list[tuple[FoldedConv | None, FoldedConv, FoldedConv]] = []
    for i in range(1, last):
        p = f"features.{i}.conv"
        if f"{p}.3.weight" in sd:  # expand (ConvBNReLU), depthwise (ConvBNReLU), project conv, project BN
            raw.append((folded(f"{p}.0.0", f"{p}.0.1"), folded(f"{p}.1.0", f"{p}.1.1"), folded(f"{p}.2", f"{p}.3")))
        else:  # expand ratio 1: depthwise (ConvBNReLU), project conv, project BN
            raw.append((None, folded(f"{p}.0.0", f"{p}.0.1"), folded(f"{p}.1", f"{p}.2")))
    stem = folded("features.0.0", "features.0.1")
    return MobileNet(
        stem=FoldedConv(stem.weight, stem.bias, stride=2),
        blocks=_assign_strides(raw),
        head=folded(f"features.{last}.0", f"features.{last}.1"),
        fc_weight=sd["classifier.1.weight"],
        fc_bias=sd["classifier.1.bias"],
        tf_same_padding=False,
    )


_BN_KEYS = ("weight", "bias", "running_mean", "running_var")


def _pads(size: int, kernel: int, stride: int, tf_same: bool) -> tuple[tuple[int, int, int, int], int]:
    """Padding (top, left, bottom, right) and output size for a square input of ``size``."""
    if tf_same:
        out = -(-size // stride)
        total = max((out - 1) * stride + kernel - size, 0)
        before = total // 2
        return (before, before, total - before, total - before), out
    p = kernel // 2
    return (p, p, p, p), (size + 2 * p - kernel) // stride + 1


def mobile_net_to_onnx(net: MobileNet, input_size: int, doc: str) -> onnx.ModelProto:
    g = GraphBuilder()
    size = input_size

    def conv(x: str, c: FoldedConv, relu6: bool) -> str:
        nonlocal size
        pads, size = _pads(size, c.weight.shape[-1], c.stride, net.tf_same_padding)
        groups = c.weight.shape[0] if c.depthwise else 1
        y = g.conv(x, c.weight, c.bias, stride=c.stride, pads=pads, groups=groups)
        return g.op("Clip", [y, zero, six]) if relu6 else y

    zero = g.const(np.array(0, np.float32), "zero")
    six = g.const(np.array(6, np.float32), "six")
    x = conv("image", net.stem, relu6=True)
    for block in net.blocks:
        y = conv(x, block.expand, relu6=True) if block.expand else x
        y = conv(y, block.depthwise, relu6=True)
        y = conv(y, block.project, relu6=False)
        x = g.op("Add", [x, y]) if block.residual else y
    x = conv(x, net.head, relu6=True)
    x = g.op("GlobalAveragePool", [x])
    pooled = g.op("Flatten", [x], axis=1)
    logits = g.op("Gemm", [pooled, g.const(net.fc_weight, "fc_w"), g.const(net.fc_bias, "fc_b")], transB=1)
    # the pooled features too: what the photo looks like to the network, for finding similar photos
    outputs = {"logits": (logits, [1, net.fc_weight.shape[0]]), "features": (pooled, [1, net.fc_weight.shape[1]])}
    return g.model("image", [1, 3, input_size, input_size], outputs, doc=doc)


def efficientnet_lite_to_onnx(pth: str | Path, input_size: int) -> onnx.ModelProto:
    return mobile_net_to_onnx(_efficientnet_lite(load_state_dict(pth)), input_size, f"converted from {Path(pth).name}")


def mobilenet_v2_to_onnx(pth: str | Path, input_size: int = 224) -> onnx.ModelProto:
    return mobile_net_to_onnx(_mobilenet_v2(load_state_dict(pth)), input_size, f"converted from {Path(pth).name}")
