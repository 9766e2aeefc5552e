"""Structured logs: JSON lines when stdout is not a terminal, readable lines when it is.

The request id lives in structlog's context variables, bound once per call, so every line a
call writes carries it. API keys and image bytes are never passed to a logger.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import uuid
from collections.abc import Iterator
from typing import TextIO

import structlog


def configure(json: bool | None = None, level: int = logging.INFO, stream: TextIO | None = None) -> None:
    stream = stream or sys.stdout
    if json is None:
        json = not stream.isatty()
    renderer = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info if json else structlog.dev.set_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(stream),
        # Module-level loggers follow a later configure() (tests, the launcher).
        cache_logger_on_first_use=False,
    )
    # python-multipart warns on every malformed body, which we already answer with a 400.
    logging.getLogger("python_multipart").setLevel(logging.ERROR)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)


def new_request_id() -> str:
    return str(uuid.uuid4())


@contextlib.contextmanager
def request_scope(request_id: str | None, **fields: object) -> Iterator[str]:
    """Binds the request id (a fresh one when the caller sent none) for this task's logs."""
    request_id = (request_id or "").strip()[:128] or new_request_id()
    tokens = structlog.contextvars.bind_contextvars(request_id=request_id, **fields)
    try:
        yield request_id
    finally:
        structlog.contextvars.reset_contextvars(**tokens)
