"""The Node SDK and CLI as a user gets them, against the real stack.

`npm pack` makes both tarballs (their prepack builds them); the SDK's is installed into an
empty folder, and both into a global prefix (`npm install -g --prefix`), each with --offline:
nothing but the tarballs (and npm's cache for the workspace's dev dependencies) is needed. The
stack is the e2e suites' own (tests/e2e/conftest.py start_stack: real Envoy, real gRPC server,
real model, temp SQLite); accounts are made through the storage API as an operator would.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal

import pytest

from tests.e2e.api_calls import account_maker
from tests.e2e.conftest import QUALITY, RunningStack, quality, start_stack  # noqa: F401 (quality: a fixture)

ROOT = pathlib.Path(__file__).resolve().parents[3]
CLIENTS = ROOT / "clients"
NPM_TIMEOUT_S = 600


def npm(*args: str, cwd: pathlib.Path) -> str:
    """Runs npm; a failure shows its output."""
    npm_path = shutil.which("npm")
    if npm_path is None:
        pytest.fail("npm is not installed: the Node clients' tests need Node 18+ and npm")
    done = subprocess.run(
        [npm_path, *args, "--no-audit", "--no-fund"], cwd=cwd, capture_output=True, text=True, timeout=NPM_TIMEOUT_S
    )
    assert done.returncode == 0, f"npm {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done.stdout


@dataclass(frozen=True)
class Packages:
    sdk: pathlib.Path  # clearbg-<version>.tgz
    cli: pathlib.Path  # clearbg-cli-<version>.tgz


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
def node_stack(tmp_path_factory) -> Iterator[RunningStack]:
    with start_stack(tmp_path_factory.mktemp("node-e2e")) as running:
        yield running


@dataclass
class Accounts:
    """Accounts in the stack's database: make() creates one and returns its key."""

    make: Callable[..., str]
    storage: object

    def balance(self, key: str) -> Decimal:
        account, _ = self.storage.find_key(key)
        return account.total

    def top_up(self, key: str, credits: int) -> None:
        account, _ = self.storage.find_key(key)
        self.storage.add_credits(account.id, f"test-top-up-{key[-6:]}", subscription=Decimal(credits))

    def charges(self, key: str) -> list:
        """The account's ledger rows of kind charge and refund."""
        account, _ = self.storage.find_key(key)
        return [row for row in self.storage.ledger(account.id) if row.kind in ("charge", "refund")]


@pytest.fixture(scope="session")
def accounts(node_stack) -> Iterator[Accounts]:
    from service.storage import open_storage

    storage = open_storage(node_stack.database_url)
    try:
        with account_maker(node_stack.database_url) as make:
            yield Accounts(make, storage)
    finally:
        storage.close()


def node_env(stack: RunningStack, key: str, **extra: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("CLEARBG_")}
    env.update(CLEARBG_BASE_URL=stack.rest_url, CLEARBG_API_KEY=key, **extra)
    return env


@pytest.fixture(scope="session")
def photos() -> list[pathlib.Path]:
    """grabcut50's JPEGs (0.11-0.31 MP), read in place from ../shared/quality."""
    found = sorted((QUALITY / "grabcut50" / "images").glob("*.jpg"))
    if len(found) < 30:
        pytest.fail(f"{QUALITY}/grabcut50/images should hold 30+ JPEGs, has {len(found)}")
    return found


def photo_folder(folder: pathlib.Path, photos: list[pathlib.Path]) -> pathlib.Path:
    """A folder of links to the shared photos (never copies)."""
    folder.mkdir(parents=True)
    for photo in photos:
        (folder / photo.name).symlink_to(photo)
    return folder
