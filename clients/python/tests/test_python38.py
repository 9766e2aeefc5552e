"""The package runs on Python 3.8+ (the API page's promise): no newer syntax or library use, as
vermin reads it from the installed package's own code (the stubs generated at build time
follow the protobuf release installed with them)."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import clearbg

VERMIN = [str(pathlib.Path(sys.executable).parent / "vermin"), "-t=3.8-", "--violations", "--no-tips", "--eval-annotations"]


def our_files() -> list:
    package = pathlib.Path(clearbg.__file__).resolve().parent
    files = sorted(str(p) for p in package.rglob("*.py") if "v1" not in p.relative_to(package).parts)
    assert any(f.endswith("cli/__init__.py") for f in files) and any(f.endswith("grpc/_mapping.py") for f in files)
    return files


def test_the_installed_package_needs_at_most_python_3_8():
    run = subprocess.run([*VERMIN, *our_files()], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_check_catches_newer_code(tmp_path):
    newer = tmp_path / "newer.py"
    newer.write_text('def f(x: str) -> str:\n    return x.removeprefix("a")\n\n\ndef g(d: dict[str, int] | None): ...\n')
    run = subprocess.run([*VERMIN, str(newer)], capture_output=True, text=True, timeout=60)
    assert run.returncode != 0 and "3.9" in run.stdout
