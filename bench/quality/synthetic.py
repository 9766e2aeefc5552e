"""Issue 5's colour check: photos whose true foreground colour is known at every pixel.

Each photo is a flat foreground colour F over a flat, different background colour B through a
known soft alpha: a body with a feathered edge and hair-like strands (drawn 4x larger and
box-filtered down, so thin strands become fractional alpha). photo = a·F + (1 - a)·B, in 8 bits.
On the band 0 < a < 1 a cut-out that just keeps the photo's colour shows (1 - a)·|F - B| of the
old background; a cut-out that estimates the foreground shows less. The score is the mean
absolute RGB error against F over the band pixels the cut-out keeps (its alpha > 0), in 8-bit
levels, plus how much of the band it keeps.
"""

from __future__ import annotations

import math
import pathlib
import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

SIZE = 640
SUPERSAMPLE = 4

# name, foreground colour, background colour
CASES = (
    ("auburn on sky", (150, 62, 30), (170, 200, 230)),
    ("blond on forest", (232, 200, 122), (30, 72, 40)),
    ("black on white", (24, 24, 26), (244, 244, 242)),
    ("white on navy", (240, 238, 232), (22, 32, 84)),
)


@dataclass(frozen=True)
class ColourCase:
    name: str
    foreground: tuple[int, int, int]
    background: tuple[int, int, int]
    photo: np.ndarray  # uint8 H x W x 3
    alpha: np.ndarray  # uint8 H x W, the truth

    @property
    def band(self) -> np.ndarray:
        return (self.alpha > 0) & (self.alpha < 255)


def soft_alpha(size: int = SIZE, seed: int = 0) -> np.ndarray:
    """uint8 alpha: a feathered ellipse with ~150 wavy strands growing from its upper half."""
    rng = random.Random(seed)
    big = size * SUPERSAMPLE
    strands = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(strands)
    cx, cy, rx, ry = big * 0.5, big * 0.62, big * 0.24, big * 0.28
    for _ in range(150):
        angle = rng.uniform(math.pi * 1.05, math.pi * 1.95)  # upper half (y grows downwards)
        x, y = cx + rx * 0.9 * math.cos(angle), cy + ry * 0.9 * math.sin(angle)
        heading = angle + rng.uniform(-0.35, 0.35)
        length = rng.uniform(0.12, 0.3) * big
        points = [(x, y)]
        steps = 24
        for _ in range(steps):
            heading += rng.uniform(-0.12, 0.12)
            x += math.cos(heading) * length / steps
            y += math.sin(heading) * length / steps
            points.append((x, y))
        draw.line(points, fill=rng.randint(150, 255), width=rng.choice((1, 2, 3, 4)))
    hair = np.asarray(strands.resize((size, size), Image.Resampling.BOX), dtype=np.float32) / 255.0

    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    ecx, ecy, erx, ery = cx / SUPERSAMPLE, cy / SUPERSAMPLE, rx / SUPERSAMPLE, ry / SUPERSAMPLE
    radius = np.hypot((xx - ecx) / erx, (yy - ecy) / ery)  # 1.0 on the ellipse
    feather = 14.0 / min(erx, ery)  # ~14 px soft edge
    body = np.clip((1.0 - radius) / feather + 0.5, 0.0, 1.0)
    alpha = np.maximum(body, hair)
    return np.round(alpha * 255.0).astype(np.uint8)


def make_cases(size: int = SIZE) -> list[ColourCase]:
    cases = []
    for seed, (name, fg, bg) in enumerate(CASES):
        alpha = soft_alpha(size, seed)
        a = alpha[..., None].astype(np.float32) / 255.0
        photo = np.round(a * np.array(fg, np.float32) + (1.0 - a) * np.array(bg, np.float32)).astype(np.uint8)
        cases.append(ColourCase(name, fg, bg, photo, alpha))
    return cases


def write_photos(cases: list[ColourCase], folder: pathlib.Path) -> list[pathlib.Path]:
    """PNG files of the photos (the methods read files, as the API reads uploads)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, case in enumerate(cases):
        path = folder / f"colour-{i}.png"
        Image.fromarray(case.photo).save(path)
        paths.append(path)
    return paths


def colour_error(case: ColourCase, alpha: np.ndarray, colour: np.ndarray) -> dict[str, float]:
    """Mean |RGB - F| (8-bit levels) over band pixels kept (alpha > 0); the kept fraction of the
    band; and, for reference, the photo's own colour error over the whole band."""
    kept = case.band & (alpha > 0)
    n = int(np.count_nonzero(kept))
    truth = np.array(case.foreground, np.float32)
    photo_error = np.abs(case.photo[case.band].astype(np.float32) - truth).mean()
    if n == 0:
        return {"error": float("nan"), "kept": 0.0, "photo": float(photo_error)}
    error = np.abs(colour[kept].astype(np.float32) - truth).mean()
    return {"error": float(error), "kept": n / int(np.count_nonzero(case.band)), "photo": float(photo_error)}
