"""Builds torchvision's MobileNetV2 (ImageNet-1k) as ONNX from its state dict.

The layout is torchvision's: features.0 is the stem, features.1-17 the inverted residual blocks,
features.18 the 1x1 head, classifier.1 the linear layer. Which block expands, and how many
channels each has, is read from the weights' shapes; only the strides come from the paper's
table, as they cannot be read from weights.
"""

from __future__ import annotations

import numpy as np
import onnx

from engine.classify.classifier import CLASSIFIER_SIZE as INPUT_SIZE
from modelprep.xtype.onnx_graph import GraphBuilder, fold_batchnorm
# Stride of each of features.1 .. features.17 (MobileNetV2 paper, table 2).
_BLOCK_STRIDES = [1, 2, 1, 2, 1, 1, 2, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1]
_BN_EPS = 1e-5


def _conv_bn(g: GraphBuilder, sd: dict[str, np.ndarray], x: str, conv: str, bn: str, *,
             stride: int = 1, act: bool = True) -> str:
    weight = sd[f"{conv}.weight"]
    w, b = fold_batchnorm(weight, sd[f"{bn}.weight"], sd[f"{bn}.bias"], sd[f"{bn}.running_mean"],
                          sd[f"{bn}.running_var"], _BN_EPS)
    k = weight.shape[2]
    group = weight.shape[0] if weight.shape[1] == 1 and k > 1 else 1
    y = g.conv(x, w, b, stride=stride, group=group, pads=[k // 2] * 4)
    return g.relu6(y) if act else y


def build(sd: dict[str, np.ndarray]) -> onnx.ModelProto:
    """Input `image` Nx3x224x224, already normalised; output `logits` Nx1000."""
    g = GraphBuilder("mobilenet_v2")
    x = g.input("image", ["n", 3, INPUT_SIZE, INPUT_SIZE])
    x = _conv_bn(g, sd, x, "features.0.0", "features.0.1", stride=2)
    for i, stride in enumerate(_BLOCK_STRIDES, start=1):
        p = f"features.{i}.conv"
        y = x
        if f"{p}.3.weight" in sd:  # expand 1x1, depthwise 3x3, project 1x1
            y = _conv_bn(g, sd, y, f"{p}.0.0", f"{p}.0.1")
            y = _conv_bn(g, sd, y, f"{p}.1.0", f"{p}.1.1", stride=stride)
            y = _conv_bn(g, sd, y, f"{p}.2", f"{p}.3", act=False)
        else:  # depthwise 3x3, project 1x1
            y = _conv_bn(g, sd, y, f"{p}.0.0", f"{p}.0.1", stride=stride)
            y = _conv_bn(g, sd, y, f"{p}.1", f"{p}.2", act=False)
        in_ch = sd[f"{p}.0.0.weight"].shape[1] if f"{p}.3.weight" in sd else sd[f"{p}.0.0.weight"].shape[0]
        out_ch = sd[f"{p}.{'2' if f'{p}.3.weight' in sd else '1'}.weight"].shape[0]
        x = g.op("Add", [x, y], "residual") if stride == 1 and in_ch == out_ch else y
    x = _conv_bn(g, sd, x, "features.18.0", "features.18.1")
    x = g.op("GlobalAveragePool", [x], "pool")
    x = g.op("Flatten", [x], "flatten", axis=1)
    x = g.op("Gemm", [x, g.const(sd["classifier.1.weight"], "fc_w"), g.const(sd["classifier.1.bias"], "fc_b")],
             "fc", transB=1)
    g.output(x, "logits", ["n", sd["classifier.1.bias"].shape[0]])
    return g.model()
