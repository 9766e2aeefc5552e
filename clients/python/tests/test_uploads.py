"""What remove_background sends: every option as its form field, and the image streamed from a
path, bytes or a file object (in chunks, read once per attempt, from where the file object
stood; a non-seekable stream goes chunked and is not retried)."""

from __future__ import annotations

import io
import os

import pytest

from clearbg import ClearBG, ServiceUnavailableError
from clearbg._uploads import CHUNK_SIZE
from fake_server import error_reply

DATA = os.urandom(3 * CHUNK_SIZE + 12345)


class CountingFile(io.BytesIO):
    """A seekable binary file that records its reads."""

    def __init__(self, data: bytes):
        super().__init__(data)
        self.reads = []

    def read(self, size=-1):
        chunk = super().read(size)
        self.reads.append(len(chunk))
        return chunk


class Pipe:
    """A stream that can only be read forwards (like a pipe or a socket's file)."""

    def __init__(self, data: bytes):
        self._data = io.BytesIO(data)

    def read(self, size=-1):
        return self._data.read(size)

    def seekable(self):
        return False


def api(server) -> ClearBG:
    return ClearBG("k", base_url=server.url)


def test_every_option_becomes_its_form_field(fake_server):
    with api(fake_server) as client:
        client.remove_background(
            image_url="https://example.com/a.jpg", size="hd", type="product", type_level="2", format="zip",
            bg_color="#ff000080", bg_image_url="https://example.com/bg.jpg", channels="alpha", crop=True,
            crop_margin="10px 5%", scale="80%", position="20% 70%", roi="0% 0% 50% 100%", add_shadow=True,
            shadow_type="drop", shadow_opacity=40, semitransparency=False, extra_fields={"future_field": "x"},
        )
    assert fake_server.last.form() == {
        "image_url": "https://example.com/a.jpg", "size": "hd", "type": "product", "type_level": "2",
        "format": "zip", "bg_color": "#ff000080", "bg_image_url": "https://example.com/bg.jpg", "channels": "alpha",
        "crop": "true", "crop_margin": "10px 5%", "scale": "80%", "position": "20% 70%", "roi": "0% 0% 50% 100%",
        "add_shadow": "true", "shadow_type": "drop", "shadow_opacity": "40", "semitransparency": "false",
        "future_field": "x",
    }
    assert fake_server.last.headers["content-type"].startswith("multipart/form-data; boundary=")


def test_options_left_out_are_not_sent(fake_server):
    with api(fake_server) as client:
        client.remove_background(b"img", crop=False)
    assert fake_server.last.form() == {"image_file": b"img", "crop": "false"}


def test_a_path_is_streamed_with_its_length_and_name(fake_server, tmp_path):
    photo = tmp_path / "holiday photo.jpg"
    photo.write_bytes(DATA)
    bg = tmp_path / "bg.png"
    bg.write_bytes(b"background")
    with api(fake_server) as client:
        client.remove_background(str(photo), bg_image_file=bg, size="small")
    seen = fake_server.last
    assert not seen.chunked and int(seen.headers["content-length"]) == len(seen.body)
    assert seen.form() == {"size": "small", "image_file": DATA, "bg_image_file": b"background"}
    assert b'filename="holiday photo.jpg"' in seen.body


def test_a_missing_path_fails_before_any_request(fake_server, tmp_path):
    with api(fake_server) as client:
        with pytest.raises(FileNotFoundError, match="nope.jpg"):
            client.remove_background(str(tmp_path / "nope.jpg"))
    assert fake_server.seen == []


def test_a_file_object_is_read_in_chunks_once_from_where_it_stood(fake_server):
    source = CountingFile(b"HEADER" + DATA)
    source.seek(6)
    with api(fake_server) as client:
        client.remove_background(source)
    assert fake_server.last.form()["image_file"] == DATA
    assert sum(source.reads) == len(DATA)  # read once
    assert max(source.reads) <= CHUNK_SIZE  # in chunks, never whole


def test_a_retry_reads_the_file_object_again_from_its_start_position(fake_server):
    fake_server.queue(error_reply(503, "overloaded", **{"Retry-After": "0"}))
    source = CountingFile(b"HEADER" + DATA)
    source.seek(6)
    with api(fake_server) as client:
        client.remove_background(source)
    assert [seen.form()["image_file"] for seen in fake_server.seen] == [DATA, DATA]
    assert sum(source.reads) == 2 * len(DATA)


def test_a_non_seekable_stream_goes_chunked_and_is_not_retried(fake_server):
    with api(fake_server) as client:
        client.remove_background(Pipe(DATA))
    assert fake_server.last.chunked and "content-length" not in fake_server.last.headers
    assert fake_server.last.form()["image_file"] == DATA
    fake_server.seen.clear()
    fake_server.queue(error_reply(503, "overloaded", **{"Retry-After": "0"}))
    with api(fake_server) as client:
        with pytest.raises(ServiceUnavailableError):
            client.remove_background(Pipe(DATA))
    assert len(fake_server.seen) == 1


def test_bytes_and_a_real_file(fake_server, tmp_path):
    photo = tmp_path / "p.jpg"
    photo.write_bytes(DATA)
    with api(fake_server) as client, open(photo, "rb") as opened:
        client.remove_background(bytearray(DATA[:100]))
        client.remove_background(opened)
    assert fake_server.seen[0].form()["image_file"] == DATA[:100]
    assert fake_server.seen[1].form()["image_file"] == DATA
    assert b'filename="p.jpg"' in fake_server.seen[1].body


def test_something_else_is_a_type_error(fake_server):
    with api(fake_server) as client:
        with pytest.raises(TypeError, match="image_file"):
            client.remove_background(12345)
