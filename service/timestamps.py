"""Storage's times (ISO 8601 text, UTC) as the protos carry them: google.protobuf.Timestamp."""

from __future__ import annotations

import datetime as dt

from google.protobuf import timestamp_pb2


def timestamp(iso: str | None) -> timestamp_pb2.Timestamp | None:
    """None (the field left absent) for no time."""
    if not iso:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(dt.datetime.fromisoformat(iso))
    return stamp
