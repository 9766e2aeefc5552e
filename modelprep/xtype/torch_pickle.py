"""Reads a state dict saved by `torch.save` in the legacy (pre-1.6, non-zip) format, without torch.

The registry packages that carry our ImageNet weights ship them in that format. Pulling in PyTorch
(a multi-GB install) only to read a few dozen arrays once at install time is not worth it: the
format is a short sequence of pickles followed by the raw storages, which numpy reads directly.
Only tensors and plain containers are accepted; any other class in the pickle is refused, so a
tampered file cannot run code.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

_MAGIC = 0x1950A86A20F9469CFC6C
_PROTOCOL = 1001

_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class TorchPickleError(ValueError):
    pass


@dataclass
class _TensorRef:
    key: str
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor(storage: tuple[str, Any], offset: int, size, stride, *_ignored) -> _TensorRef:
    return _TensorRef(storage[0], int(offset), tuple(size), tuple(stride))


class _Unpickler(pickle.Unpickler):
    def __init__(self, f: BinaryIO, storages: dict[str, tuple[type, int]]):
        super().__init__(f)
        self._storages = storages

    def find_class(self, module: str, name: str) -> Any:
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        raise TorchPickleError(f"refusing to load {module}.{name} from a weights file")

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise TorchPickleError(f"unexpected persistent id {pid!r}")
        _, dtype, key, _location, numel = pid[:5]
        self._storages.setdefault(str(key), (dtype, int(numel)))
        return (str(key), dtype)


def load_state_dict(data: bytes) -> dict[str, np.ndarray]:
    """Returns {name: array} for every tensor in a legacy-format torch state dict."""
    f = io.BytesIO(data)
    try:
        if pickle.load(f) != _MAGIC:
            raise TorchPickleError("not a legacy torch file (bad magic number)")
        if pickle.load(f) != _PROTOCOL:
            raise TorchPickleError("unsupported torch file protocol")
        pickle.load(f)  # sys_info: endianness and type sizes, little-endian assumed below
        storages: dict[str, tuple[type, int]] = {}
        obj = _Unpickler(f, storages).load()
        keys = pickle.load(f)
        raw: dict[str, np.ndarray] = {}
        for key in keys:
            dtype, _ = storages[str(key)]
            (numel,) = struct.unpack("<q", f.read(8))
            itemsize = np.dtype(dtype).itemsize
            raw[str(key)] = np.frombuffer(f.read(numel * itemsize), dtype=dtype, count=numel)
    except (pickle.UnpicklingError, EOFError, struct.error, KeyError) as exc:
        raise TorchPickleError(f"corrupt torch file: {exc}") from exc
    if not isinstance(obj, dict):
        raise TorchPickleError("the file holds no state dict")
    out: dict[str, np.ndarray] = {}
    for name, ref in obj.items():
        if not isinstance(ref, _TensorRef):
            continue
        base = raw[ref.key]
        itemsize = base.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            base[ref.offset:], shape=ref.size, strides=tuple(s * itemsize for s in ref.stride)
        )
        out[name] = np.array(view)
    return out
