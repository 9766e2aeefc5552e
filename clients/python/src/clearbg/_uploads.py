"""Uploads: a file given as a path, bytes or a binary file object, streamed in chunks (never read
whole into memory, never read twice for one attempt), and the multipart/form-data body around it.

A retry sends the file again: a path is reopened, bytes are resent, a file object is read again
from the position it had when the call began (so it must be seekable). A non-seekable stream
(a pipe, a socket, a generator's wrapper) is sent once: its call is not retried.
"""

from __future__ import annotations

import asyncio
import io
import os
import uuid
from typing import IO, AsyncIterator, Iterator, List, Optional, Sequence, Tuple, Union

CHUNK_SIZE = 256 * 1024

FileInput = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, IO[bytes]]


class FileSource:
    """One file to upload."""

    def __init__(self, value: FileInput, field: str):
        self.field = field
        self.path: Optional[str] = None
        self.data: Optional[bytes] = None
        self.stream: Optional[IO[bytes]] = None
        self.start: Optional[int] = None
        self.size: Optional[int] = None
        if isinstance(value, (str, os.PathLike)):
            self.path = os.fspath(value)
            if not os.path.isfile(self.path):
                raise FileNotFoundError(f"{field}: no such file: {self.path}")
            self.size = os.path.getsize(self.path)
            self.filename = os.path.basename(self.path)
        elif isinstance(value, (bytes, bytearray, memoryview)):
            self.data = bytes(value)
            self.size = len(self.data)
            self.filename = field
        elif hasattr(value, "read"):
            self.stream = value
            name = getattr(value, "name", None)
            self.filename = os.path.basename(name) if isinstance(name, str) and name else field
            if _seekable(value):
                self.start = value.tell()
                end = value.seek(0, io.SEEK_END)
                value.seek(self.start)
                self.size = end - self.start
        else:
            raise TypeError(f"{field} must be a path, bytes or a binary file object, not {type(value).__name__}")

    @property
    def rewindable(self) -> bool:
        """Whether a retry can send it again."""
        return self.stream is None or self.start is not None

    def chunks(self) -> Iterator[bytes]:
        if self.data is not None:
            for offset in range(0, len(self.data), CHUNK_SIZE):
                yield self.data[offset:offset + CHUNK_SIZE]
            return
        if self.path is not None:
            with open(self.path, "rb") as file:
                yield from _read_all(file)
            return
        assert self.stream is not None
        if self.start is not None:
            self.stream.seek(self.start)
        yield from _read_all(self.stream)

    async def achunks(self) -> AsyncIterator[bytes]:
        """The same chunks, the file reads done off the event loop."""
        loop = asyncio.get_running_loop()
        iterator = self.chunks()
        while True:
            chunk = await loop.run_in_executor(None, next, iterator, None)
            if chunk is None:
                return
            yield chunk

    def read_all(self) -> bytes:
        return b"".join(self.chunks())


def _seekable(stream: IO[bytes]) -> bool:
    try:
        return bool(stream.seekable()) if hasattr(stream, "seekable") else False
    except (OSError, ValueError):
        return False


def _read_all(stream: IO[bytes]) -> Iterator[bytes]:
    while True:
        chunk = stream.read(CHUNK_SIZE)
        if not chunk:
            return
        if not isinstance(chunk, bytes):
            raise TypeError("the file object must be opened in binary mode ('rb')")
        yield chunk


def _quote(value: str) -> str:
    # As browsers and httpx write Content-Disposition values.
    return value.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


class MultipartBody:
    """multipart/form-data: the text fields, then the files, streamed."""

    def __init__(self, fields: Sequence[Tuple[str, str]], files: Sequence[FileSource]):
        self.boundary = uuid.uuid4().hex
        self.fields = list(fields)
        self.files = list(files)
        self.content_type = f"multipart/form-data; boundary={self.boundary}"

    def _field_part(self, name: str, value: str) -> bytes:
        return (
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="{_quote(name)}"\r\n\r\n'.encode()
            + value.encode("utf-8") + b"\r\n"
        )

    def _file_head(self, source: FileSource) -> bytes:
        return (
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="{_quote(source.field)}"; '
            f'filename="{_quote(source.filename)}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        ).encode("utf-8")

    def _tail(self) -> bytes:
        return f"--{self.boundary}--\r\n".encode()

    @property
    def content_length(self) -> Optional[int]:
        """None when a file's size is unknown (a stream): then the body goes chunked."""
        if any(source.size is None for source in self.files):
            return None
        total = sum(len(self._field_part(n, v)) for n, v in self.fields) + len(self._tail())
        return total + sum(len(self._file_head(s)) + (s.size or 0) + 2 for s in self.files)

    @property
    def rewindable(self) -> bool:
        return all(source.rewindable for source in self.files)

    def headers(self) -> List[Tuple[str, str]]:
        headers = [("Content-Type", self.content_type)]
        length = self.content_length
        if length is not None:
            headers.append(("Content-Length", str(length)))
        return headers

    def __iter__(self) -> Iterator[bytes]:
        for name, value in self.fields:
            yield self._field_part(name, value)
        for source in self.files:
            yield self._file_head(source)
            yield from source.chunks()
            yield b"\r\n"
        yield self._tail()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for name, value in self.fields:
            yield self._field_part(name, value)
        for source in self.files:
            yield self._file_head(source)
            async for chunk in source.achunks():
                yield chunk
            yield b"\r\n"
        yield self._tail()
