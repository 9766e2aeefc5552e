"""`python -m fuzz.run [--seconds N] [--keep DIR] [TARGET ...]`: each fuzz target (fuzz/targets.py)
for N seconds, one process each (libFuzzer ends its process on a crash), starting from the
committed seeds in fuzz/corpus/TARGET/. Inputs that found new paths go to DIR/TARGET/ (a
scratch folder by default; `make fuzz` keeps them in build/fuzz/ for the next run), crashes to
DIR/TARGET/crash-*; exits 1 if any target crashed, printing its input and traceback.

`make test` runs every target for a few seconds (tests/fuzz/test_fuzz.py), `make fuzz` longer.
Every crash found becomes a regression test beside the code it crashed.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import subprocess
import sys
import tempfile
from dataclasses import dataclass

from fuzz.targets import TARGETS

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"
TOKENS = ROOT / "fuzz" / "tokens.dict"


@dataclass(frozen=True)
class Outcome:
    target: str
    returncode: int
    output: str
    crashes: tuple[pathlib.Path, ...]

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.crashes


def fuzz(target: str, seconds: int, work: pathlib.Path) -> Outcome:
    """Runs one target for `seconds`; new inputs and crash files land in `work`."""
    work.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "fuzz", target,
        str(work), str(CORPUS / target),  # libFuzzer adds what it finds to the first folder only
        f"-max_total_time={seconds}",
        f"-dict={TOKENS}",
        "-timeout=10",  # one input taking longer is a hang: reported like a crash
        "-rss_limit_mb=3072",
        "-max_len=65536",
        f"-artifact_prefix={work}/",
        "-print_final_stats=1",
    ]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, errors="replace", timeout=seconds + 120,
        env={**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'gen'}"},
    )
    crashes = tuple(sorted(p for p in work.iterdir() if p.name.startswith(("crash-", "timeout-", "oom-", "leak-"))))
    return Outcome(target, done.returncode, done.stdout + done.stderr, crashes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("targets", nargs="*", choices=[[], *TARGETS], default=[], metavar="TARGET")
    parser.add_argument("--seconds", type=int, default=60, help="per target (default 60)")
    parser.add_argument("--keep", type=pathlib.Path, help="where found inputs and crashes go (default: a scratch folder)")
    ns = parser.parse_args(argv)
    targets = ns.targets or list(TARGETS)
    with tempfile.TemporaryDirectory(prefix="clearbg-fuzz-") as scratch:
        base = ns.keep or pathlib.Path(scratch)
        failed = 0
        for target in targets:
            outcome = fuzz(target, ns.seconds, base / target)
            print(f"{target}: {'ok' if outcome.ok else 'CRASHED'} ({ns.seconds} s)", flush=True)
            if not outcome.ok:
                failed += 1
                print(outcome.output[-6000:])
                for crash in outcome.crashes:
                    kept = ROOT / "build" / "fuzz-crashes" / f"{target}-{crash.name}"
                    kept.parent.mkdir(parents=True, exist_ok=True)
                    kept.write_bytes(crash.read_bytes())
                    print(f"  input kept in {kept}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
