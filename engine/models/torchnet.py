"""The segmentation net on PyTorch (a GPU, or the CPU for checks), from modelprep's torch variant.

`make model` converts the cleaned fp32 ONNX graph into a small graph description (JSON: nodes,
their inputs, outputs and attributes) and one raw weights file (modelprep/torchconvert.py); this
module runs that description node by node with torch's own operators, so the serving path needs
neither `onnx` nor a converter, and no pickle is loaded. Imported only when the manifest picks a
torch candidate: a CPU-only install never imports torch (tests/engine/test_runtime_imports.py).

Why our own runner rather than torch.compile or TorchScript: the graph's Resize targets are read
from tensors' shapes (any input size, modelprep.variants.flexible_input_size), which broke
torch.compile into a graph per Slice and never finished there; here the shape arithmetic runs as
Python integers, and only convolutions, pools, resizes and joins reach the GPU.
"""

from __future__ import annotations

import json
import pathlib
import threading
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from engine.models.batching import bucket
from engine.models.providers import TORCH_CPU, TORCH_CUDA

FORMAT = 1
_DTYPES = {None: torch.float32, "fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class TorchNetError(RuntimeError):
    pass


@dataclass(frozen=True)
class _IO:
    """Enough of onnxruntime's NodeArg for the engine's readers (name and shape)."""

    name: str
    shape: list


def _weights(graph: dict, folder: pathlib.Path) -> dict[str, np.ndarray]:
    blob = np.memmap(folder / graph["weights"], dtype=np.uint8, mode="r")
    out = {}
    for name, entry in graph["tensors"].items():
        count = int(np.prod(entry["shape"])) if entry["shape"] else 1
        size = count * np.dtype(entry["dtype"]).itemsize
        raw = blob[entry["offset"]:entry["offset"] + size]
        out[name] = np.frombuffer(raw, dtype=entry["dtype"]).reshape(entry["shape"])
    return out


class TorchNet(torch.nn.Module):
    """The converted graph as a module: `forward(x)` -> the graph's one output."""

    def __init__(self, graph_path: pathlib.Path):
        super().__init__()
        graph_path = pathlib.Path(graph_path)
        graph = json.loads(graph_path.read_text())
        if graph.get("format") != FORMAT:
            raise TorchNetError(f"{graph_path}: torch variant format {graph.get('format')!r}, expected {FORMAT}")
        self.input_name, self.output_name = graph["input"], graph["output"]
        self.nodes = graph["nodes"]
        self.ints = {k: tuple(v) for k, v in graph["ints"].items()}  # integer constants: shape arithmetic
        self.params = torch.nn.ParameterDict()
        self._slot = {}
        for i, (name, array) in enumerate(_weights(graph, graph_path.parent).items()):
            # stored exactly (fp16 where every value is one), computed in fp32 unless cast later
            self.params[f"w{i}"] = torch.nn.Parameter(torch.from_numpy(array.astype(np.float32)), requires_grad=False)
            self._slot[name] = f"w{i}"
        self._last_reads = self._last_uses()

    def _last_uses(self) -> list[list[str]]:
        """Per node, the tensors no later node reads: freed as soon as it has run."""
        last = {}
        for index, node in enumerate(self.nodes):
            for name in node["inputs"]:
                last[name] = index
        drops: list[list[str]] = [[] for _ in self.nodes]
        for name, index in last.items():
            if name != self.input_name:
                drops[index].append(name)
        return drops

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values: dict[str, object] = {self.input_name: x}

        def read(name: str):
            if name in values:
                return values[name]
            if name in self.ints:
                return self.ints[name]
            return self.params[self._slot[name]]

        for node, drops in zip(self.nodes, self._last_reads):
            op, attrs, ins = node["op"], node["attrs"], node["inputs"]
            if op == "Conv":
                dilation, pads = attrs["dilations"], attrs["pads"]
                if pads[:2] != pads[2:]:
                    raise TorchNetError(f"asymmetric padding {pads} in {node['name']}")
                bias = read(ins[2]) if len(ins) > 2 and ins[2] else None
                out = F.conv2d(read(ins[0]), read(ins[1]), bias, attrs["strides"], pads[:2], dilation, attrs["group"])
            elif op == "Relu":
                out = F.relu(read(ins[0]), inplace=False)
            elif op == "Add":
                out = read(ins[0]) + read(ins[1])
            elif op == "MaxPool":
                out = F.max_pool2d(read(ins[0]), attrs["kernel_shape"], attrs["strides"], attrs["pads"][:2],
                                   ceil_mode=bool(attrs["ceil_mode"]))
            elif op == "Concat":
                parts = [read(name) for name in ins]
                if all(isinstance(p, tuple) for p in parts):  # shape arithmetic
                    out = tuple(v for p in parts for v in p)
                else:
                    out = torch.cat(parts, dim=attrs["axis"])
            elif op == "Shape":
                out = tuple(read(ins[0]).shape)
            elif op == "Slice":
                shape, start, end = read(ins[0]), read(ins[1]), read(ins[2])
                # only the shape arithmetic of the Resize targets: a 1-D integer slice, step 1
                if not isinstance(shape, tuple) or (len(ins) > 3 and ins[3] and tuple(read(ins[3])) != (0,)) \
                        or (len(ins) > 4 and ins[4] and tuple(read(ins[4])) != (1,)):
                    raise TorchNetError(f"Slice of a tensor, on another axis or with a step in {node['name']}")
                out = tuple(shape[start[0]:end[0]])
            elif op == "Resize":
                size = read(ins[3])[2:]
                out = F.interpolate(read(ins[0]), size=tuple(int(v) for v in size), mode="bilinear", align_corners=False)
            elif op == "Sigmoid":
                out = torch.sigmoid(read(ins[0]))
            else:
                raise TorchNetError(f"operator {op} is not supported ({node['name']})")
            values[node["outputs"][0]] = out
            for name in drops:
                values.pop(name, None)
        return values[self.output_name]


class TorchSession:
    """A TorchNet on one device at one precision, with the parts of onnxruntime's
    InferenceSession the engine reads (get_inputs, get_outputs, get_providers, run), and
    `run_batch` for the batcher (engine/models/batching.py).

    On CUDA the activations are kept channels-last (cuDNN's fast layout for fp16/bf16
    convolutions). One run at a time per session: the batcher gives the GPU whole batches
    instead of interleaved small ones.
    """

    batched = True

    def __init__(self, graph_path: pathlib.Path, device: str = "cuda", precision: str | None = "fp16"):
        if precision not in _DTYPES:
            raise TorchNetError(f"precision {precision!r}: expected one of fp32, fp16, bf16")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise TorchNetError("no CUDA device is visible to torch")
        self.device = torch.device(device)
        self.dtype = _DTYPES[precision]
        net = TorchNet(graph_path).eval()
        self.cuda = self.device.type == "cuda"
        if self.cuda:
            # cuDNN's own heuristics pick the algorithms: autotuning (cudnn.benchmark) would time
            # every convolution at every shape and batch size a server meets (bench/gpu.py
            # measures what it would gain and what its set-up costs)
            net = net.to(self.device, self.dtype, memory_format=torch.channels_last)
        else:
            net = net.to(self.device, self.dtype)
        self.net = net
        self._input, self._output = _IO(net.input_name, [None, 3, "height", "width"]), _IO(net.output_name, [None, 1, None, None])
        self._lock = threading.Lock()

    def get_inputs(self) -> list[_IO]:
        return [self._input]

    def get_outputs(self) -> list[_IO]:
        return [self._output]

    def get_providers(self) -> list[str]:
        return [TORCH_CUDA if self.cuda else TORCH_CPU]

    def run_batch(self, batch: np.ndarray) -> np.ndarray:
        """float32 NCHW (N photos of one shape) -> float32 N x 1 x h x w (the graph's output).

        N is padded with zeros to the next bucket (1, 2, 4, 8, ...): cuDNN sets up each batch
        size it sees, and a few sizes, each warmed once, keep those set-ups out of requests."""
        count = len(batch)
        padded = bucket(count)
        if padded != count:
            batch = np.concatenate([batch, np.zeros((padded - count, *batch.shape[1:]), np.float32)])
        return self._run(batch)[:count]

    def _run(self, batch: np.ndarray) -> np.ndarray:
        with self._lock, torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
            if self.cuda:  # copied as float32 (pinning a fresh buffer per batch costs more), cast there
                x = x.to(self.device).to(self.dtype).contiguous(memory_format=torch.channels_last)
            else:
                x = x.to(self.dtype)
            y = self.net(x)
            return y.float().cpu().numpy()

    def run(self, output_names, feed: dict) -> list[np.ndarray]:
        return [self.run_batch(feed[self._input.name])]


def open_session(graph_path: pathlib.Path, provider: str, precision: str | None) -> TorchSession:
    """The session a manifest candidate names (provider TORCH_CUDA or TORCH_CPU)."""
    if provider not in (TORCH_CUDA, TORCH_CPU):
        raise TorchNetError(f"{provider} is not a torch provider")
    return TorchSession(graph_path, "cuda" if provider == TORCH_CUDA else "cpu", precision)
