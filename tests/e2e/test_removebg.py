"""End to end: the real server, Envoy and model, called the ways clients call remove.bg.

The stack is shared by the session and its development account is charged by most tests, so
the account test comes first in this file (pytest keeps file order).
"""

from __future__ import annotations

import base64
import io
import pathlib
import re
import shutil
import subprocess
import sys
from decimal import Decimal

import grpc
import numpy as np
import pytest
import requests
from PIL import Image

from clearbg.v1 import removebg_pb2, removebg_pb2_grpc
from tests.e2e.api_calls import REAL_MATTE_IOU, big_png

pytestmark = pytest.mark.e2e

DOCUMENTATION = pathlib.Path(__file__).resolve().parents[2].parent / "shared" / "seed" / "api-documentation.txt"
DOCUMENTED_ACCOUNT = (
    b'{"data":{"attributes":{"credits":{"total":50,"subscription":45,"payg":5,"enterprise":0},'
    b'"api":{"free_calls":50,"sizes":"all"}}}}'
)
# A person, head and shoulders, with a hand-made ground-truth mask.
PHOTO = "grabcut50/images/189080.jpg"
MASK = "grabcut50/masks/189080.png"


def photo_path(quality: pathlib.Path) -> pathlib.Path:
    return quality / PHOTO


def assert_api_error(response: requests.Response, status: int) -> dict:
    assert response.status_code == status, response.text[:300]
    assert response.headers["content-type"] == "application/json"
    (error,) = response.json()["errors"]
    assert list(error) == ["title", "code", "detail"] and all(error.values())
    assert not [name for name in response.headers if name.lower().startswith("grpc-")]
    return error


def assert_real_cutout(png: bytes, quality: pathlib.Path) -> np.ndarray:
    """A full-size PNG whose alpha is a real matte: transparent and opaque parts, soft edges,
    and in broad agreement with the ground truth."""
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.mode == "RGBA"
    alpha = np.asarray(image.getchannel("A"))
    assert (alpha == 0).mean() > 0.1 and (alpha == 255).mean() > 0.1
    assert ((alpha > 0) & (alpha < 255)).sum() > 100, "no intermediate alpha: not a matte"
    truth = np.asarray(Image.open(quality / MASK).convert("L")) > 127
    assert truth.shape == alpha.shape, "size=auto keeps the original size"
    found = alpha > 127
    iou = (found & truth).sum() / (found | truth).sum()
    assert iou > REAL_MATTE_IOU, f"IoU with the ground truth {iou:.2f}"
    return alpha


def test_account_prints_the_documented_json_byte_for_byte(stack):
    response = requests.get(stack.rest_url + "/v1.0/account", headers={"X-Api-Key": stack.api_key}, timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.content == DOCUMENTED_ACCOUNT


def test_multipart_upload_returns_a_png_with_a_real_matte(stack, quality):
    photo = photo_path(quality)
    with open(photo, "rb") as file:
        response = requests.post(
            stack.rest_url + "/v1.0/removebg",
            files={"image_file": (photo.name, file, "image/jpeg")},
            data={"size": "auto"},
            headers={"X-Api-Key": stack.api_key},
            timeout=120,
        )
    assert response.status_code == 200, response.text[:300]
    assert response.headers["content-type"] == "image/png"
    alpha = assert_real_cutout(response.content, quality)
    assert (int(response.headers["x-width"]), int(response.headers["x-height"])) == (alpha.shape[1], alpha.shape[0])
    assert (alpha.shape[1], alpha.shape[0]) == Image.open(photo).size
    assert float(response.headers["x-credits-charged"]) == 1
    assert not [name for name in response.headers if name.lower().startswith(("grpc-", "x-envoy"))]


def test_json_body_with_image_file_b64(stack, quality):
    encoded = base64.b64encode(photo_path(quality).read_bytes()).decode()
    response = requests.post(
        stack.rest_url + "/v1.0/removebg",
        json={"image_file_b64": encoded, "size": "preview"},
        headers={"X-Api-Key": stack.api_key},
        timeout=120,
    )
    assert response.status_code == 200, response.text[:300]
    assert response.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(response.content))
    assert image.mode == "RGBA" and image.width * image.height <= 250_000
    assert (image.width, image.height) == (int(response.headers["x-width"]), int(response.headers["x-height"]))


@pytest.mark.parametrize("headers", [{}, {"X-Api-Key": "not-a-key"}], ids=["missing", "wrong"])
def test_missing_or_wrong_key_is_401(stack, quality, headers):
    response = requests.post(
        stack.rest_url + "/v1.0/removebg",
        files={"image_file": photo_path(quality).read_bytes()},
        headers=headers,
        timeout=30,
    )
    assert_api_error(response, 401)
    assert_api_error(requests.get(stack.rest_url + "/v1.0/account", headers=headers, timeout=10), 401)


@pytest.mark.parametrize("through", ["grpc_port", "gateway"])
def test_typed_grpc_streams_a_10_mb_image_in_chunks(stack, quality, through):
    """Directly, and through Envoy's public port (h2c passthrough) as a remote caller would."""
    address = stack.grpc_address if through == "grpc_port" else stack.rest_url.removeprefix("http://")
    data, size = big_png(photo_path(quality))
    assert len(data) >= 10 * 1024 * 1024 - 65536
    chunk = 1024 * 1024

    def messages():
        yield removebg_pb2.RemoveBackgroundRequest(
            options=removebg_pb2.RemoveBackgroundOptions(
                size=removebg_pb2.SIZE_AUTO, format=removebg_pb2.OUTPUT_FORMAT_PNG
            )
        )
        for start in range(0, len(data), chunk):
            yield removebg_pb2.RemoveBackgroundRequest(image_chunk=data[start : start + chunk])

    options = [("grpc.max_receive_message_length", 200 * 1024 * 1024)]
    with grpc.insecure_channel(address, options=options) as channel:
        stub = removebg_pb2_grpc.RemoveBgServiceStub(channel)
        response, call = stub.RemoveBackground.with_call(
            messages(), metadata=(("x-api-key", stack.api_key),), timeout=300
        )
    assert response.content_type == "image/png"
    assert (response.width, response.height) == size
    image = Image.open(io.BytesIO(response.image))
    assert image.size == size and image.mode == "RGBA"
    alpha = np.asarray(image.getchannel("A"))
    assert ((alpha > 0) & (alpha < 255)).sum() > 100
    assert Decimal(response.credits_charged) > 0
    assert dict(call.initial_metadata())["x-width"] == str(size[0])


def test_rest_upload_of_10_mb_reaches_the_model(stack, quality):
    """Past gRPC's 4 MiB default message size and Envoy's 1 MiB default buffers."""
    data, size = big_png(photo_path(quality))
    response = requests.post(
        stack.rest_url + "/v1.0/removebg",
        files={"image_file": ("big.png", data, "image/png")},
        data={"size": "preview"},
        headers={"X-Api-Key": stack.api_key},
        timeout=300,
    )
    assert response.status_code == 200, response.text[:300]
    image = Image.open(io.BytesIO(response.content))
    assert image.width * image.height <= 250_000
    assert abs(image.width / image.height - size[0] / size[1]) < 0.01


# The documented samples, formatted as on the page (whose text export lost line breaks);
# each is checked against the page below, then run with only host, key and path changed.
CURL_SAMPLE = """curl -H 'X-Api-Key: YOUR_API_KEY' \\
-F 'image_file=@/path/to/photo.jpg' \\
-F 'size=auto' \\
-f https://api.clearbg.ai/v1.0/removebg \\
-o result.png
"""

PYTHON_SAMPLE = """import requests
response = requests.post(
"https://api.clearbg.ai/v1.0/removebg",
files={"image_file": open("/path/to/photo.jpg", "rb")},
data={"size": "auto"},
headers={"X-Api-Key": "YOUR_API_KEY"},
)
if response.status_code == requests.codes.ok:
    with open("result.png", "wb") as out:
        out.write(response.content)
else:
    print("Error:", response.status_code, response.text)
"""

NODE_SAMPLE = """import fs from "node:fs";
async function removeBg(blob) {
const formData = new FormData();
formData.append("size", "auto");
formData.append("image_file", blob);
const response = await fetch("https://api.clearbg.ai/v1.0/removebg", {
method: "POST",
headers: { "X-Api-Key": "YOUR_API_KEY" },
body: formData,
});
if (response.ok) {
return await response.arrayBuffer();
} else {
throw new Error(`${response.status}: ${response.statusText}`);
}
}
const fileBlob = await fs.openAsBlob("/path/to/photo.jpg");
const result = await removeBg(fileBlob);
fs.writeFileSync("result.png", Buffer.from(result));
"""


def squeeze(text: str) -> str:
    return re.sub(r"\s+", "", text)


@pytest.mark.parametrize("sample", [CURL_SAMPLE, PYTHON_SAMPLE, NODE_SAMPLE], ids=["curl", "python", "node"])
def test_samples_are_the_documented_ones(sample):
    assert squeeze(sample) in squeeze(DOCUMENTATION.read_text())


def adapt(sample: str, stack, photo: pathlib.Path) -> str:
    return (
        sample.replace("https://api.clearbg.ai", stack.rest_url)
        .replace("YOUR_API_KEY", stack.api_key)
        .replace("/path/to/photo.jpg", str(photo))
    )


@pytest.mark.parametrize(
    ("sample", "file_name", "command"),
    [
        (CURL_SAMPLE, "sample.sh", ["bash", "sample.sh"]),
        (PYTHON_SAMPLE, "sample.py", [sys.executable, "sample.py"]),
        (NODE_SAMPLE, "sample.mjs", ["node", "sample.mjs"]),
    ],
    ids=["curl", "python", "node"],
)
def test_documented_sample_runs_as_written(stack, quality, tmp_path, sample, file_name, command):
    tool = shutil.which(command[0]) or command[0]
    if not pathlib.Path(tool).exists():
        pytest.fail(f"{command[0]} is needed to run the documented sample")
    (tmp_path / file_name).write_text(adapt(sample, stack, photo_path(quality)))
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Error" not in run.stdout
    assert_real_cutout((tmp_path / "result.png").read_bytes(), quality)


def test_accept_json_returns_the_result_as_base64(stack, quality):
    with open(photo_path(quality), "rb") as file:
        response = requests.post(
            stack.rest_url + "/v1.0/removebg",
            files={"image_file": file},
            data={"size": "preview"},
            headers={"X-Api-Key": stack.api_key, "Accept": "application/json"},
            timeout=120,
        )
    assert response.status_code == 200, response.text[:300]
    assert response.headers["content-type"].startswith("application/json")
    data = response.json()["data"]
    image = Image.open(io.BytesIO(base64.b64decode(data["result_b64"])))
    assert (image.width, image.height) == (int(response.headers["x-width"]), int(response.headers["x-height"]))
    assert data["foreground_width"] == int(response.headers["x-foreground-width"])
