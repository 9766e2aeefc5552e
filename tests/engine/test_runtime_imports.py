"""The serving path imports no install-time tooling: no `onnx`, nothing of modelprep; and on a
CPU candidate no torch (it is imported only when the manifest picks a GPU candidate)."""

from __future__ import annotations

import pathlib
import subprocess
import sys

_SERVE_ONE = """
import io, sys
from PIL import Image
from service.config import Settings
from service.server import default_engine
from engine.types import RemovalOptions

engine = default_engine(Settings.from_environ())
engine.warm_up()
photo = io.BytesIO()
Image.new("RGB", (320, 240), (200, 40, 40)).save(photo, "JPEG")
engine.remove(photo.getvalue(), RemovalOptions())
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("onnx", "modelprep", "onnxruntime", "torch"))
print(" ".join(loaded))
"""


def test_the_serving_path_imports_no_onnx_and_no_modelprep():
    root = pathlib.Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", _SERVE_ONE], cwd=root, capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "PYTHONPATH": f"{root}:{root / 'gen'}"})
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = done.stdout.split()
    assert "onnxruntime" in loaded  # the engine did run the model
    assert not [m for m in loaded if m == "onnx" or m.startswith(("onnx.", "modelprep"))], loaded
    assert not [m for m in loaded if m.split(".")[0] == "torch"], loaded
