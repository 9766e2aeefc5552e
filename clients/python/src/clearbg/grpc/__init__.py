"""`clearbg.grpc`: the typed gRPC API (clearbg.v1.RemoveBgService) for service-to-service callers.

    from clearbg.grpc import ClearBGGrpc

    with ClearBGGrpc("clearbg.internal:50051", api_key="...") as client:
        result = client.remove_background("photo.jpg", size="hd")

The upload is streamed in chunks (the RemoveBackground client stream: options first, then the
image), so a 22 MB photo never sits whole in one message. Results and errors are the REST
client's (`clearbg.RemovalResult`, `clearbg.APIError` subclasses ...), with the same retries
and one Idempotency-Key per call. Needs the `grpc` extra: `pip install "clearbg[grpc]"`.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from typing import Any, Iterator, Optional, Tuple

import grpc

from clearbg._base import DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT_S, USER_AGENT
from clearbg._retry import delay_or_raise
from clearbg._uploads import FileInput, FileSource
from clearbg.errors import ClearBGError
from clearbg.grpc import _mapping
from clearbg.types import RemovalResult
from clearbg.v1 import removebg_pb2, removebg_pb2_grpc

__all__ = ["ClearBGGrpc"]

log = logging.getLogger("clearbg")

CHUNK_SIZE = 1024 * 1024  # well under gRPC's 4 MiB default message limit
MAX_MESSAGE_BYTES = 160 * 1024 * 1024  # a 50 MP ZIP or PNG answer


class ClearBGGrpc:
    """target: "host:port" of a ClearBG gRPC server (or of its gateway, which passes gRPC
    through), else CLEARBG_GRPC_TARGET. api_key: else CLEARBG_API_KEY. credentials: TLS
    channel credentials (grpc.ssl_channel_credentials()); None: a plaintext channel.
    timeout, max_retries: as ClearBG's."""

    def __init__(
        self,
        target: Optional[str] = None,
        api_key: Optional[str] = None,
        *,
        credentials: Optional[grpc.ChannelCredentials] = None,
        timeout: Optional[float] = None,
        max_retries: Optional[int] = None,
        chunk_size: int = CHUNK_SIZE,
        channel: Optional[grpc.Channel] = None,
    ):
        key = api_key if api_key is not None else os.environ.get("CLEARBG_API_KEY")
        if not key or not key.strip():
            raise ClearBGError("No API key: pass api_key=... or set CLEARBG_API_KEY.")
        self._api_key = key.strip()
        self.timeout = DEFAULT_TIMEOUT_S if timeout is None else float(timeout)
        self.max_retries = DEFAULT_MAX_RETRIES if max_retries is None else int(max_retries)
        self.chunk_size = chunk_size
        self._own_channel = channel is None
        if channel is None:
            address = target or os.environ.get("CLEARBG_GRPC_TARGET")
            if not address:
                raise ClearBGError("No gRPC target: pass target='host:port' or set CLEARBG_GRPC_TARGET.")
            options = [
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.primary_user_agent", USER_AGENT),
            ]
            if credentials is None:
                channel = grpc.insecure_channel(address, options=options)
            else:
                channel = grpc.secure_channel(address, credentials, options=options)
        self._channel = channel
        self._stub = removebg_pb2_grpc.RemoveBgServiceStub(channel)

    def close(self) -> None:
        if self._own_channel:
            self._channel.close()

    def __enter__(self) -> "ClearBGGrpc":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def remove_background(
        self,
        image_file: Optional[FileInput] = None,
        *,
        image_url: Optional[str] = None,
        size: Optional[str] = None,
        type: Optional[str] = None,
        type_level: Optional[str] = None,
        format: Optional[str] = None,
        bg_color: Any = None,
        bg_image_url: Optional[str] = None,
        bg_image_file: Optional[FileInput] = None,
        channels: Optional[str] = None,
        crop: Optional[bool] = None,
        crop_margin: Optional[str] = None,
        scale: Optional[str] = None,
        position: Optional[str] = None,
        roi: Optional[str] = None,
        add_shadow: Optional[bool] = None,
        shadow_type: Optional[str] = None,
        shadow_opacity: Optional[int] = None,
        semitransparency: Optional[bool] = None,
        idempotency_key: Optional[str] = None,
        timeout: Optional[float] = None,
        max_retries: Optional[int] = None,
    ) -> RemovalResult:
        """The image is streamed from `image_file` (a path, bytes or a binary file object) or
        fetched by the server from `image_url`. The options take the REST API's values
        ("hd", "50% 70%", "10px 5%"; bg_color as hex or an (r, g, b[, a]) tuple); a value the
        typed API cannot carry raises BadRequestError before anything is sent."""
        source = FileSource(image_file, "image_file") if image_file is not None else None
        background = FileSource(bg_image_file, "bg_image_file").read_all() if bg_image_file is not None else None
        options = _mapping.options_message(dict(locals()), background)
        key = idempotency_key or str(uuid.uuid4())
        retries = self.max_retries if max_retries is None else max_retries
        rewindable = source is None or source.rewindable
        number = 0
        while True:
            request_id = str(uuid.uuid4())
            try:
                return self._call(options, source, key, request_id, self.timeout if timeout is None else timeout)
            except grpc.RpcError as exc:
                error = _mapping.error_of(exc, request_id)
            delay = delay_or_raise(error, number, retries, rewindable)
            time.sleep(delay)
            number += 1

    def _messages(
        self, options: removebg_pb2.RemoveBackgroundOptions, source: Optional[FileSource]
    ) -> Iterator[removebg_pb2.RemoveBackgroundRequest]:
        yield removebg_pb2.RemoveBackgroundRequest(options=options)
        if source is None:
            return
        pending = b""
        for chunk in source.chunks():  # the file's own chunks, regrouped to chunk_size messages
            pending += chunk
            while len(pending) >= self.chunk_size:
                yield removebg_pb2.RemoveBackgroundRequest(image_chunk=pending[: self.chunk_size])
                pending = pending[self.chunk_size:]
        if pending:
            yield removebg_pb2.RemoveBackgroundRequest(image_chunk=pending)

    def _call(
        self,
        options: removebg_pb2.RemoveBackgroundOptions,
        source: Optional[FileSource],
        idempotency_key: str,
        request_id: str,
        timeout: float,
    ) -> RemovalResult:
        metadata: Tuple[Tuple[str, str], ...] = (
            ("x-api-key", self._api_key),
            ("idempotency-key", idempotency_key),
            ("x-request-id", request_id),
        )
        response, call = self._stub.RemoveBackground.with_call(
            self._messages(options, source), metadata=metadata, timeout=timeout
        )
        return _mapping.removal_result(response, _mapping.metadata_dict(call.initial_metadata()), request_id)
