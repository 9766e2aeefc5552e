"""A fixed split of every set into a tuned part and a held-out part (issue 15).

Settings swept on data (tune.py) are swept on the tuned part only; the README's table is the
held-out part's. The split is a seeded hash of the set and the photo's stem, not a list: it
needs no file per set, it never changes when a photo is added elsewhere, and anyone can
recompute it. Within a set the photos are ordered by that hash and the first half (rounded up)
is tuned, so both parts are as large as they can be.

Generated sets (generated.py) are split by the real photo each image is made from, so nothing
of a held-out photo (its subject, its background) is ever seen while tuning.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

SEED = "clearbg-issue-15"
TUNED, HELD_OUT = "tuned", "held-out"
PARTS = (TUNED, HELD_OUT)


def key(set_name: str, stem: str) -> str:
    return hashlib.sha256(f"{SEED}/{set_name}/{stem}".encode()).hexdigest()


def split(set_name: str, stems: Iterable[str]) -> dict[str, str]:
    """stem -> TUNED or HELD_OUT, for every stem of the set (the whole set, not a --limit of it)."""
    ordered = sorted(set(stems), key=lambda stem: key(set_name, stem))
    tuned = (len(ordered) + 1) // 2
    return {stem: TUNED if i < tuned else HELD_OUT for i, stem in enumerate(ordered)}
