"""A small builder for ONNX graphs made of named numpy weights.

Both converters (the TF.js detector and the torch ImageNet classifier) emit the same handful of
operators; building them through one helper keeps the converters to the part that differs: how
each source lays out its weights and wires its layers.
"""

from __future__ import annotations

import itertools

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


class GraphBuilder:
    def __init__(self, name: str):
        self.name = name
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self._ids = itertools.count()

    def fresh(self, hint: str) -> str:
        return f"{hint}__{next(self._ids)}"

    def const(self, value: np.ndarray, hint: str = "const") -> str:
        name = self.fresh(hint)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], hint: str | None = None, **attrs) -> str:
        out = self.fresh(hint or op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    def input(self, name: str, shape: list[int | str]) -> str:
        self.inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, shape))
        return name

    def output(self, value: str, name: str, shape: list[int | str]) -> None:
        self.nodes.append(helper.make_node("Identity", [value], [name], name=name))
        self.outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, shape))

    def conv(self, x: str, weight: np.ndarray, bias: np.ndarray | None, *, stride: int = 1,
             group: int = 1, pads: list[int] | None = None, auto_pad: str | None = None) -> str:
        """A 2-D convolution on NCHW data; `weight` is OIHW (O, I/group, kH, kW)."""
        inputs = [x, self.const(weight.astype(np.float32), "w")]
        if bias is not None:
            inputs.append(self.const(bias.astype(np.float32), "b"))
        attrs: dict = {"strides": [stride, stride], "group": group,
                       "kernel_shape": list(weight.shape[2:])}
        if auto_pad:
            attrs["auto_pad"] = auto_pad
        else:
            attrs["pads"] = pads or [0, 0, 0, 0]
        return self.op("Conv", inputs, "conv", **attrs)

    def relu6(self, x: str) -> str:
        return self.op("Clip", [x, self.const(np.float32(0.0)), self.const(np.float32(6.0))], "relu6")

    def model(self) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, self.name, self.inputs, self.outputs, self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                  producer_name="clearbg")
        model.ir_version = 8
        onnx.checker.check_model(model)
        return model


def fold_batchnorm(weight: np.ndarray, gamma: np.ndarray, beta: np.ndarray, mean: np.ndarray,
                   var: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Folds an inference-time batch norm into the preceding (bias-free) OIHW convolution."""
    scale = gamma / np.sqrt(var + eps)
    return weight * scale[:, None, None, None], beta - mean * scale
