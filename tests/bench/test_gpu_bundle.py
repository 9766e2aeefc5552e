"""bench/gpu_bundle and bench/gpu_device's stage: what travels to the GPU machine comes back exact.

The device's unpacker uses only the standard library (it runs before anything is set up there),
so its unshuffle is a second implementation: both are checked against the original bytes.
"""

from __future__ import annotations

import hashlib
import io
import json
import lzma
import tarfile

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from bench import gpu_bundle, gpu_device


def _model_bytes() -> bytes:
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(0, 0.1, (64, 33)).astype(np.float16), "a"),
             numpy_helper.from_array(rng.normal(0, 0.1, (17, 64)).astype(np.float32), "b"),
             numpy_helper.from_array(np.arange(5, dtype=np.int64), "small")]
    nodes = [helper.make_node("Identity", ["x"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])], inits)
    return helper.make_model(graph).SerializeToString()


def test_shuffling_a_model_is_lossless_in_both_unpackers():
    data = _model_bytes()
    shuffled, layout = gpu_bundle.shuffle_onnx(data)
    assert len(layout["segments"]) == 2  # the fp16 and fp32 weights; the small int64 one stays
    assert shuffled != data and len(shuffled) == len(data)
    assert gpu_device._unshuffle(shuffled, json.loads(json.dumps(layout))) == data
    onnx.load_from_string(gpu_device._unshuffle(shuffled, layout))


def _tar(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def test_stage_unpacks_an_item_once_all_its_chunks_have_come(tmp_path, capsys):
    """Two pieces, carried in two calls: after the first the item is missing, after the second
    it is unpacked and checked; a damaged chunk is refused."""
    payload = _tar({"models/m.onnx": b"weights" * 1000, "calibration/p.png": b"photo"})
    packed = lzma.compress(payload)
    half = len(packed) // 2
    item = {"name": "cache", "dest": "cache", "kind": "tar", "sha256": hashlib.sha256(payload).hexdigest(),
            "size": len(payload), "chunks": ["cache.0", "cache.1"]}
    index = {"format": 1, "pieces": 2, "items": [item]}
    stage_dir = tmp_path / "stage"
    for number, (name, part) in enumerate((("cache.0", packed[:half]), ("cache.1", packed[half:])), start=1):
        carried = tmp_path / f"call{number}"
        (carried / f"part{number}").mkdir(parents=True)
        (carried / f"part{number}" / "bundle.json").write_text(json.dumps({**index, "piece": number}))
        (carried / f"part{number}" / name).write_bytes(part)
        code = gpu_device.stage(stage_dir, carried)
        if number == 1:
            assert code == 3 and "still missing: cache (needs cache.1)" in capsys.readouterr().out
    assert code == 0
    assert (stage_dir / "cache" / "models" / "m.onnx").read_bytes() == b"weights" * 1000
    assert not list((stage_dir / "chunks").iterdir())  # chunks dropped once unpacked

    bad = tmp_path / "bad"
    (bad / "part1").mkdir(parents=True)
    (bad / "part1" / "bundle.json").write_text(json.dumps({**index, "items": [{**item, "sha256": "0" * 64}]}))
    for name, part in (("cache.0", packed[:half]), ("cache.1", packed[half:])):
        (bad / "part1" / name).write_bytes(part)
    with pytest.raises(SystemExit, match="sha256 mismatch"):
        gpu_device.stage(tmp_path / "stage2", bad)
