"""End to end: `image_url` and `bg_image_url` through the real gateway, server and model.

The remote side is a server started here on 127.0.0.1, which the stack allows
(CLEARBG_URL_FETCH_ALLOW_HOSTS=127.0.0.1 in conftest); every hostile URL of the shared corpus
must still get 400 failed_image_download, and the server must go on answering. Calls are
made with an account of their own so the development account keeps its documented balance.
"""

from __future__ import annotations

import io
from decimal import Decimal

import grpc
import numpy as np
import pytest
import requests
from PIL import Image

from clearbg.v1 import removebg_pb2, removebg_pb2_grpc
from tests.e2e.api_calls import REAL_MATTE_IOU
from tests.service.remote_fixtures import HOSTILE, LocalServer, body, declared_length, redirect, status

pytestmark = pytest.mark.e2e

# A person, head and shoulders, with a hand-made ground-truth mask.
PHOTO = "grabcut50/images/189080.jpg"
MASK = "grabcut50/masks/189080.png"
GREEN = (20, 180, 40)


@pytest.fixture(scope="module")
def remote(quality):
    background = io.BytesIO()
    Image.new("RGB", (64, 64), GREEN).save(background, "PNG")
    routes = {
        "/person.jpg": body((quality / PHOTO).read_bytes()),
        "/green.png": body(background.getvalue(), "image/png"),
        "/page.html": body(b"<html><body>not an image</body></html>", "text/html"),
        "/missing.jpg": status(404),
        "/huge.jpg": declared_length(22 * 1024 * 1024 + 1),
        "/loop": redirect("/loop"),
    }
    with LocalServer(routes) as server:
        yield server


@pytest.fixture(scope="module")
def key(new_account) -> str:
    return new_account("image-url", subscription=Decimal(100), free_calls=10)


def post(stack, key: str, **fields) -> requests.Response:
    return requests.post(stack.rest_url + "/v1.0/removebg", data=fields, headers={"X-Api-Key": key}, timeout=120)


def api_error(response: requests.Response, status: int = 400) -> dict:
    assert response.status_code == status, response.text[:300]
    assert response.headers["content-type"] == "application/json"
    (error,) = response.json()["errors"]
    assert list(error) == ["title", "code", "detail"] and all(error.values())
    return error


def test_image_url_of_an_allowed_server_returns_a_real_cutout(stack, key, remote, quality):
    response = post(stack, key, image_url=remote.url("/person.jpg"), size="full")
    assert response.status_code == 200, response.text[:300]
    assert response.headers["x-credits-charged"] == "1"
    image = Image.open(io.BytesIO(response.content))
    assert image.format == "PNG" and image.mode == "RGBA"
    alpha = np.asarray(image.getchannel("A"))
    truth = np.asarray(Image.open(quality / MASK).convert("L")) > 127
    assert truth.shape == alpha.shape
    found = alpha > 127
    assert (found & truth).sum() / (found | truth).sum() > REAL_MATTE_IOU
    assert ("/person.jpg", f"127.0.0.1:{remote.port}") in remote.seen


def test_bg_image_url_fills_the_background(stack, key, remote, quality):
    response = post(
        stack, key, image_url=remote.url("/person.jpg"), bg_image_url=remote.url("/green.png"), size="full", format="png"
    )
    assert response.status_code == 200, response.text[:300]
    result = np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB")).astype(int)
    truth = np.asarray(Image.open(quality / MASK).convert("L")) > 127
    background = result[~truth]
    assert np.median(np.abs(background - GREEN).max(axis=1)) <= 8


@pytest.mark.parametrize("url, why", HOSTILE, ids=[url for url, _ in HOSTILE])
def test_hostile_image_urls_are_refused_and_the_server_answers_the_next_call(stack, key, url, why):
    error = api_error(post(stack, key, image_url=url))
    assert (error["title"], error["code"]) == ("Invalid request", "failed_image_download")
    assert error["detail"].startswith("Could not download image_url: ") and why in error["detail"]
    following = requests.get(stack.rest_url + "/v1.0/account", headers={"X-Api-Key": key}, timeout=10)
    assert following.status_code == 200


@pytest.mark.parametrize(
    "location, why",
    [
        ("http://localhost:{port}/person.jpg", "after a redirect: the host 'localhost' resolves to an address that is not allowed"),
        ("http://169.254.169.254/latest/meta-data/", "after a redirect: address 169.254.169.254 is not allowed"),
        ("http://[::ffff:10.0.0.1]/", "after a redirect: address ::ffff:a00:1 (that is 10.0.0.1) is not allowed"),
        ("file:///etc/passwd", "after a redirect: only http and https URLs"),
    ],
)
def test_redirects_from_the_allowed_server_into_forbidden_places_are_refused(stack, key, remote, location, why):
    path = f"/to-{len(remote.routes)}"
    remote.routes[path] = redirect(location.format(port=remote.port) + f"?via={path}")
    error = api_error(post(stack, key, image_url=remote.url(path)))
    assert error["code"] == "failed_image_download" and why in error["detail"]
    assert not [seen for seen, _ in remote.seen if seen.endswith(f"?via={path}")]  # never reached, even when live


@pytest.mark.parametrize(
    "path, code, why",
    [
        ("/missing.jpg", "failed_image_download", "answered HTTP 404"),
        ("/loop", "failed_image_download", "more than 5 redirects"),
        ("/huge.jpg", "file_too_large", "23,068,673 bytes"),
        ("/page.html", "invalid_file_type", ""),
    ],
)
def test_remote_failures_get_their_own_400(stack, key, remote, path, code, why):
    error = api_error(post(stack, key, image_url=remote.url(path)))
    assert error["code"] == code and why in error["detail"]


def test_a_hostile_bg_image_url_is_refused_too(stack, key, remote):
    error = api_error(post(stack, key, image_url=remote.url("/person.jpg"), bg_image_url="http://[fd00:ec2::254]/"))
    assert error["code"] == "failed_image_download"
    assert error["detail"].startswith("Could not download bg_image_url: address fd00:ec2::254 is not allowed")


def test_json_bodies_and_the_typed_grpc_door_share_the_checks(stack, key, remote):
    response = requests.post(
        stack.rest_url + "/v1.0/removebg",
        json={"image_url": "http://0177.0.0.1/a.jpg"},
        headers={"X-Api-Key": key},
        timeout=30,
    )
    assert api_error(response)["code"] == "failed_image_download"
    options = removebg_pb2.RemoveBackgroundOptions(image_url="http://169.254.169.254/latest/meta-data/")
    with grpc.insecure_channel(stack.grpc_address) as channel:
        stub = removebg_pb2_grpc.RemoveBgServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.RemoveBackground(iter([removebg_pb2.RemoveBackgroundRequest(options=options)]),
                                  metadata=(("x-api-key", key),), timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    trailers = dict(caught.value.trailing_metadata())
    assert trailers["x-http-status"] == "400" and '"code":"failed_image_download"' in trailers["x-error-body"]


def test_the_server_still_serves_image_urls_after_the_hostile_ones(stack, key, remote):
    response = post(stack, key, image_url=remote.url("/person.jpg"), size="preview")
    assert response.status_code == 200 and response.headers["x-credits-charged"] == "0"
