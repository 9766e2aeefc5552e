"""Runs inside rembg's own venv (not the project's): cuts out photos with rembg as it ships.

    <rembg-venv>/bin/python rembg_worker.py --model MODEL.onnx --variant default|matting < jobs.json

jobs.json is a list of [input path, output path]. Each output is the PNG bytes `rembg.remove`
returns for the input file's bytes (what its CLI writes): RGBA whose alpha is the matte rembg
ships and whose colour is the colour it ships. `post_process_mask` stays off (its default), and
so does `only_mask`, because the matting variant's alpha only exists in the RGBA cut-out.
Imports nothing from the project: it runs under another interpreter.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--variant", choices=("default", "matting"), required=True)
    args = parser.parse_args()
    jobs = json.load(sys.stdin)

    # rembg accepts a model_path only inside its home directory: make the model's own folder
    # its home, so it reads the very file the engine uses (no copy).
    os.environ.pop("U2NET_HOME", None)
    os.environ["REMBG_HOME"] = os.path.dirname(os.path.abspath(args.model))
    from rembg import new_session, remove

    session = new_session("dis_custom", model_path=args.model)
    for source, target in jobs:
        started = time.perf_counter()
        with open(source, "rb") as f:
            data = f.read()
        out = remove(data, session=session, alpha_matting=args.variant == "matting")
        tmp = f"{target}.tmp{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(out)
        os.replace(tmp, target)
        print(f"rembg[{args.variant}] {os.path.basename(source)} {time.perf_counter() - started:.1f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
