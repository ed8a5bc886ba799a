"""A small helper for writing ONNX graphs by hand, plus the batch-norm folding every converter needs."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 13


def fold_batch_norm(
    weight: np.ndarray,
    gamma: np.ndarray,
    beta: np.ndarray,
    mean: np.ndarray,
    var: np.ndarray,
    eps: float,
    bias: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Fold an inference-mode BatchNorm into the convolution before it: same maths, one op fewer."""
    scale = gamma / np.sqrt(var + eps)
    folded_w = weight * scale.reshape(-1, *([1] * (weight.ndim - 1)))
    conv_bias = np.zeros_like(mean) if bias is None else bias
    folded_b = beta + (conv_bias - mean) * scale
    return folded_w.astype(np.float32), folded_b.astype(np.float32)


class GraphBuilder:
    """Accumulates nodes and initializers; every ``op`` call returns the name of its (single) output."""

    def __init__(self) -> None:
        self._nodes: list[onnx.NodeProto] = []
        self._initializers: list[onnx.TensorProto] = []
        self._count = 0

    def _name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, array: np.ndarray, hint: str = "const") -> str:
        name = self._name(hint)
        self._initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def op(self, op_type: str, inputs: list[str], hint: str | None = None, **attrs) -> str:
        output = self._name(hint or op_type.lower())
        self._nodes.append(helper.make_node(op_type, inputs, [output], **attrs))
        return output

    def conv(
        self,
        x: str,
        weight: np.ndarray,
        bias: np.ndarray,
        stride: int = 1,
        pads: tuple[int, int, int, int] | None = None,
        groups: int = 1,
    ) -> str:
        """2-D convolution; ``pads`` is (top, left, bottom, right), symmetric ``k // 2`` when omitted."""
        k = weight.shape[-1]
        if pads is None:
            pads = (k // 2, k // 2, k // 2, k // 2)
        return self.op(
            "Conv",
            [x, self.const(weight, "w"), self.const(bias, "b")],
            "conv",
            kernel_shape=[k, k],
            strides=[stride, stride],
            pads=list(pads),
            group=groups,
        )

    def model(
        self,
        input_name: str,
        input_shape: list[int | str],
        outputs: dict[str, tuple[str, list[int | str]]],
        doc: str,
    ) -> onnx.ModelProto:
        """Finish the graph; ``outputs`` maps public output names to (internal tensor, shape)."""
        for public, (internal, _shape) in outputs.items():
            self._nodes.append(helper.make_node("Identity", [internal], [public]))
        graph = helper.make_graph(
            self._nodes,
            "picmetric",
            [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, input_shape)],
            [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape) for name, (_, shape) in outputs.items()],
            initializer=self._initializers,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], doc_string=doc)
        model.ir_version = 8
        onnx.checker.check_model(model)
        return model
