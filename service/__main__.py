"""`python -m service [--port N]`: the gRPC server on 127.0.0.1 (CLEARBG_GRPC_PORT)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import pathlib
import sys

# The generated stubs live in gen/ (git-ignored), next to this package.
_GEN = pathlib.Path(__file__).resolve().parent.parent / "gen"
if _GEN.is_dir() and str(_GEN) not in sys.path:
    sys.path.insert(0, str(_GEN))

from service import logging as service_logging  # noqa: E402
from service.config import Settings  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    from engine import allocator

    allocator.tune()  # before any thread allocates (engine/allocator.py says why)
    parser = argparse.ArgumentParser(prog="python -m service", description=__doc__)
    parser.add_argument("--port", type=int, help="gRPC port (default: CLEARBG_GRPC_PORT or 50051)")
    ns = parser.parse_args(argv)
    try:
        settings = Settings.from_environ()
    except ValueError as exc:
        raise SystemExit(f"configuration error: {exc}") from None
    if ns.port is not None:
        settings = dataclasses.replace(settings, grpc_port=ns.port)
    service_logging.configure()
    from service.server import serve

    asyncio.run(serve(settings))


if __name__ == "__main__":
    main(sys.argv[1:])
