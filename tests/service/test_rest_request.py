"""REST bodies of every supported type become the same fields; bad bodies become 400s."""

import json

import pytest
import requests

from service.errors import ApiError
from service.rest_request import parse_body


def prepared(**kwargs) -> tuple[str, bytes]:
    request = requests.Request("POST", "http://clearbg.test/v1.0/removebg", **kwargs).prepare()
    return request.headers["Content-Type"], request.body


def test_multipart_files_are_bytes_and_fields_text():
    image = bytes(range(256)) * 10
    content_type, body = prepared(
        files={"image_file": ("photo.jpg", image), "bg_image_file": ("bg.png", b"\x89PNG")},
        data={"size": "hd", "crop": "true"},
    )
    fields = parse_body(content_type, body)
    assert fields == {"size": "hd", "crop": "true", "image_file": image, "bg_image_file": b"\x89PNG"}


def test_multipart_text_part_named_image_file_stays_bytes():
    content_type, body = prepared(files={"image_file": (None, b"\xff\xd8raw")}, data={"format": "jpg"})
    fields = parse_body(content_type, body)
    assert fields["image_file"] == b"\xff\xd8raw"
    assert fields["format"] == "jpg"


def test_urlencoded_decodes_plus_and_percent():
    fields = parse_body("application/x-www-form-urlencoded", b"size=preview&image_file_b64=ab%2Bc%3D&bg_color=")
    assert fields == {"size": "preview", "image_file_b64": "ab+c=", "bg_color": ""}


def test_json_booleans_and_numbers_become_form_strings():
    body = json.dumps({"crop": True, "add_shadow": False, "type_level": 1, "size": "hd", "extra": {"a": 1}})
    fields = parse_body("application/json; charset=utf-8", body.encode())
    assert fields["crop"] == "true"
    assert fields["add_shadow"] == "false"
    assert fields["type_level"] == "1"
    assert fields["size"] == "hd"


def test_empty_body_has_no_fields():
    assert parse_body("application/json", b"") == {}


@pytest.mark.parametrize(
    "content_type, body, code",
    [
        ("application/json", b"{not json", "invalid_body"),
        ("application/json", b"[1, 2]", "invalid_body"),
        ("multipart/form-data", b"--x\r\nbroken", "invalid_body"),
        ("multipart/form-data; boundary=zzz", b"--other\r\n\r\n", "invalid_body"),
        ("application/x-www-form-urlencoded", b"\xff\xfe=1", "invalid_body"),
        ("text/plain", b"image", "unsupported_content_type"),
        ("", b"image", "unsupported_content_type"),
    ],
)
def test_bad_bodies_are_400(content_type, body, code):
    with pytest.raises(ApiError) as caught:
        parse_body(content_type, body)
    assert caught.value.status == 400
    assert caught.value.code == code


@pytest.mark.parametrize("opening, closing", [(b"[", b"]"), (b'{"a":', b"}")])
@pytest.mark.parametrize("depth", [5_000, 100_000])
def test_deeply_nested_json_is_a_400_not_a_recursion_error(opening, closing, depth):
    """Found by fuzzing (fuzz/targets.py, json): json.loads recursed past Python's limit and the
    RecursionError became a 500. Closed or not, such a body is refused as invalid."""
    for body in (opening * depth, b'{"size":' + opening * depth + closing * depth + b"}"):
        with pytest.raises(ApiError) as caught:
            parse_body("application/json", body)
        assert (caught.value.status, caught.value.code) == (400, "invalid_body")
