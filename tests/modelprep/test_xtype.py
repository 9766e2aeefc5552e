"""X-Type's networks at install time: fetched, verified, converted (modelprep/xtype)."""

from __future__ import annotations

import json
import pathlib
import pickle

import pytest

from modelprep.fetch import ModelFetchError, sha256_file
from modelprep.xtype import fetch
from modelprep.xtype.tfjs_onnx import TfjsConversionError, convert
from modelprep.xtype.torch_pickle import TorchPickleError, load_state_dict


def test_installed_models_match_their_recorded_sha256() -> None:
    paths = fetch.ensure_models()
    for path in paths.values():
        recorded = path.with_suffix(".sha256").read_text().strip()
        assert sha256_file(path) == recorded
    root = paths["detector"].parents[1]
    for source in [*fetch.DETECTOR_FILES.values(), fetch.CLASSIFIER_FILE]:
        assert sha256_file(fetch._cached_source(root, source)) == source.sha256


def test_a_damaged_converted_model_is_rebuilt(tmp_path: pathlib.Path) -> None:
    cached = fetch.ensure_models()
    root = tmp_path / "cache"
    (root / "sources").mkdir(parents=True)
    for source in [*fetch.DETECTOR_FILES.values(), fetch.CLASSIFIER_FILE]:
        src = fetch._cached_source(cached["detector"].parents[1], source)
        (root / "sources" / src.name).write_bytes(src.read_bytes())
    first = fetch.ensure_models(root)  # converts from the cached sources, no download
    good = sha256_file(first["classifier"])
    first["classifier"].write_bytes(b"truncated")
    again = fetch.ensure_models(root)
    assert again["classifier"] == first["classifier"]
    assert sha256_file(again["classifier"]) == good
    assert good == sha256_file(cached["classifier"])  # the conversion is reproducible


def test_a_source_with_the_wrong_sha256_is_refused(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ModelFetchError, match="sha256"):
        fetch._store(tmp_path, fetch.CLASSIFIER_FILE, b"not the weights", "test")
    assert not any(tmp_path.rglob("*.pth"))


def test_torch_reader_refuses_code_in_a_weights_file() -> None:
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    data = b"".join(pickle.dumps(x) for x in (0x1950A86A20F9469CFC6C, 1001, {}, Evil()))
    with pytest.raises(TorchPickleError, match="refusing"):
        load_state_dict(data)
    with pytest.raises(TorchPickleError, match="magic"):
        load_state_dict(pickle.dumps(1234))


def test_tfjs_converter_rejects_unknown_ops() -> None:
    graph = {"modelTopology": {"node": [
        {"name": "x", "op": "Placeholder",
         "attr": {"shape": {"shape": {"dim": [{"size": "1"}, {"size": "8"}, {"size": "8"}, {"size": "3"}]}}}},
        {"name": "y", "op": "Erf", "input": ["x"]},
    ]}}
    with pytest.raises(TfjsConversionError, match="Erf"):
        convert(json.loads(json.dumps(graph)), {}, ["y"])
