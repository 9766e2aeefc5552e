"""The Ruby, PHP and .NET SDKs as their users get them, for the end-to-end tests.

- Ruby: `gem build clearbg.gemspec`, then `gem install --local` of that .gem into a folder of its
  own (GEM_HOME), which the programs run with: `require "clearbg"` finds only the installed gem.
- PHP: a project whose composer.json requires clearbg/sdk from a path repository (this checkout's
  clients/php, copied as Composer mirrors it) with Packagist turned off, and `composer install`;
  Guzzle is Debian's (php-guzzlehttp-guzzle), which the project declares it provides and loads.
- .NET: ClearBG.dll compiled by Mono's C# compiler (mcs) from clients/dotnet/src/ClearBG; programs
  compiled against it and run by Mono. (No .NET SDK can be installed on these machines.)

`sdk` is parametrised over the three; each is built once per session, when first asked for.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from tests.clients.sdk_tools import CLIENTS, RecordingProxy
from tests.e2e.api_calls import PERSON
from tests.e2e.conftest import quality  # noqa: F401 (a fixture)
from tests.service.remote_fixtures import LocalServer, body

BUILD_TIMEOUT_S = 300
RUN_TIMEOUT_S = 600
MCS_REFERENCES = ["-r:System.Net.Http.dll", "-r:System.Runtime.Serialization.dll", "-r:System.Xml.Linq.dll", "-r:System.Xml.dll"]


def run(argv: list, cwd: pathlib.Path, env: dict | None = None, timeout: float = BUILD_TIMEOUT_S) -> subprocess.CompletedProcess:
    """Runs a command; a tool that is not installed is a failure that says what `make test` installs."""
    if shutil.which(str(argv[0])) is None:
        pytest.fail(f"{argv[0]} is not installed: `make test` installs the SDKs' Debian packages (make rest-sdk-deps)")
    return subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def checked(done: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert done.returncode == 0, shown(done)
    return done


def shown(done: subprocess.CompletedProcess) -> str:
    return f"{done.args}: exit {done.returncode}\n--- stdout ---\n{done.stdout[-6000:]}\n--- stderr ---\n{done.stderr[-6000:]}"


@dataclass(frozen=True)
class Sdk:
    """One SDK, installed as its users install it, and how to run a program written against it."""

    language: str
    user_agent: re.Pattern
    # The class each of these statuses raises, by its name in the language.
    errors: dict
    # run(source_file, cwd, env) runs a program file of the language against the installed SDK.
    run: Callable[[pathlib.Path, pathlib.Path, dict], subprocess.CompletedProcess]
    e2e_script: pathlib.Path
    readme: pathlib.Path
    fence: str  # the README's code fence language


@pytest.fixture(scope="session")
def ruby_sdk(tmp_path_factory) -> Sdk:
    work = tmp_path_factory.mktemp("ruby-gem")
    gem = work / "clearbg.gem"
    checked(run(["gem", "build", "clearbg.gemspec", "--output", gem], cwd=CLIENTS / "ruby"))
    home = work / "gems"
    checked(run(["gem", "install", "--local", "--no-document", "--install-dir", home, gem], cwd=work))
    assert (home / "specifications").glob("clearbg-*.gemspec")

    def run_ruby(source: pathlib.Path, cwd: pathlib.Path, env: dict) -> subprocess.CompletedProcess:
        # Only the installed gem: no -I, and the gem folder is the only one besides Ruby's own.
        return run(["ruby", source], cwd=cwd, env={**env, "GEM_HOME": str(home), "GEM_PATH": str(home)}, timeout=RUN_TIMEOUT_S)

    return Sdk("ruby", re.compile(r"^clearbg-ruby/\d+\.\d+\.\d+$"),
               {400: "BadRequestError", 401: "AuthenticationError", 402: "InsufficientCreditsError"},
               run_ruby, CLIENTS / "ruby" / "e2e" / "sdk_e2e.rb", CLIENTS / "ruby" / "README.md", "ruby")


@pytest.fixture(scope="session")
def php_sdk(tmp_path_factory) -> Sdk:
    app = tmp_path_factory.mktemp("php-app")
    # Debian's Guzzle stands in for Packagist's: the project says it provides guzzlehttp/guzzle
    # and loads Debian's autoloader (from the include path) through Composer's own autoloader.
    (app / "debian-guzzle.php").write_text("<?php\nrequire_once 'GuzzleHttp/autoload.php';\n")
    (app / "composer.json").write_text(json.dumps({
        "name": "clearbg-tests/php-app",
        "repositories": [{"type": "path", "url": str(CLIENTS / "php"), "options": {"symlink": False}}, {"packagist.org": False}],
        "require": {"clearbg/sdk": "*@dev"},
        "provide": {"guzzlehttp/guzzle": "7.4.5"},
        "autoload": {"files": ["debian-guzzle.php"]},
    }, indent=2))
    env = {**os.environ, "COMPOSER_HOME": str(app / ".composer"), "COMPOSER_NO_INTERACTION": "1"}
    checked(run(["composer", "install", "--no-progress", "--no-dev"], cwd=app, env=env))
    assert (app / "vendor" / "clearbg" / "sdk" / "src" / "Client.php").is_file()

    def run_php(source: pathlib.Path, cwd: pathlib.Path, env: dict) -> subprocess.CompletedProcess:
        # Programs `require __DIR__ . '/vendor/autoload.php'`, as in a project of their own.
        if not (source.parent / "vendor").exists():
            (source.parent / "vendor").symlink_to(app / "vendor")
        return run(["php", source], cwd=cwd, env=env, timeout=RUN_TIMEOUT_S)

    return Sdk("php", re.compile(r"^clearbg-php/\d+\.\d+\.\d+$"),
               {400: "BadRequestException", 401: "AuthenticationException", 402: "InsufficientCreditsException"},
               run_php, CLIENTS / "php" / "e2e" / "sdk_e2e.php", CLIENTS / "php" / "README.md", "php")


@pytest.fixture(scope="session")
def dotnet_sdk(tmp_path_factory) -> Sdk:
    build = tmp_path_factory.mktemp("dotnet")
    sources = sorted((CLIENTS / "dotnet" / "src" / "ClearBG").glob("*.cs"))
    checked(run(["mcs", "-target:library", "-warnaserror", f"-out:{build / 'ClearBG.dll'}", *MCS_REFERENCES, *sources], cwd=build))

    def run_csharp(source: pathlib.Path, cwd: pathlib.Path, env: dict) -> subprocess.CompletedProcess:
        program = cwd / (source.stem + ".exe")
        compiled = run(["mcs", "-warnaserror", f"-out:{program}", f"-r:{build / 'ClearBG.dll'}", *MCS_REFERENCES, source], cwd=cwd)
        if compiled.returncode != 0:
            return compiled
        return run(["mono", program], cwd=cwd, env={**env, "MONO_PATH": str(build)}, timeout=RUN_TIMEOUT_S)

    return Sdk("dotnet", re.compile(r"^clearbg-dotnet/\d+\.\d+\.\d+$"),
               {400: "BadRequestException", 401: "AuthenticationException", 402: "InsufficientCreditsException"},
               run_csharp, CLIENTS / "dotnet" / "e2e" / "SdkE2E.cs", CLIENTS / "dotnet" / "README.md", "csharp")


@pytest.fixture(scope="session", params=["ruby", "php", "dotnet"])
def sdk(request) -> Sdk:
    return request.getfixturevalue(f"{request.param}_sdk")


@pytest.fixture(scope="session")
def proxy(sdk_stack) -> Iterator[RecordingProxy]:
    """Between the SDKs and the stack: every exchange's headers, both ways, and its timing."""
    recording = RecordingProxy(sdk_stack.rest_url)
    try:
        yield recording
    finally:
        recording.close()


@pytest.fixture(scope="session")
def image_host(quality) -> Iterator[LocalServer]:
    """The test photo on a local HTTP server (the stack allows image_url from 127.0.0.1)."""
    with LocalServer({"/person.jpg": body((quality / PERSON).read_bytes())}) as server:
        yield server
