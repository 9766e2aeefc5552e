"""Calls and checks shared by the parameter, input and hostile-file suites (all through Envoy).

Not a conftest: plain functions the tests import, so each test reads as the request it makes.
"""

from __future__ import annotations

import contextlib
import io
import pathlib
import re
import time
from collections.abc import Callable, Iterator
from decimal import Decimal

import numpy as np
import requests
from PIL import Image

# A woman in a black dress, full body (321x481, under the 0.25 MP of size=small, so no rescaling),
# with a hand-made ground-truth mask; she touches no edge and is not symmetric in either axis.
PERSON = "grabcut50/images/388016.jpg"
PERSON_MASK = "grabcut50/masks/388016.png"
# X-Foreground-* and crop use alpha above this (engine/matte.py's FOREGROUND_THRESHOLD).
FOREGROUND_THRESHOLD = 12
TIMEOUT_S = 180
# "A real matte" of the head-and-shoulders photo (grabcut50/189080) against its truth: IoU 0.80
# with the net fed a 1024² square, 0.797 since it keeps the photo's aspect (better on both sets
# overall, bench/speed_network.py); a broken or empty matte scores well under 0.5.
REAL_MATTE_IOU = 0.75


def removebg(stack, key: str | None, image: bytes | None = None, filename: str = "photo.jpg",
             headers: dict | None = None, files: dict | None = None, **fields) -> requests.Response:
    """POST /v1.0/removebg as multipart, the way the documented samples do."""
    parts = dict(files or {})
    if image is not None:
        parts["image_file"] = (filename, image, "application/octet-stream")
    sent = dict(headers or {})
    if key is not None:
        sent["X-Api-Key"] = key
    return requests.post(
        stack.rest_url + "/v1.0/removebg",
        files=parts or None,
        data={name: str(value) for name, value in fields.items()},
        headers=sent,
        timeout=TIMEOUT_S,
    )


def ok(response: requests.Response) -> requests.Response:
    assert response.status_code == 200, response.text[:300]
    return response


def picture(response: requests.Response) -> Image.Image:
    """The answer's image, checked against X-Width / X-Height."""
    image = Image.open(io.BytesIO(ok(response).content))
    assert image.size == (int(response.headers["x-width"]), int(response.headers["x-height"]))
    return image


def alpha_of(image: Image.Image) -> np.ndarray:
    assert image.mode == "RGBA", image.mode
    return np.asarray(image.getchannel("A"))


def header_box(response: requests.Response) -> tuple[int, int, int, int]:
    """(top, left, width, height) from X-Foreground-*."""
    return tuple(int(response.headers[f"x-foreground-{side}"]) for side in ("top", "left", "width", "height"))  # type: ignore[return-value]


def alpha_box(alpha: np.ndarray, threshold: int = FOREGROUND_THRESHOLD) -> tuple[int, int, int, int]:
    """(top, left, width, height) of alpha above the threshold."""
    ys, xs = np.nonzero(alpha > threshold)
    assert ys.size, "no foreground at all"
    return int(ys.min()), int(xs.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)


def iou(found: np.ndarray, truth: np.ndarray) -> float:
    return float((found & truth).sum() / (found | truth).sum())


def truth_mask(quality: pathlib.Path, size: tuple[int, int] | None = None) -> np.ndarray:
    mask = Image.open(quality / PERSON_MASK).convert("L")
    if size is not None and mask.size != size:
        mask = mask.resize(size, Image.Resampling.BILINEAR)
    return np.asarray(mask) > 127


def balance(stack, key: str) -> tuple[Decimal, int]:
    """(total credits, free calls left) as GET /v1.0/account reports them."""
    response = requests.get(stack.rest_url + "/v1.0/account", headers={"X-Api-Key": key}, timeout=30)
    assert response.status_code == 200, response.text[:300]
    attributes = response.json()["data"]["attributes"]
    return Decimal(str(attributes["credits"]["total"])), int(attributes["api"]["free_calls"])


def assert_error(response: requests.Response, status: int, code: str) -> dict:
    """The documented error shape: JSON `{"errors":[{"title","code","detail"}]}`, no gRPC leaks."""
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert list(body) == ["errors"] and len(body["errors"]) == 1
    (error,) = body["errors"]
    assert list(error) == ["title", "code", "detail"], error
    assert error["code"] == code, error
    assert error["title"] and error["detail"]
    assert not [name for name in response.headers if name.lower().startswith("grpc-")]
    assert "x-credits-charged" not in response.headers
    return error


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


@contextlib.contextmanager
def account_maker(database_url: str) -> Iterator[Callable[..., str]]:
    """make(name, **balances) -> the key of a new account in that stack's database."""
    from service.storage import open_storage
    from service.storage.base import generate_key

    storage = open_storage(database_url)

    def make(name: str = "e2e", **balances) -> str:
        account = storage.create_account(name, **balances)
        key = generate_key()
        storage.add_api_key(account.id, key)
        return key

    try:
        yield make
    finally:
        storage.close()


def big_png(photo: pathlib.Path, target_bytes: int = 10 * 1024 * 1024) -> tuple[bytes, tuple[int, int]]:
    """The photo enlarged and stored uncompressed: a real image of about `target_bytes`."""
    image = Image.open(photo).convert("RGB")
    scale = (target_bytes / 3 / (image.width * image.height)) ** 0.5
    size = (round(image.width * scale), round(image.height * scale))
    out = io.BytesIO()
    image.resize(size, Image.Resampling.BICUBIC).save(out, "PNG", compress_level=0)
    return out.getvalue(), size


def wait_until_every_server_gets_calls(stack, timeout_s: float = 120.0) -> None:
    """Right after /healthz turns 200, Envoy may still send every call to one server for a
    second or two; keyless calls (401, no database or engine work) until its own counters
    (admin /clusters) show each server answered one, so the test below spreads for real."""
    ports = {str(port) for port in (stack.grpc_port, *stack.more_grpc_ports)}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        requests.get(stack.rest_url + "/v1.0/account", timeout=10)
        stats = requests.get(f"http://{stack.admin_address}/clusters", timeout=10).text
        served = {
            m.group(1) for m in re.finditer(r"^grpc_server::[\d.]+:(\d+)::rq_total::([1-9]\d*)$", stats, re.MULTILINE)
        }
        if served >= ports:
            return
        time.sleep(0.2)
    raise AssertionError(f"Envoy did not route to every server within {timeout_s:.0f} s:\n{stats}")
