"""modelprep/torchconvert: the graph description and weights the torch runner reads.

No torch here: the description's structure and the weights' exactness are checked; the runner's
numbers against onnxruntime's are checked where torch is (bench/gpu.py's agreement section, and
`python -m modelprep --torch-cpu-check`).
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from modelprep import torchconvert, variants
from modelprep.fetch import ensure_checkpoint


def _graph(resize_mode: str = "linear", extra: list | None = None) -> onnx.ModelProto:
    """x -> Conv -> Relu -> MaxPool -> Resize back to the Relu's H, W (read from its shape) ->
    Concat with the Relu: the pattern flexible_input_size leaves in IS-Net."""
    exact = np.array([0.5, -1.25, 2.0, 0.0], np.float32).reshape(4, 1, 1, 1) * np.ones((4, 3, 3, 3), np.float32)
    inexact = np.array([0.1, 0.2, 0.3, 0.4], np.float32)  # not representable in fp16
    inits = [numpy_helper.from_array(exact, "w"), numpy_helper.from_array(inexact, "b"),
             numpy_helper.from_array(np.array([2], np.int64), "start"), numpy_helper.from_array(np.array([4], np.int64), "end")]
    nodes = [
        helper.make_node("Constant", [], ["nc"], value=numpy_helper.from_array(np.array([1, 4], np.int64))),
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1),
        helper.make_node("Shape", ["r"], ["s"], name="shape"),
        helper.make_node("Slice", ["s", "start", "end"], ["hw"], name="slice"),
        helper.make_node("Concat", ["nc", "hw"], ["sizes"], name="sizes", axis=0),
        helper.make_node("Resize", ["p", "", "", "sizes"], ["u"], name="up", mode=resize_mode,
                         coordinate_transformation_mode="half_pixel"),
        helper.make_node("Concat", ["u", "r"], ["y"], name="join", axis=1),
        *(extra or []),
    ]
    out = "z" if extra else "y"
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, "h", "w"])],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_the_description_lists_the_nodes_and_folds_integer_constants():
    description, _ = torchconvert.convert(_graph())
    assert [n["op"] for n in description["nodes"]] == ["Conv", "Relu", "MaxPool", "Shape", "Slice", "Concat", "Resize", "Concat"]
    assert description["ints"] == {"nc": [1, 4], "start": [2], "end": [4]}
    assert (description["input"], description["output"]) == ("x", "y")
    conv = description["nodes"][0]
    assert conv["attrs"]["pads"] == [1, 1, 1, 1] and conv["attrs"]["group"] == 1 and conv["attrs"]["dilations"] == [1, 1]
    assert description["nodes"][2]["attrs"]["ceil_mode"] == 1
    json.dumps(description)  # what prepare() writes


def test_weights_are_stored_exactly_fp16_only_where_that_loses_nothing():
    description, blob = torchconvert.convert(_graph())
    tensors = description["tensors"]
    assert tensors["w"]["dtype"] == "float16" and tensors["b"]["dtype"] == "float32"
    for name, expected in (("w", numpy_helper.to_array(_graph().graph.initializer[0])),
                           ("b", np.array([0.1, 0.2, 0.3, 0.4], np.float32))):
        entry = tensors[name]
        stored = np.frombuffer(blob, entry["dtype"], expected.size, entry["offset"]).reshape(entry["shape"])
        assert np.array_equal(stored.astype(np.float32), expected)
        assert entry["offset"] % 64 == 0


@pytest.mark.parametrize("reason, model", [
    ("Gemm", lambda: _graph(extra=[helper.make_node("Gemm", ["y", "y"], ["z"], name="gemm")])),
    ("bilinear half-pixel", lambda: _graph(resize_mode="nearest")),
])
def test_what_the_runner_cannot_compute_is_refused_at_install_time(reason, model):
    with pytest.raises(torchconvert.ConvertError, match=reason):
        torchconvert.convert(model())


def test_prepare_is_cached_and_a_damaged_weights_file_is_remade(tmp_path):
    fp32 = tmp_path / f"fp32-r{variants.RECIPE}.onnx"
    onnx.save(_graph(), str(fp32))
    graph = torchconvert.prepare(fp32)
    weights = graph.with_suffix(".bin")
    stamp = weights.stat().st_mtime_ns
    assert torchconvert.prepare(fp32) == graph and weights.stat().st_mtime_ns == stamp
    weights.write_bytes(b"\0" * weights.stat().st_size)
    torchconvert.prepare(fp32)
    assert weights.read_bytes() != b"\0" * weights.stat().st_size


def test_the_shipped_isnet_converts_with_every_weight_exact_in_fp16():
    """IS-Net ships fp16 weights (clean() widened them): 88 MB for the GPU, nothing rounded."""
    fp32 = variants.prepare(ensure_checkpoint(), "isnet", "fp32")
    description, blob = torchconvert.convert(onnx.load(str(fp32)))
    assert {t["dtype"] for t in description["tensors"].values()} == {"float16"}
    assert {n["op"] for n in description["nodes"]} <= torchconvert.SUPPORTED
    assert 80e6 < len(blob) < 95e6
