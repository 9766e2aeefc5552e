"""`buf breaking` for proto/: the contracts as they are against the previous commit's.

Run by `make lint-proto` (part of `make test`). The baseline is the previous commit (HEAD~1), or
HEAD itself when proto/ has uncommitted changes. A deliberate break is accepted by recording it
in proto/BREAKING_CHANGES.md in the commit that makes it: while that record is newer than the
baseline (the commit itself, and a merge bringing it in), the protos are compared against the
commit that changed the record instead, so everything after the recorded break is still checked.

Both sides are built by protoc (service/protogen.py: the google/api imports come from the
googleapis-common-protos wheel, as no proto registry is reachable) and compared as images.
"""

from __future__ import annotations

import argparse
import pathlib
import subprocess
import sys
import tarfile
import tempfile

from service import protogen

ROOT = protogen.PROTO_ROOT.parent
RECORD = "proto/BREAKING_CHANGES.md"


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)


def baseline() -> tuple[str | None, str]:
    """The commit to compare against, and why (None: nothing to compare with)."""
    if _git("rev-parse", "--git-dir").returncode != 0:
        return None, "not a git checkout"
    dirty = _git("status", "--porcelain", "--", "proto").stdout.strip()
    if RECORD in dirty:
        return None, f"{RECORD} has uncommitted changes: a break being recorded"
    base = "HEAD" if dirty else "HEAD~1"
    found = _git("rev-parse", "-q", "--verify", f"{base}^{{commit}}")
    if found.returncode != 0:
        return None, f"no {base} (a shallow clone?)"
    against = found.stdout.strip()
    recorded = _git("log", "-1", "--format=%H", "--", RECORD).stdout.strip()
    if recorded and _git("merge-base", "--is-ancestor", recorded, against).returncode != 0:
        return recorded, "the commit that recorded the latest deliberate break"
    return against, "the previous commit" if base == "HEAD~1" else "HEAD (proto/ has uncommitted changes)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--buf", required=True, help="the buf binary")
    parser.add_argument("--image", type=pathlib.Path, required=True, help="this tree's descriptor set (make gen)")
    ns = parser.parse_args(argv)
    commit, why = baseline()
    if commit is None:
        print(f"buf breaking: skipped: {why}")
        return 0
    subject = _git("log", "-1", "--format=%h %s", commit).stdout.strip()
    print(f"buf breaking: against {subject[:100]} ({why})")
    with tempfile.TemporaryDirectory() as tmp:
        archive = pathlib.Path(tmp) / "proto.tar"
        made = _git("archive", "--format=tar", "-o", str(archive), commit, "proto")
        if made.returncode != 0:
            print(f"buf breaking: {commit} has no proto/: nothing to compare", file=sys.stderr)
            return 0
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        image = pathlib.Path(tmp) / "against.binpb"
        protogen.generate(None, image, pathlib.Path(tmp) / "proto")
        return subprocess.run(
            [ns.buf, "breaking", f"{ns.image}#format=binpb", "--against", f"{image}#format=binpb", "--path", "clearbg"],
            cwd=ROOT,
        ).returncode


if __name__ == "__main__":
    sys.exit(main())
