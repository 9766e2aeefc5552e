"""The Node SDK and CLI as a user gets them, against the real stack.

`npm pack` makes both tarballs (their prepack builds them); the SDK's is installed into an
empty folder, and both into a global prefix (`npm install -g --prefix`), each with --offline:
nothing but the tarballs (and npm's cache for the workspace's dev dependencies) is needed. The
stack and the accounts are every SDK's (tests/clients/conftest.py).
"""

from __future__ import annotations

import os
import pathlib

import pytest

from tests.clients.node.node_tools import CLIENTS, Packages, npm
from tests.e2e.conftest import QUALITY, quality  # noqa: F401 (quality: a fixture)


@pytest.fixture(scope="session")
def node_packages(tmp_path_factory) -> Packages:
    """Both packages packed as `npm publish` would send them."""
    if not (CLIENTS / "node_modules" / "typescript").is_dir():
        npm("ci", "--prefer-offline", cwd=CLIENTS)
    out = tmp_path_factory.mktemp("npm-pack")
    tarballs = []
    for package in ("node", "cli"):  # the SDK first: the CLI builds against its declarations
        name = npm("pack", "--pack-destination", str(out), cwd=CLIENTS / package).strip().splitlines()[-1]
        tarballs.append(out / name)
    return Packages(*tarballs)


@pytest.fixture(scope="session")
def sdk_app(node_packages, tmp_path_factory) -> pathlib.Path:
    """An empty project folder where `npm install <the SDK's tarball>` was run."""
    app = tmp_path_factory.mktemp("sdk-app")
    npm("install", "--offline", str(node_packages.sdk), cwd=app)
    assert (app / "node_modules" / "clearbg" / "package.json").is_file()
    return app


@pytest.fixture(scope="session")
def clearbg_bin(node_packages, tmp_path_factory) -> pathlib.Path:
    """`npm install -g --prefix <tmp>` of the CLI's tarball. Its dependency `clearbg` is not on
    the registry yet: the SDK's tarball, named in the same command, stands in for it (npm
    places both in <tmp>/lib/node_modules, where the CLI's `clearbg` resolves; --offline proves
    nothing else was fetched). Returns <tmp>/bin/clearbg."""
    prefix = tmp_path_factory.mktemp("npm-global")
    npm("install", "-g", "--offline", "--prefix", str(prefix), str(node_packages.sdk), str(node_packages.cli), cwd=prefix)
    command = prefix / "bin" / "clearbg"
    assert command.is_file() and os.access(command, os.X_OK), list((prefix / "bin").iterdir())
    return command


@pytest.fixture(scope="session")
def photos() -> list[pathlib.Path]:
    """grabcut50's JPEGs (0.11-0.31 MP), read in place from ../shared/quality."""
    found = sorted((QUALITY / "grabcut50" / "images").glob("*.jpg"))
    if len(found) < 30:
        pytest.fail(f"{QUALITY}/grabcut50/images should hold 30+ JPEGs, has {len(found)}")
    return found
