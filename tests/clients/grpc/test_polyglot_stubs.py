"""The generated stubs (`make stubs`: build/stubs/<language>) and clients/grpc/README.md's
examples, run as written against the real stack (tests/e2e's start_stack: Envoy, gRPC server,
model, temp SQLite): Python, Node (TypeScript compiled against the generated types) and Ruby
stream a 10 MB photo and must get the picture and figures REST gives for the same options; the
same program with `scale_percent: 5` must be refused with INVALID_ARGUMENT naming the field,
charging nothing. PHP's stubs must encode the options as Python's do; C#'s must hold the client.
"""

from __future__ import annotations

import io
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal

import numpy as np
import pytest
import requests
from PIL import Image

from tests.e2e.api_calls import PERSON, big_png
from tests.e2e.conftest import RunningStack, quality, start_stack  # noqa: F401 (quality: a fixture)

ROOT = pathlib.Path(__file__).resolve().parents[3]
STUBS = ROOT / "build" / "stubs"
CLIENTS_GRPC = ROOT / "clients" / "grpc"
README = CLIENTS_GRPC / "README.md"
# The examples' options, as REST fields.
REST_FIELDS = {"size": "medium", "scale": "80%", "add_shadow": "true", "shadow_opacity": "60"}
TIMEOUT_S = 600


def example(language: str) -> str:
    """The README's code block for `language` (```python, ```typescript, ```ruby, ...)."""
    found = re.findall(rf"```{language}\n(.*?)```", README.read_text(), re.S)
    assert len(found) == 1, f"README.md should hold one {language} block"
    return found[0]


def out_of_range(source: str) -> str:
    """The same program asking for a 5 % scale, which the contract refuses (10..100)."""
    changed = source.replace("scale_percent=80", "scale_percent=5").replace("scale_percent: 80", "scale_percent: 5")
    assert changed != source
    return changed


@pytest.fixture(scope="module")
def stubs() -> pathlib.Path:
    for language in ("python", "node", "ruby", "php", "csharp"):
        if not (STUBS / language).is_dir():
            pytest.fail(f"{STUBS / language} is missing: `make stubs` generates it (make test does)")
    return STUBS


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[RunningStack]:
    with start_stack(tmp_path_factory.mktemp("grpc-stubs")) as running:
        yield running


@pytest.fixture(scope="module")
def storage(stack):
    from service.storage import open_storage

    opened = open_storage(stack.database_url)
    yield opened
    opened.close()


def new_account(storage, name: str) -> tuple[int, str]:
    from service.storage.base import generate_key

    account = storage.create_account(name, subscription=Decimal(10))
    key = generate_key()
    storage.add_api_key(account.id, key)
    return account.id, key


@pytest.fixture(scope="module")
def photo(quality, tmp_path_factory) -> pathlib.Path:
    data, _ = big_png(quality / PERSON)
    assert len(data) >= 10 * 1024 * 1024 - 65536
    path = tmp_path_factory.mktemp("photo") / "photo.png"
    path.write_bytes(data)
    return path


@pytest.fixture(scope="module")
def rest(stack, storage, photo) -> requests.Response:
    """The REST answer for the examples' options."""
    _, key = new_account(storage, "rest")
    response = requests.post(
        stack.rest_url + "/v1.0/removebg", files={"image_file": ("photo.png", photo.read_bytes(), "image/png")},
        data=REST_FIELDS, headers={"X-Api-Key": key}, timeout=TIMEOUT_S,
    )
    assert response.status_code == 200, response.text[:300]
    return response


def run(command: list[str], env: dict[str, str], cwd: pathlib.Path) -> subprocess.CompletedProcess:
    return subprocess.run(command, env={**os.environ, **env}, cwd=cwd, capture_output=True, text=True,
                          timeout=TIMEOUT_S)


def python_program(stubs: pathlib.Path, source: str, workdir: pathlib.Path):
    script = workdir / "remove.py"
    script.write_text(source)
    return [sys.executable, str(script)], {"PYTHONPATH": str(stubs / "python")}


def node_program(stubs: pathlib.Path, source: str, workdir: pathlib.Path):
    """The example in a project of its own: the stubs' proto/ and types/, the lockfile's
    node_modules, compiled by tsc (strict) against the generated types."""
    for part in ("proto", "types"):
        shutil.copytree(stubs / "node" / part, workdir / part, dirs_exist_ok=True)
    (workdir / "node_modules").unlink(missing_ok=True)
    (workdir / "node_modules").symlink_to(CLIENTS_GRPC / "node_modules")
    (workdir / "remove.ts").write_text(source)
    (workdir / "tsconfig.json").write_text(json.dumps({
        "compilerOptions": {"module": "commonjs", "target": "es2022", "strict": True, "esModuleInterop": True,
                            "skipLibCheck": True, "types": ["node"], "outDir": "."},
        "files": ["remove.ts"],
    }))
    compiled = run([str(CLIENTS_GRPC / "node_modules" / ".bin" / "tsc"), "-p", str(workdir)], {}, workdir)
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
    return ["node", str(workdir / "remove.js")], {}


def ruby_program(stubs: pathlib.Path, source: str, workdir: pathlib.Path):
    script = workdir / "remove.rb"
    script.write_text(source)
    return ["ruby", "-I", str(stubs / "ruby"), str(script)], {}


PROGRAMS = {
    # language: (README block, how it is run, where it connects)
    "python": ("python", python_program, "gateway"),
    "node": ("typescript", node_program, "grpc_port"),
    "ruby": ("ruby", ruby_program, "gateway"),
}


@pytest.mark.parametrize("language", list(PROGRAMS))
def test_the_readme_example_streams_10_mb_to_the_rest_answer_and_a_bad_value_is_refused_free(
    language, stubs, stack, storage, photo, rest, tmp_path
):
    block, program, through = PROGRAMS[language]
    account_id, key = new_account(storage, language)
    target = stack.rest_url.removeprefix("http://") if through == "gateway" else stack.grpc_address
    env = {"CLEARBG_GRPC_TARGET": target, "CLEARBG_API_KEY": key}
    out = tmp_path / "cutout.png"

    command, extra = program(stubs, example(block), tmp_path)
    done = run([*command, str(photo), str(out)], {**env, **extra}, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    headers = rest.headers
    assert (answer["width"], answer["height"]) == (int(headers["x-width"]), int(headers["x-height"]))
    assert answer["width"] * answer["height"] <= 1_500_000
    assert answer["type"] == headers["x-type"] == "person"
    assert answer["foreground"] == [int(headers[f"x-foreground-{side}"]) for side in ("top", "left", "width", "height")]
    assert (answer["credits_charged"], answer["credits_remaining"]) == ("1", "9")
    typed, by_rest = Image.open(out), Image.open(io.BytesIO(rest.content))
    assert typed.mode == by_rest.mode == "RGBA" and typed.size == by_rest.size
    difference = np.abs(np.asarray(typed, dtype=np.int16) - np.asarray(by_rest, dtype=np.int16))
    assert difference.max() <= 8 and difference.mean() < 0.5  # the same picture, to the engine's determinism

    command, extra = program(stubs, out_of_range(example(block)), tmp_path)
    refused = run([*command, str(photo), str(out)], {**env, **extra}, tmp_path)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    error = json.loads(refused.stdout.strip().splitlines()[-1])
    assert error["code"] == "INVALID_ARGUMENT" and error["reason"] == "invalid_scale"
    assert error["fields"] == ["scale_percent"] and "scale_percent" in error["message"]
    assert storage.get_account(account_id).total == Decimal(9)  # the refused call charged nothing
    assert [entry.kind for entry in storage.ledger(account_id)] == ["charge"]


PHP_ENCODE = r"""<?php
spl_autoload_register(function ($class) {
    $path = str_replace('\\', '/', $class) . '.php';
    foreach ([getenv('STUBS'), '/usr/share/php'] as $root) {
        if (is_file("$root/$path")) { require "$root/$path"; return; }
    }
});
$options = new Clearbg\V1\RemoveBackgroundOptions([
    'size' => Clearbg\V1\Size::SIZE_MEDIUM, 'scale_percent' => 80, 'add_shadow' => true, 'shadow_opacity' => 60,
    'bg_color' => new Clearbg\V1\Color(['red' => 255, 'alpha' => 128]),
]);
echo bin2hex($options->serializeToString());
"""


def test_the_php_stubs_encode_the_options_as_the_python_stubs_do(stubs, tmp_path):
    sys.path.insert(0, str(stubs / "python"))
    try:
        from clearbg.v1 import removebg_pb2 as pb  # the Python stubs, as generated into build/stubs
    finally:
        sys.path.remove(str(stubs / "python"))
    options = pb.RemoveBackgroundOptions(size=pb.SIZE_MEDIUM, scale_percent=80, add_shadow=True, shadow_opacity=60,
                                         bg_color=pb.Color(red=255, alpha=128))
    linted = [run(["php", "-l", str(path)], {}, tmp_path) for path in sorted((stubs / "php" / "Clearbg").rglob("*.php"))]
    assert linted and all(done.returncode == 0 for done in linted), [d.stdout for d in linted if d.returncode]
    script = tmp_path / "encode.php"
    script.write_text(PHP_ENCODE)
    done = run(["php", str(script)], {"STUBS": str(stubs / "php")}, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert bytes.fromhex(done.stdout.strip()) == options.SerializeToString()
    client = (stubs / "php" / "Clearbg" / "V1" / "RemoveBgServiceClient.php").read_text()
    assert "public function RemoveBackground($metadata = [], $options = [])" in client
    readme = tmp_path / "remove.php"  # the README's call: at least valid PHP (no grpc extension here to run it)
    readme.write_text(example("php"))
    linted = run(["php", "-l", str(readme)], {}, tmp_path)
    assert linted.returncode == 0, linted.stdout + linted.stderr


def test_the_csharp_stubs_hold_the_typed_client_and_every_option(stubs):
    client = (stubs / "csharp" / "RemovebgGrpc.cs").read_text()
    assert "public partial class RemoveBgServiceClient : grpc::ClientBase<RemoveBgServiceClient>" in client
    assert "AsyncClientStreamingCall<global::Clearbg.V1.RemoveBackgroundRequest, global::Clearbg.V1.RemoveBackgroundResponse> RemoveBackground(" in client
    messages = (stubs / "csharp" / "Removebg.cs").read_text()
    for option in ("ScalePercent", "AddShadow", "ShadowType", "ShadowOpacity", "Semitransparency", "CropMargin", "Roi"):
        assert f" {option} {{" in messages, option
    assert "CreditsRemaining" in messages and "Status" in (stubs / "csharp" / "Status.cs").read_text()
