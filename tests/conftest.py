"""Fixtures any suite may use: this machine's model manifest (what `make model` prepared and
measured), and a fresh PostgreSQL schema on the machine's real server.

It follows tests/conftest_services.py: skipped locally when PostgreSQL is down, a failure under
CI=true or CLEARBG_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import os
import pathlib
import uuid
from collections.abc import Callable, Iterator
from urllib.parse import quote, urlsplit

import numpy as np
import pytest
from PIL import Image

from tests.conftest_services import require_service

# The suite's engines and every server it starts see each view once, not also mirrored (the shipped
# default) nor looked at again (CLEARBG_NET_LOOKS, off unless set): the mirror doubles the net's
# time (1 s a view on an AVX2-only EPYC), each look adds as much again, and these tests judge the
# service, not the matte's last points; tests/engine/test_mirror.py and test_looks.py run them and
# bench/quality judges quality with the mirror. CLEARBG_MIRROR=1 make test runs the whole suite with it.
os.environ.setdefault("CLEARBG_MIRROR", "0")
os.environ.setdefault("CLEARBG_NET_LOOKS", "none")

# The machine's PostgreSQL: trust authentication, database `test`.
POSTGRES_URL = os.environ.get("CLEARBG_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
# The research photos, read in place (research-licensed: never copied here).
QUALITY = pathlib.Path(__file__).resolve().parents[2] / "shared" / "quality"
POSTGRES_START = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"


@pytest.fixture(scope="session")
def postgres_schema() -> Iterator[Callable[[], str]]:
    """Returns a function that creates a fresh, empty schema in the test database and gives
    the CLEARBG_DATABASE_URL whose search_path is that schema (so servers started with it use
    it too). Every schema made this session is dropped at the end."""
    import psycopg

    require_service(
        f"PostgreSQL at {POSTGRES_URL}", lambda: psycopg.connect(POSTGRES_URL, connect_timeout=3).close(), POSTGRES_START
    )
    session = f"clearbg_test_{uuid.uuid4().hex[:10]}"
    made: list[str] = []
    separator = "&" if urlsplit(POSTGRES_URL).query else "?"

    def make() -> str:
        name = f"{session}_{len(made)}"
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{name}"')
        made.append(name)
        return f"{POSTGRES_URL}{separator}options={quote(f'-csearch_path={name}')}"

    try:
        yield make
    finally:
        if made:
            with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
                for name in made:
                    conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture(scope="session")
def model_manifest():
    """This machine's manifest for the default checkpoint (`make test` runs `make model` first)."""
    from engine.config import DEFAULT_CHECKPOINT
    from engine.models import manifest
    from modelprep.fetch import cache_dir

    return manifest.load(cache_dir(), DEFAULT_CHECKPOINT)


@pytest.fixture(scope="session")
def engine_config():
    """The engine as the service configures it by default, on two threads (mirrored and with
    further looks as CLEARBG_MIRROR and CLEARBG_NET_LOOKS say: above)."""
    from engine.config import EngineConfig
    from modelprep.fetch import cache_dir
    from service.config import Settings

    settings = Settings.from_environ()
    return EngineConfig(cache_dir=cache_dir(), threads=2, mirror=settings.mirror, looks=settings.net_looks)


@pytest.fixture(scope="session")
def grabcut():
    """Loads a grabcut50 photo: (bytes of the file, bool ground truth, bool pixels to ignore)."""
    root = QUALITY / "grabcut50"
    if not root.is_dir():
        pytest.skip(f"research photos not found at {root}")

    def load(stem: str) -> tuple[bytes, np.ndarray, np.ndarray]:
        image = next(root.glob(f"images/{stem}.*"))
        truth = np.asarray(Image.open(root / "masks" / f"{stem}.png").convert("L")) > 127
        ignore_path = root / "ignore" / f"{stem}.png"
        ignore = (
            np.asarray(Image.open(ignore_path).convert("L")) > 127 if ignore_path.exists() else np.zeros_like(truth)
        )
        return image.read_bytes(), truth, ignore

    return load

