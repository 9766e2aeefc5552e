"""The Ruby, PHP and .NET SDKs, installed as their users install them (conftest.py), against the
real stack: each runs its own end-to-end program (clients/<language>/e2e/), through a recording
proxy, and this test checks what it saved against what the server sent.

The program makes: a file upload, a base64 body, an image_url (a local server the stack may fetch
from), a JPG on a colour and a ZIP (all size=small), the account, a 401, a 402, and a 429: a key
limited to 6 images a minute has its allowance spent on refused calls, and the next call is
answered 429 with Retry-After, waited out and retried by the SDK with the same Idempotency-Key.
Here: every field the SDK read equals the header the proxy saw; each picture decoded with Pillow
is what the fields say (size, a real matte whose box is the foreground, the person against her
hand-made mask, the JPG's background colour, the ZIP's color.jpg and alpha.png); the balances in
the database (charged once per paid call, nothing for the 401, 402 and refused calls).
"""

from __future__ import annotations

import io
import json
import re
import shutil
import zipfile
from decimal import Decimal

import numpy as np
import pytest
from PIL import Image

from tests.clients.sdk_tools import real_matte, sdk_env
from tests.e2e.api_calls import PERSON, REAL_MATTE_IOU, alpha_box, iou, truth_mask

pytestmark = pytest.mark.e2e

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
RESULTS = ("file", "base64", "url", "jpg", "zip", "429")
CREDITS = 20
# One image every 10 s: the refused calls that spend the allowance take a second or two even on a
# busy machine, so the next call finds it still spent (the next image is 10 s less that time away).
LIMIT_PER_MINUTE = 6
BLUE = (0x81, 0xD4, 0xFA)


def exchange_of(proxy, request_id: str):
    found = [e for e in proxy.exchanges if e.headers.get("x-request-id") == request_id]
    assert len(found) == 1, (request_id, len(found))
    return found[0]


def assert_fields_are_the_headers(fields: dict, headers: dict) -> None:
    assert (fields["width"], fields["height"]) == (int(headers["x-width"]), int(headers["x-height"]))
    assert fields["type"] == headers.get("x-type")
    assert fields["content_type"] == headers["content-type"]
    assert Decimal(fields["credits_charged"]) == Decimal(headers["x-credits-charged"])
    assert Decimal(fields["credits_remaining"]) == Decimal(headers["x-credits-remaining"])
    assert fields["foreground"] == {side: int(headers[f"x-foreground-{side}"]) for side in ("top", "left", "width", "height")}
    assert fields["rate_limit"] == {name: int(headers[f"x-ratelimit-{name}"]) for name in ("limit", "remaining", "reset")}
    assert fields["replayed"] is (headers.get("idempotent-replayed") == "true")


def assert_person(alpha: np.ndarray, fields: dict, quality) -> None:
    """A real matte of the photo's woman, whose box is the one the SDK reported."""
    top, left, width, height = alpha_box(alpha)
    assert fields["foreground"] == {"top": top, "left": left, "width": width, "height": height}
    assert iou(alpha > 127, truth_mask(quality, (alpha.shape[1], alpha.shape[0]))) > REAL_MATTE_IOU


def test_the_sdk_against_the_real_stack(sdk, sdk_stack, accounts, proxy, image_host, quality, tmp_path):
    key = accounts.make(f"{sdk.language}-e2e", subscription=Decimal(CREDITS))
    poor = accounts.make(f"{sdk.language}-e2e-poor")
    limited = accounts.make(f"{sdk.language}-e2e-limited", subscription=Decimal(5), rate_limit_per_minute=LIMIT_PER_MINUTE)
    out = tmp_path / "answers"
    out.mkdir()
    program = tmp_path / sdk.e2e_script.name
    shutil.copy(sdk.e2e_script, program)
    env = sdk_env(
        sdk_stack, key, base_url=proxy.url, CLEARBG_E2E_POOR_KEY=poor, CLEARBG_E2E_LIMITED_KEY=limited,
        CLEARBG_E2E_PHOTO=str(quality / PERSON), CLEARBG_E2E_IMAGE_URL=image_host.url("/person.jpg"),
        CLEARBG_E2E_OUT=str(out),
    )
    done = sdk.run(program, tmp_path, env)
    assert done.returncode == 0, f"{done.args}: exit {done.returncode}\n{done.stdout[-6000:]}\n{done.stderr[-6000:]}"

    results = {name: json.loads((out / f"{name}.json").read_text()) for name in RESULTS}
    keys = set()
    for name, fields in results.items():
        exchange = exchange_of(proxy, fields["request_id"])
        assert (exchange.path, exchange.status) == ("/v1.0/removebg", 200), name
        assert_fields_are_the_headers(fields, exchange.headers)
        # One fresh UUID per call, sent as the Idempotency-Key, and the SDK's User-Agent.
        assert UUID4.match(fields["idempotency_key"]) and exchange.sent["idempotency-key"] == fields["idempotency_key"], name
        assert sdk.user_agent.match(exchange.sent["user-agent"]), exchange.sent["user-agent"]
        assert exchange.sent["x-api-key"] in (key, limited)
        keys.add(fields["idempotency_key"])
        assert fields["replayed"] is False
    assert len(keys) == len(RESULTS)

    # The pictures: a PNG cut-out of the woman from an upload, a base64 body and an image_url.
    for name in ("file", "base64", "url"):
        fields = results[name]
        image = Image.open(out / f"{name}.bin")
        assert image.format == "PNG" and image.size == (fields["width"], fields["height"]) == (321, 481), name
        assert_person(real_matte(image), fields, quality)
        assert (fields["type"], Decimal(fields["credits_charged"])) == ("person", 1), name
    assert ("/person.jpg", f"127.0.0.1:{image_host.port}") in image_host.seen
    # The JPG, flattened on the colour asked for.
    jpg = Image.open(out / "jpg.bin")
    assert jpg.format == "JPEG" and jpg.mode == "RGB" and jpg.size == (results["jpg"]["width"], results["jpg"]["height"])
    corner = np.asarray(jpg)[:8, :8].reshape(-1, 3).mean(axis=0)
    assert np.abs(corner - BLUE).max() < 12, corner
    # The ZIP: color.jpg and alpha.png of the same size, the matte a real one.
    with zipfile.ZipFile(out / "zip.bin") as archive:
        assert sorted(archive.namelist()) == ["alpha.png", "color.jpg"]
        color = Image.open(io.BytesIO(archive.read("color.jpg")))
        alpha = Image.open(io.BytesIO(archive.read("alpha.png")))
    assert color.format == "JPEG" and alpha.format == "PNG" and alpha.mode == "L"
    assert color.size == alpha.size == (results["zip"]["width"], results["zip"]["height"])
    assert_person(real_matte(Image.merge("RGBA", (*color.split(), alpha))), results["zip"], quality)

    # Credits: five paid calls, each charged once; the account as the SDK read it.
    assert [Decimal(results[name]["credits_remaining"]) for name in ("file", "base64", "url", "jpg", "zip")] == [19, 18, 17, 16, 15]
    assert accounts.balance(key) == CREDITS - 5
    account = json.loads((out / "account.json").read_text())
    assert {name: Decimal(value) for name, value in account["credits"].items()} == {
        "total": 15, "subscription": 15, "payg": 0, "enterprise": 0}
    assert (account["free_calls"], account["sizes"]) == (0, "all")
    assert exchange_of(proxy, account["request_id"]).path == "/v1.0/account"

    # 401 and 402: their classes, with the body's code, title and detail and the request id; not
    # retried, and nothing charged.
    for status, code in ((401, "invalid_api_key"), (402, "insufficient_credits")):
        error = json.loads((out / f"{status}.json").read_text())
        assert (error["class"], error["status"], error["code"]) == (sdk.errors[status], status, code)
        assert error["title"] and error["detail"]
        exchange = exchange_of(proxy, error["request_id"])
        assert exchange.status == status
        assert [e.status for e in proxy.exchanges if e.sent.get("idempotency-key") == exchange.sent["idempotency-key"]] == [status]
    assert accounts.balance(poor) == 0 and accounts.charges(poor) == []

    # 429: the allowance spent on refused calls (400 invalid_size, one each), then the real call:
    # a 429 with Retry-After, waited out, the same Idempotency-Key again, done and charged once.
    assert json.loads((out / "429-spent.json").read_text())["refused"] >= LIMIT_PER_MINUTE
    refusal = json.loads((out / "400.json").read_text())
    assert (refusal["class"], refusal["code"]) == (sdk.errors[400], "invalid_size")
    attempts = [e for e in proxy.exchanges if e.sent.get("idempotency-key") == results["429"]["idempotency_key"]]
    assert [e.status for e in attempts] == [429, 200], [e.status for e in attempts]
    refused, retried = attempts
    retry_after = int(refused.retry_after)
    assert 1 <= retry_after <= 60
    assert retried.began >= refused.answered + retry_after - 0.05, (retried.began - refused.answered, retry_after)
    assert Decimal(results["429"]["credits_charged"]) == 1 and accounts.balance(limited) == 4
    print(f"\n{sdk.language}: 429 waited out {retried.began - refused.answered:.2f} s (Retry-After {retry_after})")
