"""The cleaned fp32 ONNX graph as engine/models/torchnet.py runs it on PyTorch (GPU candidates).

Writes `torch-r<RECIPE>.json` (the nodes, their attributes, integer constants, where each weight
lies) and `torch-r<RECIPE>.bin` (the weights, raw) beside the other variants. Needs only `onnx`
and numpy, no torch: the format is ours, so the serving path loads no pickle and no converter.

Weights are stored as fp16 where that is exact (IS-Net's shipped file holds fp16 weights, which
clean() only widened: 88 MB instead of 176), else as fp32. Only the operators the runner knows
are accepted; a graph with another one is refused here, at install time, not at a request.
"""

from __future__ import annotations

import json
import os
import pathlib

import numpy as np
import onnx
from onnx import helper, numpy_helper

from modelprep import variants
from modelprep.fetch import sha256_file

FORMAT = 1  # engine/models/torchnet.FORMAT: the runner reads this format
SUPPORTED = {"Conv", "Relu", "Add", "MaxPool", "Concat", "Shape", "Slice", "Resize", "Sigmoid", "Constant"}
_ALIGN = 64


class ConvertError(RuntimeError):
    pass


def _attrs(node: onnx.NodeProto) -> dict:
    out = {}
    for attribute in node.attribute:
        value = helper.get_attribute_value(attribute)
        out[attribute.name] = value.decode() if isinstance(value, bytes) else value
    return out


def _check(node: onnx.NodeProto, attrs: dict) -> None:
    """What the runner computes must be what ONNX specifies for this node."""
    if node.op_type not in SUPPORTED:
        raise ConvertError(f"operator {node.op_type} ({node.name}) has no torch equivalent here")
    if node.op_type == "Conv":
        if attrs.get("auto_pad", "NOTSET") != "NOTSET" or len(attrs.get("kernel_shape", [])) != 2:
            raise ConvertError(f"{node.name}: only explicit 2-D padding is supported")
        pads = attrs.get("pads", [0, 0, 0, 0])
        if pads[:2] != pads[2:]:
            raise ConvertError(f"{node.name}: asymmetric padding {pads}")
    if node.op_type == "MaxPool":
        pads = attrs.get("pads", [0, 0, 0, 0])
        if pads[:2] != pads[2:] or attrs.get("dilations", [1, 1]) != [1, 1] or attrs.get("storage_order", 0):
            raise ConvertError(f"{node.name}: MaxPool with {attrs}")
    if node.op_type == "Resize":
        # F.interpolate(bilinear, align_corners=False) is ONNX's linear Resize with half-pixel centres
        if (attrs.get("mode") != "linear" or attrs.get("coordinate_transformation_mode") not in ("half_pixel", "pytorch_half_pixel")
                or attrs.get("antialias", 0) or len(node.input) < 4 or not node.input[3]):
            raise ConvertError(f"{node.name}: only bilinear half-pixel Resize to given sizes is supported ({attrs})")
    if node.op_type in ("Concat",) and "axis" not in attrs:
        raise ConvertError(f"{node.name}: Concat without axis")


def convert(model: onnx.ModelProto) -> tuple[dict, bytes]:
    """(graph description, weights blob) for a cleaned graph with one input and one output."""
    graph = model.graph
    if len(graph.input) != 1 or len(graph.output) != 1:
        raise ConvertError("the torch runner takes graphs with one input and one output")
    if not variants.is_topologically_sorted(graph):
        raise ConvertError("the graph is not topologically sorted (run it through variants.clean first)")
    arrays = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    ints: dict[str, list[int]] = {}
    nodes = []
    defaults = {"Conv": {"dilations": [1, 1], "group": 1, "strides": [1, 1], "pads": [0, 0, 0, 0]},
                "MaxPool": {"strides": [1, 1], "pads": [0, 0, 0, 0], "ceil_mode": 0}}
    for node in graph.node:
        attrs = _attrs(node)
        _check(node, attrs)
        if node.op_type == "Constant":
            arrays[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
            continue
        attrs = {**defaults.get(node.op_type, {}), **attrs}
        nodes.append({"op": node.op_type, "name": node.name, "inputs": list(node.input),
                      "outputs": list(node.output), "attrs": {k: v for k, v in attrs.items() if not isinstance(v, onnx.TensorProto)}})
    tensors, chunks, offset = {}, [], 0
    for name, array in arrays.items():
        if array.dtype.kind in "iu":
            ints[name] = [int(v) for v in np.atleast_1d(array)]
            continue
        array = np.asarray(array, dtype=np.float32)
        narrow = array.astype(np.float16)
        stored = narrow if np.array_equal(narrow.astype(np.float32), array) else array  # exact only
        data = np.ascontiguousarray(stored).tobytes()
        pad = (-offset) % _ALIGN
        chunks.append(b"\0" * pad + data)
        offset += pad
        tensors[name] = {"dtype": stored.dtype.name, "shape": list(array.shape), "offset": offset}
        offset += len(data)
    description = {"format": FORMAT, "input": graph.input[0].name, "output": graph.output[0].name,
                   "nodes": nodes, "ints": ints, "tensors": tensors}
    return description, b"".join(chunks)


def _paths(fp32_path: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    folder = fp32_path.parent
    return folder / f"torch-r{variants.RECIPE}.json", folder / f"torch-r{variants.RECIPE}.bin"


def prepare(fp32_path: str | os.PathLike) -> pathlib.Path:
    """The torch variant of a cleaned fp32 file (its graph description's path), made once and
    kept beside it; remade when the weights no longer match their recorded sha256."""
    fp32_path = pathlib.Path(fp32_path)
    graph_path, weights_path = _paths(fp32_path)
    try:
        recorded = json.loads(graph_path.read_text())
        if recorded.get("format") == FORMAT and recorded.get("weights_sha256") == sha256_file(weights_path) \
                and recorded.get("source_sha256") == sha256_file(fp32_path):
            return graph_path
    except (OSError, ValueError):
        pass
    description, blob = convert(onnx.load(str(fp32_path)))
    part = weights_path.with_suffix(".bin.part")
    part.write_bytes(blob)
    os.replace(part, weights_path)
    description.update(weights=weights_path.name, weights_sha256=sha256_file(weights_path),
                       source_sha256=sha256_file(fp32_path))
    part = graph_path.with_suffix(".json.part")
    part.write_text(json.dumps(description))
    os.replace(part, graph_path)
    return graph_path
