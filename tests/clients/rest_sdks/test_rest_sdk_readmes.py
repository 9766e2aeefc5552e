"""The Ruby, PHP and .NET READMEs' examples, run as written where the SDK is installed as its users
install it (conftest.py), against the real stack; what they print and save is checked.

Each README marks its examples `<!-- example: NAME -->`; all three have the same five, printing the
same lines in their own languages. The C# ones are .NET 6 top-level programs: Mono's compiler has
neither top-level statements nor `async Main`, so each is wrapped in a class whose Main awaits it.
"""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from PIL import Image

from tests.clients.sdk_tools import real_matte, sdk_env
from tests.e2e.api_calls import PERSON

pytestmark = pytest.mark.e2e

EXPECTED = {
    "first": r"^(\d+)x(\d+) person, charged 1 credit, 9 left$",
    "options": r"^on-blue\.jpg: image/jpeg, \d+x\d+$",
    "account": r"^8 credits left, 10 free previews$",
    "errors": r"^400 invalid_bg_color: .+ \(request [0-9a-f-]{16,}\)$",
    "idempotency": r"^[Tt]rue [Tt]rue$",
}
EXTENSIONS = {"ruby": "rb", "php": "php", "csharp": "cs"}


def examples(readme, fence: str) -> dict[str, str]:
    found = re.findall(rf"<!-- example: (\S+) -->\s*```{fence}\n(.*?)```", readme.read_text(), re.DOTALL)
    return dict(found)


def csharp_program(snippet: str) -> str:
    """A top-level program as a class whose Main awaits it (`using X;` directives stay on top)."""
    lines = snippet.splitlines()
    directives = [line for line in lines if re.match(r"^using [\w.]+;$", line)]
    body = [line for line in lines if line not in directives]
    return "\n".join([
        *directives,
        "static class ReadmeExample",
        "{",
        "    static async System.Threading.Tasks.Task Run()",
        "    {",
        *(f"        {line}" for line in body),
        "    }",
        "",
        "    static void Main() { Run().GetAwaiter().GetResult(); }",
        "}",
    ]) + "\n"


def test_readme_examples_run_as_written(sdk, sdk_stack, accounts, quality, tmp_path):
    found = examples(sdk.readme, sdk.fence)
    assert list(found) == list(EXPECTED), list(found)
    (tmp_path / "photo.jpg").symlink_to(quality / PERSON)
    key = accounts.make(f"{sdk.language}-readme", subscription=Decimal(10), free_calls=10)
    env = sdk_env(sdk_stack, key)
    printed = {}
    for name, code in found.items():
        source = tmp_path / f"{name}.{EXTENSIONS[sdk.fence]}"
        source.write_text(csharp_program(code) if sdk.fence == "csharp" else code)
        done = sdk.run(source, tmp_path, env)
        assert done.returncode == 0, f"README example {name}:\n{code}\n--- stdout ---\n{done.stdout}\n--- stderr ---\n{done.stderr}"
        printed[name] = done.stdout.strip()
    for name, pattern in EXPECTED.items():
        assert re.match(pattern, printed[name]), (name, printed[name])

    # The first example's picture is what it printed; the second's a JPG.
    image = Image.open(tmp_path / "result.png")
    assert image.format == "PNG"
    real_matte(image)
    assert "%dx%d" % image.size == "x".join(re.match(EXPECTED["first"], printed["first"]).groups())
    assert Image.open(tmp_path / "on-blue.jpg").format == "JPEG"
    # Three paid calls: the first, the options and the idempotent one (its repeat was a replay).
    assert accounts.balance(key) == 7
