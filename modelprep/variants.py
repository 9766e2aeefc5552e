"""Faster variants of a segmentation model, made once at install time (`make model`) and cached.

The shipped IS-Net file stores fp16 weights behind Cast nodes, lists its nodes out of
topological order (so onnx shape inference, and with it ORT's quantiser, fails on it) and
computes 11 side outputs nobody reads. onnxruntime's CPU provider has no fp16 convolutions on
x86, so it runs every fp16 node as fp32 between inserted casts: about 2x slower than the same
network stored in fp32. `clean()` fixes all three; the cleaned fp32 file is the fallback that
works everywhere. On top of it `quantise()` makes a static int8 (QDQ: u8 activations, s8
per-channel weights on 7 bits) variant calibrated with 99.99-percentile histograms over varied public
photos; min-max calibration is what broke masks before (one outlier pixel stretches a range).

Variants live in <cache>/variants/<source sha256>/<kind>-r<RECIPE>.onnx beside a JSON record
of their own sha256; a file that no longer matches its record is rebuilt, so a truncated or
damaged cache never reaches a session. Which of them the server runs, and on which provider, is
measured afterwards (modelprep/measure.py) and written to the model manifest.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import pathlib
import re
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from engine.models.families import COARSE_LOGITS
from modelprep.fetch import cache_dir, sha256_file

log = logging.getLogger(__name__)

RECIPE = 9
"""Bump when clean() or quantise() change: old cached variants are then ignored, not reused.
2: any input shape (flexible_input_size), int8 calibrated on the shapes the engine feeds.
3: the output's upsampling and sigmoid left to the reader (drop_output_upsample).
4: int8 concatenations quantised on one scale (share_concat_scales).
5: int8 Resize targets read their partner's shape from the quantised tensor (shapes_read_quantised).
6: int8 max pools and upsamplings run on the quantised tensors (withdrawn: see 7).
7: int8 upsamplings run on the quantised tensors (upsample_quantised); max pools as quantised.
8: int8 weights on 7 bits (reduce_range): no int16 saturation on CPUs without VNNI.
9: the int8 net's output logits left in float (output_unquantised)."""

KINDS = ("fp32", "int8")
CALIBRATION_PERCENTILE = 99.99


class VariantError(RuntimeError):
    pass


# --- the cleaned fp32 graph --------------------------------------------------------------------


def topologically_sorted(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """Nodes in an order where each one's inputs exist before it runs (stable: keeps file order)."""
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending = list(graph.node)
    ordered: list[onnx.NodeProto] = []
    while pending:
        remaining = []
        for node in pending:
            if all(name in available for name in node.input):
                ordered.append(node)
                available.update(node.output)
            else:
                remaining.append(node)
        if len(remaining) == len(pending):
            missing = sorted({n for node in remaining for n in node.input if n not in available})[:5]
            raise VariantError(f"graph has a cycle or undefined inputs: {missing}")
        pending = remaining
    return ordered


def is_topologically_sorted(graph: onnx.GraphProto) -> bool:
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    for node in graph.node:
        if any(name not in available for name in node.input):
            return False
        available.update(node.output)
    return True


def _links(graph: onnx.GraphProto) -> tuple[dict[str, onnx.NodeProto], dict[str, list[onnx.NodeProto]]]:
    """Each tensor's producing node, and the nodes that read it."""
    produced = {name: node for node in graph.node for name in node.output}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    return produced, readers


def _rename(graph: onnx.GraphProto, old: str, new: str) -> None:
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new
        for i, name in enumerate(node.output):
            if name == old:
                node.output[i] = new


def _float_types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {}
    for value in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        types[value.name] = value.type.tensor_type.elem_type
    for init in inferred.graph.initializer:
        types[init.name] = init.data_type
    return types


def _to_fp32(graph: onnx.GraphProto) -> None:
    """fp16 initializers and constants become fp32, in place."""
    for i, init in enumerate(graph.initializer):
        if init.data_type == TensorProto.FLOAT16:
            graph.initializer[i].CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float32), init.name))
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.TENSOR and attribute.t.data_type == TensorProto.FLOAT16:
                attribute.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(attribute.t).astype(np.float32), attribute.t.name))
    for value in [*graph.input, *graph.output]:
        if value.type.tensor_type.elem_type == TensorProto.FLOAT16:
            value.type.tensor_type.elem_type = TensorProto.FLOAT


def _prune(graph: onnx.GraphProto, *outputs: str) -> None:
    """Drops the nodes and initializers the `outputs` do not depend on, and the stale shapes."""
    needed = set(outputs)
    live = []
    for node in reversed(graph.node):
        if any(name in needed for name in node.output):
            live.append(node)
            needed.update(name for name in node.input if name)
    del graph.node[:]
    graph.node.extend(reversed(live))
    for init in [i for i in graph.initializer if i.name not in needed]:
        graph.initializer.remove(init)
    del graph.value_info[:]


def clean(model: onnx.ModelProto, output_name: str | None = None) -> onnx.ModelProto:
    """One output, topologically sorted, all float tensors fp32 (no Cast between float types);
    where provable, any input shape and the output's upsampling left to the reader
    (flexible_input_size, drop_output_upsample).

    `output_name` None keeps the first output. Returns a new, checked, shape-inferred model.
    """
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    outputs = [o.name for o in graph.output]
    keep = output_name or outputs[0]
    if keep not in outputs:
        raise VariantError(f"model has no output {keep!r}; it has {outputs}")
    sorted_nodes = topologically_sorted(graph)
    del graph.node[:]
    graph.node.extend(sorted_nodes)

    floats = {TensorProto.FLOAT, TensorProto.FLOAT16}
    types = _float_types(model)
    _to_fp32(graph)
    graph_outputs = {o.name for o in graph.output}
    graph_inputs = {i.name for i in graph.input}
    kept = []
    for node in graph.node:
        to = next((a.i for a in node.attribute if a.name == "to"), None) if node.op_type == "Cast" else None
        if to in floats and types.get(node.input[0]) in floats:
            source, result = node.input[0], node.output[0]
            if result in graph_outputs and source not in graph_inputs:
                _rename(graph, source, result)  # the producer now writes the output itself
            else:
                _rename(graph, result, source)
            continue
        if to == TensorProto.FLOAT16:
            for attribute in node.attribute:
                if attribute.name == "to":
                    attribute.i = TensorProto.FLOAT
        kept.append(node)
    del graph.node[:]
    graph.node.extend(kept)

    for output in [o for o in graph.output if o.name != keep]:
        graph.output.remove(output)
    _prune(graph, keep)
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    if flexible_input_size(model):
        drop_output_upsample(model)
    onnx.checker.check_model(model)
    return model


# --- any input shape -----------------------------------------------------------------------------


def _spatial(model: onnx.ModelProto, name: str) -> list[int] | None:
    """The static H, W of tensor `name` as shape inference left them, else None."""
    values = [*model.graph.value_info, *model.graph.input, *model.graph.output]
    for value in values:
        if value.name == name:
            dims = value.type.tensor_type.shape.dim
            if len(dims) == 4 and all(d.HasField("dim_value") for d in dims[2:]):
                return [dims[2].dim_value, dims[3].dim_value]
    return None


def flexible_input_size(model: onnx.ModelProto) -> bool:
    """Lets an exported encoder-decoder take any H x W, in place; False (and untouched) if not.

    PyTorch's export traces `interpolate(x, size=skip.shape[2:])` as a Resize whose target is a
    constant: [32, 32] in IS-Net at 1024², so the graph only runs at its export size and every
    photo has to be squashed into a square. Each such constant is replaced by the runtime H, W of
    the tensor it was traced from: the Resize's output is concatenated with exactly that tensor
    (or, for the last one, it is the model's input). The rewrite is only kept when every Resize
    matches that pattern and each constant equals its partner's static size, so at the export
    size the graph computes exactly what it did. A non-square input then keeps the photo's
    aspect: IS-Net at 1024x768 on 4:3 photos is 25 % faster and closer to the truth
    (notes in engine/models/families.py).
    """
    graph = model.graph
    produced, consumers = _links(graph)
    constants = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    input_name = graph.input[0].name
    resizes = [n for n in graph.node if n.op_type == "Resize"]
    plan = []
    for resize in resizes:
        sizes = produced.get(resize.input[3]) if len(resize.input) > 3 else None
        if sizes is None or sizes.op_type != "Concat" or len(sizes.input) != 2:
            return False
        target = constants.get(sizes.input[1])
        if target is None or target.shape != (2,):
            return False
        users = consumers.get(resize.output[0], [])
        concats = [u for u in users if u.op_type == "Concat"]
        if len(concats) == 1 and len(concats[0].input) == 2:
            partner = next(name for name in concats[0].input if name != resize.output[0])
        elif not concats:
            partner = input_name
        else:
            return False
        if _spatial(model, partner) != [int(v) for v in target]:
            return False
        plan.append((sizes, partner, resize.output[0]))  # output names are unique, node names need not be
    if not plan or len({id(sizes) for sizes, _, _ in plan}) != len(plan):
        return False
    graph.initializer.extend([numpy_helper.from_array(np.array([2], np.int64), "flexible_hw_start"),
                              numpy_helper.from_array(np.array([4], np.int64), "flexible_hw_end")])
    added = []
    for sizes, partner, name in plan:
        shape, hw = f"{name}/target_shape", f"{name}/target_hw"
        added += [helper.make_node("Shape", [partner], [shape], name=shape),
                  helper.make_node("Slice", [shape, "flexible_hw_start", "flexible_hw_end"], [hw], name=hw)]
        sizes.input[1] = hw
    graph.node.extend(added)
    used = {name for node in graph.node for name in node.input}
    ordered = [n for n in topologically_sorted(graph) if n.op_type != "Constant" or n.output[0] in used]
    del graph.node[:]
    graph.node.extend(ordered)
    for value in (graph.input[0], *graph.output):
        dims = value.type.tensor_type.shape.dim
        if len(dims) == 4:
            dims[2].dim_param, dims[3].dim_param = "height", "width"
    del graph.value_info[:]
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    model.CopyFrom(inferred)
    return True


def drop_output_upsample(model: onnx.ModelProto) -> bool:
    """Cuts a flexible graph's tail `Sigmoid(Resize(logits, the input's H x W))`, in place: the
    output becomes COARSE_LOGITS. False (and untouched) unless the tail is exactly that: a
    bilinear, half-pixel Resize to sizes read from the input's shape (as flexible_input_size
    leaves the last one), nothing else reading either result.

    Why: on OpenVINO the int8 IS-Net ran that one-channel upsample to 1024x768 in 7 ms, with its
    quantise/dequantise pair, of a 0.16 s inference (its layout pads one channel to sixteen);
    numpy does the same resize and sigmoid on the coarse logits in 0.5 ms.
    """
    graph = model.graph
    if len(graph.output) != 1:
        return False
    produced, readers = _links(graph)
    sigmoid = produced.get(graph.output[0].name)
    resize = produced.get(sigmoid.input[0]) if sigmoid is not None and sigmoid.op_type == "Sigmoid" else None
    if (resize is None or resize.op_type != "Resize" or len(resize.input) < 4
            or len(readers.get(resize.output[0], [])) != 1):
        return False
    attributes = {a.name: helper.get_attribute_value(a) for a in resize.attribute}
    transform = attributes.get("coordinate_transformation_mode", b"half_pixel")
    if (attributes.get("mode") != b"linear" or transform not in (b"half_pixel", b"pytorch_half_pixel")
            or attributes.get("antialias", 0) or attributes.get("exclude_outside", 0)):
        return False
    sizes = produced.get(resize.input[3])
    hw = produced.get(sizes.input[-1]) if sizes is not None and sizes.op_type == "Concat" else None
    shape = produced.get(hw.input[0]) if hw is not None and hw.op_type == "Slice" else None
    if shape is None or shape.op_type != "Shape" or shape.input[0] != graph.input[0].name:
        return False
    # Only the two bounds are read: listing every weight took 8 of the cleaning's 12 s.
    wanted = set(hw.input[1:3])
    constants = {i.name: numpy_helper.to_array(i).tolist() for i in graph.initializer if i.name in wanted}
    if [constants.get(name) for name in hw.input[1:3]] != [[2], [4]]:  # the input's H, W
        return False
    logits = resize.input[0]
    graph.node.remove(sigmoid)
    graph.node.remove(resize)
    _rename(graph, logits, COARSE_LOGITS)
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(COARSE_LOGITS, TensorProto.FLOAT, None))
    _prune(graph, COARSE_LOGITS)
    model.CopyFrom(onnx.shape_inference.infer_shapes(model, strict_mode=True))
    return True


# --- int8 --------------------------------------------------------------------------------------


def calibration_tensors(family_name: str, photos: Sequence[pathlib.Path], size: int,
                        keep_aspect: bool = False) -> Iterator[np.ndarray]:
    """Each photo as the net sees it, then mirrored, then a tight crop: varied framing and scale.

    `keep_aspect`: at the shapes the engine feeds a net that takes any shape (the photos' own
    aspect), not squashed into its square. Yielded one at a time so calibration never holds more
    than one image's activations.
    """
    from PIL import Image, ImageOps

    from engine.models.families import family

    fam = family(family_name)
    for path in photos:
        with Image.open(path) as opened:
            image = opened.convert("RGB")
        width, height = image.size
        crop = image.crop((width // 8, height // 8, width - width // 8, height - height // 8))
        for view in (image, ImageOps.mirror(image), crop):
            yield fam.preprocess(view, fam.input_shape(*view.size, size, keep_aspect))


class _LazyReader:
    """ORT CalibrationDataReader over a generator factory, with the set_range ORT's strided
    collection calls so each collect_data() pass sees exactly one image."""

    def __init__(self, input_name: str, count: int, make: Callable[[], Iterator[np.ndarray]]):
        self.input_name, self.count = input_name, count
        self._source = make()
        self._left = 0

    def __len__(self) -> int:
        return self.count

    def set_range(self, start_index: int, end_index: int) -> None:
        self._left = end_index - start_index

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._left <= 0:
            return None
        self._left -= 1
        tensor = next(self._source, None)
        return None if tensor is None else {self.input_name: tensor}


def quantise(fp32_path: pathlib.Path, target: pathlib.Path, family_name: str, photos: Sequence[pathlib.Path]) -> None:
    """Static int8 QDQ of a cleaned model: u8 activations, s8 per-channel weights, percentile;
    each concatenation on one scale (share_concat_scales), upsamplings on the quantised tensors
    (upsample_quantised), shapes read from them (shapes_read_quantised), the output in float
    (output_unquantised)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    model = onnx.load(str(fp32_path), load_external_data=False)
    model_input = model.graph.input[0]
    height, width = model_input.type.tensor_type.shape.dim[-2:]
    flexible = not (height.dim_value and width.dim_value)
    size = max(height.dim_value, width.dim_value) or 1024
    count = 3 * len(photos)
    reader = _LazyReader(model_input.name, count, lambda: calibration_tensors(family_name, photos, size, flexible))
    # ORT prints a line per calibration pass and advises pre-processing (clean() already did what matters).
    logging.disable(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            quantize_static(
                str(fp32_path),
                str(target),
                reader,
                quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                per_channel=True,
                # Without VNNI, u8 x s8 goes through VPMADDUBSW, whose int16 pair sums saturate on
                # 8-bit weights: OpenVINO's AVX2 kernels left mattes grey (README, The model).
                reduce_range=True,
                calibrate_method=CalibrationMethod.Percentile,
                extra_options={
                    "CalibPercentile": CALIBRATION_PERCENTILE,
                    "CalibStridedMinMax": 1,  # one image per collection pass: histograms grow, memory doesn't
                },
            )
    finally:
        logging.disable(logging.NOTSET)
    quantised = onnx.load(str(target))
    changed = share_concat_scales(quantised)
    changed += upsample_quantised(quantised)
    changed += shapes_read_quantised(quantised)
    changed += output_unquantised(quantised)
    if changed:
        onnx.save(quantised, str(target))


def _rescale(quantise: onnx.NodeProto, readers: dict[str, list[onnx.NodeProto]], scale: list[str]) -> None:
    """Puts a QuantizeLinear and every DequantizeLinear of its output on `scale` ([scale, zero
    point] names), so they stay a matched pair."""
    pairs = [r for r in readers.get(quantise.output[0], []) if r.op_type == "DequantizeLinear"]
    for node in (quantise, *pairs):
        node.input[1:3] = scale


def share_concat_scales(model: onnx.ModelProto) -> int:
    """Gives each quantised Concat's inputs the scale and zero point of its output, in place;
    returns how many inputs were re-pointed.

    ORT's quantiser calibrates every tensor on its own, so a decoder stage joins two tensors of
    different scales and OpenVINO requantises each into the concatenation's (a FakeQuantize over
    ~25M values at 512x384 alone). On one scale it copies them as they are. The inputs' other
    readers (the encoder's max pools) then see the wider of the ranges. IS-Net int8 on
    OpenVINO at 1024x768, 2 threads: 3-6 % faster (interleaved runs); mean IoU against the
    truth grabcut50 0.8681 -> 0.8689, alphamatting14 0.8075 -> 0.8051 (fp32: 0.8688, 0.7914).
    """
    graph = model.graph
    produced, readers = _links(graph)
    shared = 0
    for concat in [n for n in graph.node if n.op_type == "Concat"]:
        after = readers.get(concat.output[0], [])
        if len(after) != 1 or after[0].op_type != "QuantizeLinear" or len(after[0].input) < 3:
            continue
        scale, zero_point = after[0].input[1], after[0].input[2]
        for name in concat.input:
            dequantise = produced.get(name)
            if dequantise is None or dequantise.op_type != "DequantizeLinear":
                continue
            quantise = produced.get(dequantise.input[0])
            if quantise is None or quantise.op_type != "QuantizeLinear" or quantise.input[1:3] == [scale, zero_point]:
                continue
            _rescale(quantise, readers, [scale, zero_point])
            shared += 1
    if shared:
        _prune(graph, *(o.name for o in graph.output))  # the inputs' own scales are read by nobody now
    return shared


def upsample_quantised(model: onnx.ModelProto) -> int:
    """Runs each Resize between a DequantizeLinear and a QuantizeLinear on the quantised tensor
    itself, in place; returns how many were rewritten. Run after share_concat_scales.

    ORT's quantiser leaves an upsampling in float between a dequantisation and a requantisation,
    and OpenVINO computes just that: 33 bf16 Interpolates per IS-Net inference at 1024x768
    (~17 ms of ~330 in its per-layer profile), where it has uint8 kernels. Each upsampling here
    joins a concatenation, whose scale its requantisation already took (share_concat_scales):
    the tensor it upsamples is quantised on that scale instead of its own (every reader of that
    quantisation moves with it), and the interpolation rounds to it once. Only where the pattern
    holds: one QuantizeLinear reading the Resize, only DequantizeLinears reading that, a nearest
    or linear mode (weights in [0, 1], so no overshoot of the uint8 range), and no other
    upsampling wanting the same tensor on another scale.

    Max pools are left as ORT quantised them: run on uint8 the same way (exact in itself, and
    OpenVINO's requantisations gone), onnxruntime's CPU provider at its full optimisation level
    computed a different net (mean IoU against the truth, alphamatting14, 0.808 -> 0.762).
    """
    graph = model.graph
    produced, readers = _links(graph)
    rewritten = 0
    moved: dict[str, list[str]] = {}  # quantisations put on another scale: their output -> scale
    for node in [n for n in graph.node if n.op_type == "Resize"]:
        mode = next((a.s for a in node.attribute if a.name == "mode"), b"nearest")
        if len(node.output) != 1 or mode not in (b"nearest", b"linear"):
            continue
        dequantise = produced.get(node.input[0])
        if dequantise is None or dequantise.op_type != "DequantizeLinear":
            continue
        quantise = produced.get(dequantise.input[0])
        after = readers.get(node.output[0], [])
        if quantise is None or quantise.op_type != "QuantizeLinear" or len(after) != 1 or after[0].op_type != "QuantizeLinear":
            continue
        requantise = after[0]
        outputs = readers.get(requantise.output[0], [])
        if not outputs or any(r.op_type != "DequantizeLinear" for r in outputs) or len(requantise.input) < 3:
            continue
        scale = list(requantise.input[1:3])
        if moved.setdefault(quantise.output[0], scale) != scale:
            continue  # another upsampling put it on a scale of its own
        _rescale(quantise, readers, scale)
        node.input[0] = dequantise.input[0]
        for reader in outputs:
            reader.input[0] = node.output[0]
        rewritten += 1
    if rewritten:
        _prune(graph, *(o.name for o in graph.output))  # the requantisations are read by nobody now
    return rewritten


def shapes_read_quantised(model: onnx.ModelProto) -> int:
    """Points each Shape that reads a DequantizeLinear's output at that node's quantised input
    (the same shape), in place; returns how many were moved.

    flexible_input_size's Resize targets read the runtime shape of the tensors they join, which
    quantisation turns into DequantizeLinear outputs. OpenVINO folds a dequantisation into the
    convolution or concatenation that reads it, unless something else needs the float tensor:
    a Shape did, so 33 float copies were made per inference only to be measured (PowerStatic,
    13-15 ms of a ~330 ms IS-Net inference at 1024x768 on 2 threads, per-layer profile).
    Results are bit-identical; 2-4 % faster in interleaved runs.
    """
    produced, _ = _links(model.graph)
    moved = 0
    for node in model.graph.node:
        if node.op_type != "Shape":
            continue
        source = produced.get(node.input[0])
        if source is not None and source.op_type == "DequantizeLinear":
            node.input[0] = source.input[0]
            moved += 1
    return moved


def output_unquantised(model: onnx.ModelProto) -> int:
    """Drops the QuantizeLinear-DequantizeLinear pair in front of each graph output, in place, so
    the last layer answers in float; returns how many outputs were freed.

    ORT's quantiser rounds the net's output like any activation: IS-Net's logits spanned -79..16
    on one uint8 scale, 0.37 a step, which near the sigmoid's middle is ~0.09 of alpha a step, so
    soft edges came out banded. The last convolution still reads uint8 and int8 weights; only its
    one-channel result is kept as computed.
    """
    graph = model.graph
    produced, readers = _links(graph)
    freed = 0
    for output in graph.output:
        dequantise = produced.get(output.name)
        if dequantise is None or dequantise.op_type != "DequantizeLinear":
            continue
        quantise = produced.get(dequantise.input[0])
        if (quantise is None or quantise.op_type != "QuantizeLinear"
                or readers.get(quantise.output[0], []) != [dequantise]
                or readers.get(quantise.input[0], []) != [quantise]):
            continue
        computed = quantise.input[0]
        graph.node.remove(dequantise)
        graph.node.remove(quantise)
        _rename(graph, computed, output.name)
        freed += 1
    if freed:
        _prune(graph, *(o.name for o in graph.output))  # the pair's scales and zero points
    return freed


# --- cache -------------------------------------------------------------------------------------


def variants_dir() -> pathlib.Path:
    return cache_dir() / "variants"


def _paths(source_sha: str, kind: str) -> tuple[pathlib.Path, pathlib.Path]:
    folder = variants_dir() / source_sha
    return folder / f"{kind}-r{RECIPE}.onnx", folder / f"{kind}-r{RECIPE}.json"


def cached(source_sha: str, kind: str) -> pathlib.Path | None:
    """The variant's path if it exists and still matches its recorded sha256, else None."""
    path, record_path = _paths(source_sha, kind)
    try:
        record = json.loads(record_path.read_text())
        size = path.stat().st_size
    except (OSError, ValueError):
        return None
    if record.get("size") != size or record.get("recipe") != RECIPE or sha256_file(path) != record.get("sha256"):
        return None
    return path


def _store(tmp: pathlib.Path, source_sha: str, kind: str, **details: object) -> pathlib.Path:
    path, record_path = _paths(source_sha, kind)
    record = {"kind": kind, "recipe": RECIPE, "source_sha256": source_sha, "sha256": sha256_file(tmp),
              "size": tmp.stat().st_size, **details}
    os.replace(tmp, path)
    record_tmp = record_path.with_suffix(".json.part")
    record_tmp.write_text(json.dumps(record, indent=1))
    os.replace(record_tmp, record_path)
    _drop_other_recipes(path.parent, kind)
    return path


def _drop_other_recipes(folder: pathlib.Path, kind: str) -> None:
    """Deletes the `kind` variant files of other recipes beside a new one: no version reads
    them any more, and each IS-Net pair is ~0.2 GB. A process still running an old file keeps
    its open copy (removing a file does not take it from a process that holds it)."""
    pattern = re.compile(rf"{re.escape(kind)}-r(\d+)\.(onnx|json)$")
    for old in folder.iterdir():
        found = pattern.match(old.name)
        if found and int(found.group(1)) != RECIPE:
            with contextlib.suppress(OSError):
                old.unlink()


def prepare(model_path: str | os.PathLike, family: str = "isnet", kind: str = "fp32",
            output_name: str | None = None) -> pathlib.Path:
    """Path of the `kind` variant of `model_path`, made if it is not cached yet.

    Cached by the source's sha256 + RECIPE; a cached file is verified before it is returned. The
    cleaned fp32 variant is always made first (int8 is made from it) and is the fallback.
    """
    if kind not in KINDS:
        raise VariantError(f"unknown variant {kind!r}; known: {', '.join(KINDS)}")
    source = pathlib.Path(model_path)
    source_sha = sha256_file(source)
    hit = cached(source_sha, kind)
    if hit:
        return hit
    folder = variants_dir() / source_sha
    folder.mkdir(parents=True, exist_ok=True)
    fp32 = cached(source_sha, "fp32")
    if fp32 is None:
        if output_name is None:
            from engine.models.families import family as family_of

            output_name = family_of(family).output_name
        model = onnx.load(str(source))
        outputs = [o.name for o in model.graph.output]
        cleaned = clean(model, output_name if output_name in outputs else None)
        tmp = folder / f"fp32-r{RECIPE}.onnx.part"
        onnx.save(cleaned, str(tmp))
        fp32 = _store(tmp, source_sha, "fp32", source=str(source))
    if kind == "fp32":
        return fp32
    from modelprep.calibration import ensure_photos

    photos = ensure_photos()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        tmp = pathlib.Path(scratch) / "int8.onnx"
        quantise(fp32, tmp, family, photos)
        return _store(tmp, source_sha, "int8", calibration=[p.name for p in photos],
                      percentile=CALIBRATION_PERCENTILE, seconds=round(time.monotonic() - started, 1))
