"""`python -m fuzz TARGET [libFuzzer arguments and corpus folders]`: one target of
fuzz/targets.py under libFuzzer, with the code it reads through instrumented for coverage."""

from __future__ import annotations

import sys

import atheris

# Instrumented as they are first imported: our readers, and the libraries they parse with.
with atheris.instrument_imports(include=["service", "engine", "python_multipart", "urllib", "json"]):
    from fuzz.targets import TARGETS


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[1] not in TARGETS:
        raise SystemExit(f"usage: python -m fuzz {{{','.join(TARGETS)}}} [libFuzzer arguments]")
    atheris.Setup([argv[0], *argv[2:]], TARGETS[argv[1]])
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
