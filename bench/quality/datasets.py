"""The ground-truth sets in ../shared/quality, read in place (research licences: never copied).

Each set has images/, masks/ (same stem), meta.csv and SOURCE.txt. grabcut50 adds ignore/
(255 = the unlabelled band, left out of scoring); alphamatting14's masks are measured 8-bit
alpha. grabcut50 marks one person as background in three two-person photos (SOURCE.txt,
CAVEATS): those are scored apart, so a cut-out that keeps both people does not drag the rest.
"""

from __future__ import annotations

import csv
import os
import pathlib
from dataclasses import dataclass

import numpy as np
from PIL import Image

from bench.quality import splits

SETS = ("grabcut50", "alphamatting14")
ENV = "CLEARBG_QUALITY_DIR"
REPO = pathlib.Path(__file__).resolve().parents[2]
# SOURCE.txt's CAVEATS: the truth keeps one of two people.
TWO_PEOPLE = {"grabcut50": frozenset({"person4", "person5", "bool"})}
TWO_PEOPLE_GROUP = "two people, one in GT"


def default_root() -> pathlib.Path:
    return pathlib.Path(os.environ.get(ENV) or REPO.parent / "shared" / "quality")


@dataclass(frozen=True)
class Sample:
    set: str
    stem: str
    category: str  # meta.csv's, or TWO_PEOPLE_GROUP
    subject: str
    part: str  # splits.TUNED or splits.HELD_OUT
    image: pathlib.Path
    mask: pathlib.Path
    ignore: pathlib.Path | None

    def truth(self) -> np.ndarray:
        """True alpha in [0, 1], float32."""
        return np.asarray(Image.open(self.mask).convert("L"), dtype=np.float32) / 255.0

    def valid(self) -> np.ndarray | None:
        """Pixels to score (False on the unlabelled band), or None for all."""
        if self.ignore is None:
            return None
        return np.asarray(Image.open(self.ignore).convert("L")) < 128

    def photo(self) -> Image.Image:
        return Image.open(self.image).convert("RGB")


def load(root: pathlib.Path, name: str, limit: int | None = None,
         parts: tuple[str, ...] = splits.PARTS) -> list[Sample]:
    """The set's photos in the given parts of the fixed split (a `part` column where meta.csv
    has one, as the generated sets do, else splits.split), the first `limit` of each part."""
    base = root / name
    meta = base / "meta.csv"
    if not meta.is_file():
        raise FileNotFoundError(f"{meta} not found (set {ENV} or --quality-dir to the quality sets)")
    with meta.open(newline="") as f:
        rows = list(csv.DictReader(f))
    split = splits.split(name, [row["stem"] for row in rows])
    samples = []
    for row in rows:
        stem = row["stem"]
        ignore = base / "ignore" / f"{stem}.png"
        category = TWO_PEOPLE_GROUP if stem in TWO_PEOPLE.get(name, ()) else row["category"]
        samples.append(Sample(
            set=name, stem=stem, category=category, subject=row["subject"], part=row.get("part") or split[stem],
            image=base / row["image"], mask=base / row["mask"],
            ignore=ignore if ignore.is_file() else None,
        ))
    chosen = []
    for part in parts:
        in_part = [s for s in samples if s.part == part]
        chosen += in_part[:limit] if limit else in_part
    return chosen
