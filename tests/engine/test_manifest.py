"""The model manifest as the runtime reads it: which candidate a setting picks, which machine it
belongs to, and the errors that say what to run."""

from __future__ import annotations

import json
import pathlib

import pytest

from engine.models import manifest
from engine.models.manifest import Candidate, Manifest, ManifestError

CPU, OPENVINO = "CPUExecutionProvider", "OpenVINOExecutionProvider"


def _candidate(tmp_path: pathlib.Path, name: str, kind: str, provider: str, ms: float, passes: bool = True,
               precision: str | None = None) -> Candidate:
    file = tmp_path / f"{kind}.onnx"
    file.write_bytes(b"x" * 10)
    return Candidate(name=name, file=file, kind=kind, provider=provider, precision=precision, arena=kind == "int8",
                     size=10, latency_ms={"1024x768": ms, "768x1024": ms + 10}, mean_iou=0.99 if passes else 0.9,
                     min_iou=0.95 if passes else 0.5, mae=0.001, passes=passes)


@pytest.fixture()
def table(tmp_path) -> Manifest:
    """The speeds issue 14 measured on an AVX2-only CPU, plus a fast candidate that fails."""
    candidates = (
        _candidate(tmp_path, "fp32-cpu", "fp32", CPU, 2250),
        _candidate(tmp_path, "int8-cpu", "int8", CPU, 1000),
        _candidate(tmp_path, "fp32-openvino", "fp32", OPENVINO, 1670, precision="f32"),
        _candidate(tmp_path, "fp32-openvino-bf16", "fp32", OPENVINO, 800, passes=False, precision="bf16"),
        _candidate(tmp_path, "int8-openvino", "int8", OPENVINO, 910),
    )
    identity = manifest.machine_identity("model name : Test CPU\nflags : avx avx2 fma sse4_2\n", 2, "rt 1")
    return Manifest(model="m", family="isnet", source={"sha256": "s", "size": 1, "mtime": 1}, machine=identity,
                    bound={"mean_iou": 0.97, "photos": 4}, candidates=candidates,
                    chosen=manifest.first_passing(candidates).name)


def test_the_choice_is_the_fastest_within_the_bound(table):
    assert table.chosen == "int8-openvino"  # not the faster bf16 one: its masks failed the bound
    assert [c.name for c in table.preference()] == [
        "int8-openvino", "int8-cpu", "fp32-openvino", "fp32-cpu", "fp32-openvino-bf16"]


@pytest.mark.parametrize(("variant", "provider", "first"), [
    ("fp32", None, "fp32-openvino-bf16"),  # forced: honoured even where it failed the bound
    ("int8", CPU, "int8-cpu"),
    ("auto", CPU, "int8-cpu"),
    ("fp32-cpu", None, "fp32-cpu"),
    ("auto", OPENVINO, "int8-openvino"),
])
def test_settings_force_a_variant_and_a_provider(table, variant, provider, first):
    found = table.preference(variant, provider)
    assert found[0].name == first
    assert all(provider is None or c.provider == provider for c in found)


def test_an_unknown_variant_or_an_empty_choice_is_an_error(table):
    with pytest.raises(ManifestError, match="expected auto, fp32, int8"):
        table.preference("fp8")
    with pytest.raises(ManifestError, match="no candidate"):
        table.preference("fp32", "CUDAExecutionProvider")


def test_a_manifest_survives_its_json(table, tmp_path):
    path = table.write(tmp_path / "m.json")
    again = manifest.read(path)
    assert again.candidates == table.candidates and again.chosen == table.chosen and again.path == path
    assert json.loads(path.read_text())["machine_key"] == manifest.machine_key(table.machine)


def test_the_machine_key_follows_the_cpu_and_its_flags_not_the_core_count():
    base = manifest.machine_identity("model name : A\nflags : avx2 fma\n", 2, "rt")
    key = manifest.machine_key(base)
    assert manifest.machine_key(manifest.machine_identity("model name : A\nflags : fma avx2 sse\n", 16, "rt")) == key
    assert manifest.machine_key(manifest.machine_identity("model name : A\nflags : avx2 fma avx512_vnni\n", 2, "rt")) != key
    assert manifest.machine_key(manifest.machine_identity("model name : B\nflags : avx2 fma\n", 2, "rt")) != key
    assert manifest.machine_key(manifest.machine_identity("model name : A\nflags : avx2 fma\n", 2, "rt 2")) != key
    arm = manifest.machine_identity("CPU part : 0xd0c\nFeatures : fp asimd asimddp sve\n", 4, "rt")
    assert arm["flags"] == ["asimd", "asimddp", "sve"]


def test_load_finds_this_machines_manifest_and_says_what_to_run_otherwise(table, tmp_path):
    identity = table.machine
    with pytest.raises(ManifestError, match="make model"):
        manifest.load(tmp_path, "m", identity)
    table.write(manifest.manifest_path(tmp_path, "m", manifest.machine_key(identity)))
    assert manifest.load(tmp_path, "m", identity).chosen == "int8-openvino"
    moved = dict(identity, cpu="Another CPU")  # a cache carried to another machine is measured again
    with pytest.raises(ManifestError, match="1 measured on other machines"):
        manifest.load(tmp_path, "m", moved)
    table.candidates[0].file.unlink()
    with pytest.raises(ManifestError, match="gone"):
        manifest.load(tmp_path, "m", identity)


def test_a_model_file_changed_since_it_was_measured_is_refused(table, tmp_path):
    model = tmp_path / "mine.onnx"
    model.write_bytes(b"weights")
    name = manifest.model_id(None, model)
    assert name.startswith("file-") and name == manifest.model_id("ignored", model)
    stat = model.stat()
    table = Manifest(**{**table.__dict__, "model": name,
                        "source": {"sha256": "s", "size": stat.st_size, "mtime": int(stat.st_mtime)}})
    table.write(manifest.manifest_path(tmp_path, name, manifest.machine_key(table.machine)))
    assert manifest.load(tmp_path, name, table.machine, model_path=model).model == name
    model.write_bytes(b"other weights")
    with pytest.raises(ManifestError, match="changed since it was prepared"):
        manifest.load(tmp_path, name, table.machine, model_path=model)


def test_a_gpu_is_part_of_the_machine_key_only_where_there_is_one(monkeypatch):
    """A manifest measured with a GPU (torch candidates) is not read where there is none, and a
    CPU machine's key stays what it was before GPUs were considered (no remeasuring)."""
    from engine.models import manifest as m

    monkeypatch.setattr(m, "gpu_names", lambda: [])
    plain = m.machine_identity(cpuinfo="model name: X\nflags: avx2\n", cores=2, runtime="ort 1")
    assert "gpus" not in plain and "torch" not in plain
    monkeypatch.setattr(m, "gpu_names", lambda: ["NVIDIA H200"])
    with_gpu = m.machine_identity(cpuinfo="model name: X\nflags: avx2\n", cores=2, runtime="ort 1")
    assert with_gpu["gpus"] == ["NVIDIA H200"] and "torch" in with_gpu
    assert m.machine_key(with_gpu) != m.machine_key(plain)
