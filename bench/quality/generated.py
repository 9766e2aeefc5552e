"""Generated development sets (issue 15): wide and tall frames with small subjects, whose truth is
exact, made from ../shared/quality with a fixed seed and written to the cache (never the repo).

No public set of wide frames with small subjects can be had here, so they are made in the manner
of the matting benchmarks (Composition-1k): a known foreground pasted over a background that
holds no subject of its own, the truth being the very alpha it was pasted with.

- composites-grabcut: grabcut50's subjects cut by their masks, composites-alpha: alphamatting14's
  subjects with their measured mattes (colour un-mixed from the old background by the engine's
  own foreground estimate); each scaled to 2-30 % of the frame (area of the alpha) on a 16:9,
  21:9 or 9:16 frame (854x480, 1120x480, 480x854: video's sizes). A subject the photo cuts at a
  side (a person cut at the waist) is put against the same side of the frame.
- Backgrounds: the largest window of the frame's aspect in a real photo where its truth, grown by
  a margin, is empty; scaled up to the frame (the blur of a distant background).
- crops-grabcut, crops-alpha: 16:9 and 9:16 crops of the real photos with their masks (and
  grabcut50's unlabelled band), placed on the subject's centre of mass.

Every image is made from photos of one part of the fixed split (splits.py), its own part: the
held-out images share nothing with the tuned ones. The sets have the real sets' layout
(images/, masks/, ignore/, meta.csv with a `part` column), so datasets.load reads them.
"""

from __future__ import annotations

import csv
import hashlib
import math
import os
import pathlib
import random
import shutil
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from bench.quality import datasets, splits

SEED = 15
VERSION = 5  # bump when what is generated changes: a new folder in the cache
FRAMES = {"16:9": (854, 480), "21:9": (1120, 480), "9:16": (480, 854)}
CROPS = {"16:9": 16 / 9, "9:16": 9 / 16}
FRACTION = (0.02, 0.30)  # subject area, of the frame (drawn log-uniform)
MARGIN = 8  # px around the truth a background window keeps clear of
MIN_BACKGROUND_SHORT = 100  # px: smaller empty windows would be scaled up into mush
# per part: how many images each generated set makes
COUNTS = {"composites-grabcut": 30, "composites-alpha": 21, "crops-grabcut": 25, "crops-alpha": 7}
# More composites in the tuned part only, drawn after the others with their own seed: the settings
# are chosen on more frames, and every image made before (the held-out part's above all, which
# the README's figures are judged on) stays as it was.
TUNED_EXTRA = {"composites-grabcut": 30, "composites-alpha": 21}
SETS = tuple(COUNTS)
# Photos whose empty part still holds a subject of its own, which a cut-out rightly keeps while the
# truth of a composite on it says background (found by looking at every window `backgrounds` offers,
# in every frame and both parts, before any composite on them was scored): a person (271008, 153077,
# 37073, person8's shoulder), a statue (24077), gravestones (grave), a racket (tennis), signs and
# banners (153093, 21077), lanterns (65019), a camera (GT25). Piles that fill the window (oranges,
# roses), walls, rock and foliage stay: texture, not a subject. Not used as backgrounds.
NOT_BACKGROUNDS = frozenset({
    ("grabcut50", "24077"), ("grabcut50", "271008"), ("grabcut50", "grave"), ("grabcut50", "153077"),
    ("grabcut50", "37073"), ("grabcut50", "person8"), ("grabcut50", "tennis"), ("grabcut50", "153093"),
    ("grabcut50", "21077"), ("grabcut50", "65019"), ("alphamatting14", "GT25"),
})
SOURCE = {"composites-grabcut": "grabcut50", "composites-alpha": "alphamatting14",
          "crops-grabcut": "grabcut50", "crops-alpha": "alphamatting14"}


@dataclass(frozen=True)
class Photo:
    """A real photo of one part: pixels, alpha truth in [0, 1] (float32), unlabelled band."""

    sample: datasets.Sample
    part: str

    def pixels(self) -> np.ndarray:
        return np.asarray(self.sample.photo())

    def alpha(self) -> np.ndarray:
        return self.sample.truth()


def real_photos(root: pathlib.Path, set_name: str) -> list[Photo]:
    """A real set's photos with their parts, the two-people photos left out (their truth calls a
    person background, who would then appear in a frame as background)."""
    samples = datasets.load(root, set_name)
    return [Photo(s, s.part) for s in samples if s.category != datasets.TWO_PEOPLE_GROUP]


def empty_window(alpha: np.ndarray, aspect: float, margin: int = MARGIN) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) of the largest window of width/height `aspect` where the truth, grown by
    `margin`, is empty (alpha == 0), the first such from the top left; None if none exists."""
    occupied = (alpha > 0).astype(np.uint8)
    if margin:
        occupied = cv2.dilate(occupied, np.ones((2 * margin + 1, 2 * margin + 1), np.uint8))
    h, w = occupied.shape
    summed = np.pad(occupied.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))

    def fits(wh: int) -> tuple[int, int, int, int] | None:
        ww = round(wh * aspect)
        if ww < 1 or ww > w or wh > h:
            return None
        sums = summed[wh:, ww:] - summed[:-wh, ww:] - summed[wh:, :-ww] + summed[:-wh, :-ww]
        free = np.argwhere(sums == 0)
        if free.size == 0:
            return None
        y, x = free[0]
        return int(x), int(y), int(x) + ww, int(y) + wh

    low, high, best = 1, min(h, math.floor(w / aspect)), None
    while low <= high:  # an empty window contains smaller empty windows: bisect on the height
        mid = (low + high) // 2
        found = fits(mid)
        if found:
            best, low = found, mid + 1
        else:
            high = mid - 1
    return best


def backgrounds(photos: list[Photo], aspect: float) -> list[tuple[Photo, tuple[int, int, int, int]]]:
    """Every photo's largest empty window of `aspect` whose short side is at least MIN_BACKGROUND_SHORT."""
    found = []
    for photo in photos:
        window = empty_window(photo.alpha(), aspect)
        if window and min(window[2] - window[0], window[3] - window[1]) >= MIN_BACKGROUND_SHORT:
            found.append((photo, window))
    return found


def _resize(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Area filter when shrinking, bilinear when enlarging (either way each pixel counts)."""
    shrinking = size[0] < array.shape[1]
    return cv2.resize(array, size, interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def cut_subject(photo: Photo, soft: bool) -> tuple[np.ndarray, np.ndarray, tuple[bool, bool, bool, bool]]:
    """(colour float32 HxWx3, alpha uint8 HxW) of the subject's box, and which sides of the photo
    (left, top, right, bottom) the subject touches. Soft mattes get their colour un-mixed from
    the old background (engine/foreground), so the old background does not travel with the hair."""
    from engine.foreground import estimate_foreground

    pixels = photo.pixels().copy()
    alpha = np.round(photo.alpha() * 255).astype(np.uint8)
    if soft:
        pixels = estimate_foreground(pixels, alpha)
    rows, cols = np.flatnonzero(alpha.any(axis=1)), np.flatnonzero(alpha.any(axis=0))
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    h, w = alpha.shape
    touches = (x0 <= 1, y0 <= 1, x1 >= w - 1, y1 >= h - 1)
    return pixels[y0:y1, x0:x1].astype(np.float32), alpha[y0:y1, x0:x1], touches


def composite(subject: tuple[np.ndarray, np.ndarray, tuple[bool, bool, bool, bool]], background: np.ndarray,
              fraction: float, rng: random.Random) -> tuple[np.ndarray, np.ndarray, float]:
    """The subject scaled so its alpha covers `fraction` of the background (less if its box would
    not fit), placed at random (against the frame's side where the photo cut it): (photo uint8,
    truth uint8, the fraction it covers)."""
    colour, alpha, touches = subject
    fh, fw = background.shape[:2]
    area = float(alpha.sum()) / 255.0
    scale = math.sqrt(fraction * fw * fh / area)
    scale = min(scale, fw / alpha.shape[1], fh / alpha.shape[0])
    size = (max(1, round(alpha.shape[1] * scale)), max(1, round(alpha.shape[0] * scale)))
    size = (min(size[0], fw), min(size[1], fh))
    small_colour = _resize(colour, size)
    small_alpha = np.round(np.clip(_resize(alpha.astype(np.float32), size), 0, 255)).astype(np.uint8)
    left, top, right, bottom = touches
    x = rng.randint(0, fw - size[0])
    y = rng.randint(0, fh - size[1])
    if left != right:
        x = 0 if left else fw - size[0]
    if top != bottom:
        y = 0 if top else fh - size[1]
    truth = np.zeros((fh, fw), np.uint8)
    truth[y : y + size[1], x : x + size[0]] = small_alpha
    a = truth.astype(np.float32)[..., None] / 255.0
    placed = background.astype(np.float32).copy()
    placed[y : y + size[1], x : x + size[0]] = small_colour
    photo = np.clip(np.round(a * placed + (1.0 - a) * background.astype(np.float32)), 0, 255).astype(np.uint8)
    return photo, truth, float(truth.sum()) / 255.0 / (fw * fh)


def centred_crop(alpha: np.ndarray, aspect: float) -> tuple[int, int, int, int]:
    """The largest window of `aspect` in the photo, centred on the truth's centre of mass (clamped)."""
    h, w = alpha.shape
    cw, ch = (w, round(w / aspect)) if w / h <= aspect else (round(h * aspect), h)
    cw, ch = min(cw, w), min(ch, h)
    total = float(alpha.sum())
    ys, xs = np.mgrid[0:h, 0:w]
    cx = float((alpha * xs).sum() / total) if total else w / 2
    cy = float((alpha * ys).sum() / total) if total else h / 2
    x0 = int(min(max(round(cx - cw / 2), 0), w - cw))
    y0 = int(min(max(round(cy - ch / 2), 0), h - ch))
    return x0, y0, x0 + cw, y0 + ch


@dataclass
class Item:
    stem: str
    part: str
    category: str
    subject: str
    photo: np.ndarray
    truth: np.ndarray
    ignore: np.ndarray | None
    note: str


def make_composites(set_name: str, photos: list[Photo], scenery: list[Photo], count: int,
                    rng: random.Random, extra: int = 0) -> list[Item]:
    """`count` composites per part of `photos`' subjects over backgrounds from `scenery`, then
    `extra` more in the tuned part, drawn with a generator of their own (the first ones stay)."""
    soft = SOURCE[set_name] == "alphamatting14"
    items: list[Item] = []
    pool = {part: [p for p in scenery if p.part == part] for part in splits.PARTS}
    windows: dict[tuple[str, str], list] = {}  # (part, frame) -> backgrounds(), found once

    def draw(part: str, subjects: list[Photo], numbers: range, rng: random.Random) -> None:
        for i in numbers:
            photo = subjects[i % len(subjects)]
            for frame, (fw, fh) in FRAMES.items():
                if (part, frame) not in windows:
                    windows[part, frame] = backgrounds(pool[part], fw / fh)
            choices = {frame: [b for b in windows[part, frame] if b[0] is not photo] for frame in FRAMES}
            frame = rng.choice([f for f in FRAMES if choices[f]])  # a frame some photo has a background for
            fw, fh = FRAMES[frame]
            source, (x0, y0, x1, y1) = rng.choice(choices[frame])
            background = cv2.resize(source.pixels()[y0:y1, x0:x1], (fw, fh), interpolation=cv2.INTER_CUBIC)
            fraction = math.exp(rng.uniform(math.log(FRACTION[0]), math.log(FRACTION[1])))
            image, truth, covered = composite(cut_subject(photo, soft), background, fraction, rng)
            stem = f"{part[0]}{i:02d}-{photo.sample.stem}-{frame.replace(':', 'x')}"
            items.append(Item(stem, part, photo.sample.category, photo.sample.subject, image, truth, None,
                              f"{frame} {fw}x{fh}, subject {covered * 100:.1f} % on {source.sample.set}/"
                              f"{source.sample.stem} [{x0},{y0},{x1},{y1}]"))

    subjects = {}
    for part in splits.PARTS:
        subjects[part] = [p for p in photos if p.part == part]
        rng.shuffle(subjects[part])
        draw(part, subjects[part], range(count), rng)
    if extra:
        draw(splits.TUNED, subjects[splits.TUNED], range(count, count + extra),
             random.Random(f"{SEED}/{set_name}/tuned-extra"))
    return items


def source_stem(set_name: str, stem: str) -> str:
    """The real photo a set's image shows: for a generated image, the stem its own stem names
    (f"{part}{i}-{photo}-{frame}", as make_composites and make_crops write it); else the stem itself."""
    return stem.split("-", 1)[1].rsplit("-", 1)[0] if set_name in SETS else stem


def make_crops(photos: list[Photo], count: int, rng: random.Random) -> list[Item]:
    """`count` crops per part, alternately 16:9 and 9:16, of photos drawn from `photos`."""
    items: list[Item] = []
    for part in splits.PARTS:
        chosen = [p for p in photos if p.part == part]
        rng.shuffle(chosen)
        for i, photo in enumerate(chosen[:count]):
            name = list(CROPS)[i % len(CROPS)]
            alpha = photo.alpha()
            x0, y0, x1, y1 = centred_crop(alpha, CROPS[name])
            truth = np.round(alpha[y0:y1, x0:x1] * 255).astype(np.uint8)
            valid = photo.sample.valid()
            ignore = None if valid is None else np.where(valid[y0:y1, x0:x1], 0, 255).astype(np.uint8)
            stem = f"{part[0]}{i:02d}-{photo.sample.stem}-{name.replace(':', 'x')}"
            items.append(Item(stem, part, photo.sample.category, photo.sample.subject,
                              photo.pixels()[y0:y1, x0:x1], truth, ignore,
                              f"{name} crop [{x0},{y0},{x1},{y1}] of {photo.sample.set}/{photo.sample.stem}"))
    return items


def fingerprint(root: pathlib.Path) -> str:
    """Names the generated sets by what they are made from (the sources' meta files) and how."""
    digest = hashlib.sha256(f"v{VERSION} seed {SEED} {sorted(COUNTS.items())} {sorted(TUNED_EXTRA.items())}".encode())
    for name in datasets.SETS:
        digest.update((root / name / "meta.csv").read_bytes())
    return digest.hexdigest()[:12]


def folder(root: pathlib.Path) -> pathlib.Path:
    from modelprep.fetch import cache_dir

    return cache_dir() / "bench" / "generated" / fingerprint(root)


def build(root: pathlib.Path, out: pathlib.Path | None = None, log=print) -> pathlib.Path:
    """Makes the generated sets under `out` (default: folder(root)) unless already there; returns
    the folder holding them (one sub-folder per set)."""
    out = out or folder(root)
    if (out / ".complete").is_file():
        return out
    log(f"generating {', '.join(SETS)} into {out} (seed {SEED})")
    # Made beside it and renamed into place: a second run started meanwhile (the tuning sweep
    # beside make bench-quality) never reads a half-written image.
    staging = out.with_name(f"{out.name}.{os.getpid()}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    photos = {name: real_photos(root, name) for name in datasets.SETS}
    scenery = [p for name in datasets.SETS for p in photos[name]  # backgrounds from either set
               if (name, p.sample.stem) not in NOT_BACKGROUNDS]
    for set_name in SETS:
        rng = random.Random(f"{SEED}/{set_name}")
        source = photos[SOURCE[set_name]]
        if set_name.startswith("composites"):
            items = make_composites(set_name, source, scenery, COUNTS[set_name], rng, TUNED_EXTRA.get(set_name, 0))
        else:
            items = make_crops(source, COUNTS[set_name], rng)
        write_set(staging / set_name, items)
    (staging / ".complete").write_text("")
    if out.is_dir() and not (out / ".complete").is_file():
        shutil.rmtree(out, ignore_errors=True)  # a run that stopped part-way wrote there itself
    try:
        staging.rename(out)
    except OSError:  # another run put its own (the same sets) there first
        if not (out / ".complete").is_file():
            raise
        shutil.rmtree(staging, ignore_errors=True)
    return out


def write_set(base: pathlib.Path, items: list[Item]) -> None:
    for sub in ("images", "masks", "ignore"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    with (base / "meta.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["stem", "image", "mask", "category", "subject", "part", "width", "height", "notes"])
        for item in items:
            # zlib's fastest level: the same pixels, the sets built in half the time (these files
            # live in the cache, where size matters little).
            Image.fromarray(item.photo).save(base / "images" / f"{item.stem}.png", compress_level=1)
            Image.fromarray(item.truth).save(base / "masks" / f"{item.stem}.png", compress_level=1)
            if item.ignore is not None and item.ignore.any():
                Image.fromarray(item.ignore).save(base / "ignore" / f"{item.stem}.png", compress_level=1)
            writer.writerow([item.stem, f"images/{item.stem}.png", f"masks/{item.stem}.png", item.category,
                             item.subject, item.part, item.photo.shape[1], item.photo.shape[0], item.note])
