"""bench/spinning.py's layouts and table, on a one-node graph of the net's input shape (the real
net's figures are the benchmark's, not a test's)."""

from __future__ import annotations

import pathlib
import types

import onnx
from onnx import TensorProto, helper

from bench import spinning
from engine.models import manifest, providers


def _relu_model(path: pathlib.Path) -> pathlib.Path:
    shape = list(spinning.SHAPE)
    graph = helper.make_graph([helper.make_node("Relu", ["input"], ["output"])], "relu",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, shape)])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), path)
    return path


def test_each_layout_runs_its_sessions_and_times_them(tmp_path):
    model = str(_relu_model(tmp_path / "relu.onnx"))
    for spin in (True, False):
        assert spinning._in_threads(model, [2, 1], spin, False, 2) > 0
    assert spinning._in_processes(model, 2, 1, False, False, 2) > 0


def test_the_table_has_a_row_per_cpu_candidate_and_layout(tmp_path, monkeypatch):
    model = _relu_model(tmp_path / "relu.onnx")

    def candidate(name, provider):
        return manifest.Candidate(name=name, file=model, kind="fp32", provider=provider, precision=None, arena=False,
                                  size=1, latency_ms={}, mean_iou=1.0, min_iou=1.0, mae=0.0, passes=True)

    found = types.SimpleNamespace(candidates=(candidate("fp32-cpu", providers.CPU),
                                              candidate("fp32-openvino", providers.OPENVINO)))
    monkeypatch.setattr(manifest, "load", lambda *_: found)
    # Processes are started for real above; here each layout of them is recorded and timed at 1 s.
    started = []
    monkeypatch.setattr(spinning, "_in_processes", lambda *args: started.append(args[1:3]) or 1.0)
    assert spinning.main(["--runs", "1", "--out", str(tmp_path)]) == 0
    rows = [line for line in (tmp_path / "spinning.md").read_text().splitlines() if line.startswith("| fp32")]
    cores = providers.default_threads()
    assert [row.split(" | ")[1] for row in rows] == ["alone", f"lanes ({cores} + 1 threads, one process)",
                                                     "2 processes", "4 processes"]
    assert len(rows) == 4 and all(row.startswith("| fp32-cpu |") for row in rows)  # OpenVINO's pool is not ORT's
    assert all(float(row.rstrip(" |").rsplit("| ", 1)[1]) > 0 for row in rows)
    assert started == [(2, cores)] * 4 + [(4, cores)] * 4  # spinning on, off, on, off per layout
