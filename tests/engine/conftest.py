"""Shared fixtures for the engine tests: the real model (loaded once); the research photos are
tests/conftest.py's `grabcut`."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def engine(model_manifest, engine_config):
    """The default engine (the manifest's chosen candidate) without X-Type's networks."""
    import dataclasses

    from engine.pipeline import Engine

    return Engine.from_manifest(model_manifest, dataclasses.replace(engine_config, xtype=False))


@pytest.fixture(scope="session")
def person_photo(grabcut):
    """One grabcut50 photo as RGB (a person against clutter): the averaged views' tests."""
    import io

    from PIL import Image

    data, _, _ = grabcut("388016")
    return Image.open(io.BytesIO(data)).convert("RGB")
