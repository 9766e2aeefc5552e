"""Contact sheet per set: one column per photo, rows photo / ours / the better rembg / truth /
error map (ours). The bench puts the photos where ours is most behind rembg first (issue 15).

The error map is ours minus the truth over the photo dimmed to grey: red where ours keeps
background (too much alpha), blue where it drops foreground (too little), brighter = larger
error; yellow marks pixels left out of scoring (grabcut50's unlabelled band).
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

THUMB = 168  # longest side of each cell, px
PER_BAND = 10  # photos per band of rows
LABEL_W = 70
CAPTION_H = 30
GAP = 4
ROWS = ("photo", "ours", "rembg", "truth", "error")


@dataclass
class Column:
    title: str
    caption: str
    photo: Image.Image
    ours: np.ndarray  # float [0, 1]
    truth: np.ndarray  # float [0, 1]
    valid: np.ndarray | None
    rembg: np.ndarray | None = None  # the better rembg's matte (blank when none ran)


def error_map(photo: Image.Image, ours: np.ndarray, truth: np.ndarray, valid: np.ndarray | None) -> Image.Image:
    grey = np.asarray(photo.convert("L"), dtype=np.float32) * 0.3
    diff = ours - truth
    over, under = np.clip(diff, 0, 1) * 255.0, np.clip(-diff, 0, 1) * 255.0
    rgb = np.stack([grey + over, grey + under * 0.35, grey + under], axis=-1)
    if valid is not None:
        rgb[~valid] = (200, 180, 0)
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))


def _fit(image: Image.Image) -> Image.Image:
    scale = THUMB / max(image.size)
    return image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                        Image.Resampling.BILINEAR)


def _gray(alpha: np.ndarray) -> Image.Image:
    return Image.fromarray(np.round(np.clip(alpha, 0, 1) * 255).astype(np.uint8)).convert("RGB")


def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def contact_sheet(title: str, columns: list[Column]) -> Image.Image:
    bands = [columns[i : i + PER_BAND] for i in range(0, len(columns), PER_BAND)]
    cell = THUMB + GAP
    band_h = CAPTION_H + len(ROWS) * cell + 2 * GAP
    header_h = 48
    width = LABEL_W + min(PER_BAND, len(columns)) * cell + GAP
    sheet = Image.new("RGB", (width, header_h + len(bands) * band_h), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    draw.text((GAP, 4), title, fill=(0, 0, 0), font=_font(18))
    draw.text((GAP, 26), "error map: red = ours keeps background, blue = ours drops foreground, "
              "brighter = larger; yellow = not scored", fill=(60, 60, 60), font=_font(13))
    for b, band in enumerate(bands):
        top = header_h + b * band_h
        for r, name in enumerate(ROWS):
            draw.text((GAP, top + CAPTION_H + r * cell + THUMB // 2 - 8), name, fill=(0, 0, 0), font=_font(15))
        for c, col in enumerate(band):
            left = LABEL_W + c * cell
            draw.text((left, top + 2), col.title, fill=(0, 0, 0), font=_font(12))
            draw.text((left, top + 15), col.caption, fill=(90, 90, 90), font=_font(11))
            rembg = col.rembg if col.rembg is not None else np.zeros_like(col.ours)
            images = (col.photo, _gray(col.ours), _gray(rembg), _gray(col.truth),
                      error_map(col.photo, col.ours, col.truth, col.valid))
            for r, image in enumerate(images):
                thumb = _fit(image)
                y = top + CAPTION_H + r * cell
                sheet.paste(thumb, (left + (THUMB - thumb.width) // 2, y + (THUMB - thumb.height) // 2))
    return sheet


def save(title: str, columns: list[Column], path: pathlib.Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    contact_sheet(title, columns).save(path, optimize=True)
