"""The engine's one entry point: bytes + RemovalOptions in, RemovalResult out.

Geometry, in the order remove.bg applies it: the requested `size` (max_output_pixels) scales the
whole upright image first ("sized" pixels: every box, crop and margin below is in them); `roi`
limits what the net looks at (outside is background); `crop` shrinks the canvas to the
foreground box plus margins; `scale` / `position` size and move the subject within that canvas;
the format's own cap scales the canvas last. Colour and alpha are
each resampled once, straight from the decoded photo and from the net's matte, to the final
pixels, so no full-size intermediate is made that the output does not need.

`Engine.remove` keeps all state local: one Engine (one onnxruntime session) serves any number
of threads at once.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import cv2
import numpy as np
from PIL import Image

from engine import compose, encode, foreground, refine
from engine.decode import DEFAULT_MAX_PIXELS, decode, pixels_of, probe
from engine.matte import (CLEAR_HOLE, FOUND_LEVEL, coarse_box, drop_small_additions, foreground_box, join_views,
                          stretch_found, upsample, views_agreement)
from engine.config import EngineConfig
from engine.models import manifest, providers
from engine.models.families import Segmenter
from engine.types import EngineError, ForegroundType, ImageInfo, Length, RemovalOptions, RemovalResult

Rect = tuple[float, float, float, float]  # x0, y0, x1, y1

# (the region of the photo the net saw, RGB, longest side <= 1024; the net's float32 matte of
# that region in [0, 1], at the net's resolution) -> "person" | "product" | "animal" |
# "car" | "other", optionally followed by "-" and a finer class ("animal-dog"; type_level 2).
Classifier = Callable[[Image.Image, np.ndarray], str]

_CLASSIFIER_VIEW = 1024
# From this aspect ratio (long side / short side) on, the net also sees the photo squashed into
# its square, as it was trained, and the two mattes are joined (engine/matte.join_views): on wide
# and tall frames the aspect-kept view alone loses small subjects the squashed one finds (issue 15).
# Both chosen on the tuned part of bench/quality's sets by bench/quality/tune.py (bench-results/tune.md).
SQUARE_VIEW_FROM = 1.4
VIEW_JOIN = "max-open"
# From this aspect ratio on, the net also sees square tiles of the photo along its long side
# (side: the short side, evenly overlapping), joined the same way: a subject at the side of a
# 21:9 frame that no whole view finds fills a good part of a tile, but so does a crack or a pebble.
# Swept like the others; off (math.inf) on the tuned part as it stands.
TILE_VIEWS_FROM = math.inf
# At most this many tiles (a 21:9 frame takes 3): beyond, they lengthen instead of multiplying, so
# an 8000x4 strip costs 4 inferences, not 2000 (each net pass is the same price at any tile size).
MAX_TILES = 4
# On a frame the squashed view also sees (from SQUARE_VIEW_FROM), the tiles run too when the whole
# views found (almost) nothing: a solid area under this share of the frame. A tile's false find then
# costs nothing (there was no subject to lose), and a subject at the frame's side is found (swept
# like the others). Squarer frames, where a tile is most of the photo, keep one inference.
TILES_WHEN_UNDER = 0.0005
# The tiles run too when the two whole views disagree on where the subject is: the IoU of their
# solid areas under this (one found a mountain, the other a plant at the frame's side, or
# nothing). Swept like the others; 0: never.
TILES_WHEN_VIEWS_AGREE_UNDER = 0.4
# Tiles that look for that reason alone add only what no whole view found (the "components"
# join), and only where at least this share of it is sure (>= 0.9): over a pile of roses a tile
# finds grey mush, a subject the whole views missed comes solid. Swept with it.
DISAGREED_TILE_SURE = 0.1
# What only the further views found is kept when its solid area is at least this share of the
# frame (swept; 0: all of it).
ADDED_AT_LEAST = 0.0
# On a frame the squashed view also sees, when the edge work kept (alpha >= 128) under this share
# of the area the whole views found (matte > 0.1), the tiles look too, once: a plant the net greyed
# over at a 21:9 frame's side comes out with a few solid pixels, or none (always retried). Swept
# like the others, but judged by issue 15's checks: 0, an empty answer only (README, Quality).
RETRY_WHEN_KEPT_UNDER = 0.0
# X-Type beside the rest of each request: more workers than the server runs requests at once
# (CLEARBG_ENGINE_WORKERS, default 2), so none waits for another's classifier.
_X_TYPE = ThreadPoolExecutor(max_workers=4, thread_name_prefix="x-type")
_FOREGROUND_TYPES = ("person", "product", "animal", "car", "other")


def classify_other(image: Image.Image, matte: np.ndarray) -> str:
    """The classifier used when none is given: every subject is "other".

    A real detector plugs in through `Engine(classify=...)` (see engine/classify/).
    """
    return "other"


def _intersect(a: Rect, b: Rect) -> Rect | None:
    x0, y0, x1, y1 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def _place(part: Rect, canvas: Rect, scale: tuple[float, float], out: tuple[int, int]) -> tuple[int, int, int, int]:
    """Output pixel rectangle of `part` (a sub-rectangle of `canvas`), clamped to the output."""
    kx, ky = scale
    return (
        min(out[0], max(0, round((part[0] - canvas[0]) * kx))),
        min(out[1], max(0, round((part[1] - canvas[1]) * ky))),
        min(out[0], max(0, round((part[2] - canvas[0]) * kx))),
        min(out[1], max(0, round((part[3] - canvas[1]) * ky))),
    )


def _seen_part(
    region: Rect, canvas: Rect, scale: tuple[float, float], out: tuple[int, int]
) -> tuple[Rect, tuple[int, int, int, int]] | None:
    """The part of the canvas the net saw (sized pixels) and its output pixel rectangle; None
    when none of the output shows it."""
    seen = _intersect(canvas, region)
    if seen is None:
        return None
    placed = _place(seen, canvas, scale, out)
    if placed[2] <= placed[0] or placed[3] <= placed[1]:
        return None
    return seen, placed


def resolve_roi(roi: tuple[Length, Length, Length, Length], width: int, height: int) -> Rect:
    """`x1 y1 x2 y2` (px or % of the image) -> pixel rectangle, checked against the image."""
    x0, y0 = roi[0].resolve(width), roi[1].resolve(height)
    x1, y1 = roi[2].resolve(width), roi[3].resolve(height)
    if min(x0, y0, x1, y1) < 0 or not all(map(math.isfinite, (x0, y0, x1, y1))):
        raise EngineError("invalid_roi", "roi values must be zero or positive (x1 y1 x2 y2).")
    if x1 > width + 0.5 or y1 > height + 0.5 or x0 > width or y0 > height:
        raise EngineError(
            "roi_exceeds_bounds", f"The roi ({x0:g} {y0:g} {x1:g} {y1:g}) exceeds the image ({width}x{height})."
        )
    x1, y1 = min(x1, width), min(y1, height)
    if x1 - x0 < 1 or y1 - y0 < 1:
        raise EngineError("roi_region_empty", "The roi is empty: x2 must exceed x1 and y2 must exceed y1.")
    return x0, y0, x1, y1


class Engine:
    def __init__(
        self,
        segmenter: Segmenter,
        *,
        classify: Classifier | None = None,
        estimate_foreground: compose.ForegroundEstimator = foreground.estimate_foreground,
        refine_edges: bool = True,
        max_input_pixels: int = DEFAULT_MAX_PIXELS,
        square_view_from: float = SQUARE_VIEW_FROM,
        view_join: str = VIEW_JOIN,
        tile_views_from: float = TILE_VIEWS_FROM,
        tiles_when_under: float = TILES_WHEN_UNDER,
        tiles_when_views_agree_under: float = TILES_WHEN_VIEWS_AGREE_UNDER,
        disagreed_tile_sure: float = DISAGREED_TILE_SURE,
        added_at_least: float = ADDED_AT_LEAST,
        retry_when_kept_under: float = RETRY_WHEN_KEPT_UNDER,
        hole_fill_over: float = refine.HOLE_FILL_OVER,
        clear_hole_under: float = CLEAR_HOLE,
        edge_style: refine.EdgeStyle = refine.STYLE,
    ):
        self.segmenter = segmenter
        self.square_view_from = square_view_from  # math.inf: the aspect-kept view alone
        self.view_join = view_join
        self.tile_views_from = tile_views_from
        self.tiles_when_under = tiles_when_under
        self.tiles_when_views_agree_under = tiles_when_views_agree_under
        self.disagreed_tile_sure = disagreed_tile_sure
        self.added_at_least = added_at_least
        self.retry_when_kept_under = retry_when_kept_under
        self.hole_fill_over = hole_fill_over  # which small holes clean_matte fills (engine/refine)
        self.clear_hole_under = clear_hole_under  # which holes max-open keeps open (engine/matte)
        self.edge_style = edge_style  # engine/refine's settings (bench/quality/tune.py sweeps them)
        self.classify: Classifier = classify or classify_other
        self.estimate_foreground = estimate_foreground
        # engine/refine: specks and pinholes out of the net's matte, then the edge refined at the
        # output's resolution in the style of the foreground type (off: the net's matte resampled).
        self.refine_edges = refine_edges
        self.max_input_pixels = max_input_pixels

    @classmethod
    def from_config(cls, config: EngineConfig, **kwargs) -> "Engine":
        """The engine `config` names, from this machine's model manifest (`make model` wrote it):
        the candidate it chose, or the one `config.variant` / `config.provider` force."""
        found = manifest.load(config.cache_dir, manifest.model_id(config.checkpoint, config.model_path),
                              model_path=config.model_path)
        return cls.from_manifest(found, config, **kwargs)

    @classmethod
    def from_manifest(cls, found: manifest.Manifest, config: EngineConfig, **kwargs) -> "Engine":
        provider = providers.provider_name(config.provider) if config.provider else None
        candidates = found.preference(config.variant, provider)
        segmenter = Segmenter(candidates, found.family, config.threads, config.concurrent_inferences,
                              found.openvino_cache, config.batch_max, config.batch_wait_ms,
                              matte_cache_bytes=config.matte_cache_mb * 2**20, mirror=config.mirror,
                              looks=config.looks)
        if config.xtype and "classify" not in kwargs and {"detector", "classifier"} <= found.xtype.keys():
            from engine.classify import ForegroundClassifier

            classifier = ForegroundClassifier(found.xtype["detector"], found.xtype["classifier"], found.openvino_cache)
            kwargs["classify"] = classifier.label
        return cls(segmenter, **kwargs)

    def warm_up(self) -> None:
        """Inferences and one small edge refinement, so the first request does not pay for
        onnxruntime's lazy set-up or OpenCV's and the edge loops' first calls."""
        # A session's first run takes up to twice a later one; a further shape's first sight
        # costs a net that takes any shape little more (README, Speed). Start-up to healthy is
        # kept short: the commonest shape, 4:3 landscape, is seen before serving.
        self.segmenter.warm_up([self._first_shape()])
        if self.refine_edges:
            pixels = np.full((64, 64, 3), 128, np.uint8)
            alpha = np.zeros((64, 64), np.uint8)
            alpha[:, 32:], alpha[:, 30:34] = 255, 128
            self.estimate_foreground(pixels, refine.refine_alpha(pixels, alpha))

    def open_lanes(self) -> int:
        """Opens the further inference lanes `concurrent_inferences` asked for, warmed, and
        shows the first session the shapes warm_up left out, if any (seconds of work: a server
        calls it once it serves, so start-up stays short). Returns how many lanes opened."""
        shapes = self._warm_shapes()
        opened = self.segmenter.open_lanes(shapes)
        # warm_up showed the all-core session the first shape.
        self.segmenter.warm_up_free([shape for shape in shapes if shape != self._first_shape()])
        return opened

    def describe(self) -> dict[str, str]:
        """What runs, for the operator's metrics: the prepared variant and the execution provider."""
        return {"variant": self.segmenter.candidate.name, "provider": self.segmenter.provider}

    def matte_cache_counts(self) -> tuple[int, int]:
        """Net inputs answered from the cache, and those the net ran for (since start)."""
        return self.segmenter.cache.hits, self.segmenter.cache.misses

    def _warm_shapes(self) -> list[tuple[int, int]]:
        """The shapes each session runs once before it serves. On the CPU only 4:3: there a
        session's first run at a new shape costs little more than a later one, and each warm run
        costs a whole inference at every start (README, Speed). A batching (GPU) session sets a
        shape up slowly on first sight, so it sees the square and portrait too."""
        if self.segmenter.batcher is None:
            return [self._first_shape()]
        return sorted({self.segmenter.input_shape(w, h) for w, h in ((4, 4), (4, 3), (3, 4))})

    def _first_shape(self) -> tuple[int, int]:
        """The net's input shape for 4:3 landscape, the commonest photo: warmed before serving."""
        return self.segmenter.input_shape(4, 3)

    def probe(self, data: bytes) -> ImageInfo:
        return probe(data, self.max_input_pixels)

    def remove(self, data: bytes, options: RemovalOptions) -> RemovalResult:
        return self._remove(data, options)

    def _remove(self, data: bytes, options: RemovalOptions, force_tiles: bool = False,
                stretch: bool = False) -> RemovalResult:
        """remove(); `force_tiles`: the square tiles look too, wherever the squashed view would;
        `stretch`: the views' matte scaled to full before the edge work (matte.stretch_found)."""
        info = self.probe(data)
        width, height = info.width, info.height

        # Sized space: the whole image scaled to the caller's `size`.
        sized_w, sized_h = encode.fit((width, height), options.max_output_pixels or math.inf)
        to_sized = (sized_w / width, sized_h / height)
        full: Rect = (0.0, 0.0, float(sized_w), float(sized_h))

        roi = resolve_roi(options.roi, width, height) if options.roi is not None else None
        region: Rect = (
            (roi[0] * to_sized[0], roi[1] * to_sized[1], roi[2] * to_sized[0], roi[3] * to_sized[1]) if roi else full
        )

        if options.bg_image is not None:  # a bad background fails before the costly inference
            self._probe_background(options.bg_image)

        net = self.segmenter.size
        # A JPEG need not be decoded beyond what both the output and the net can use.
        min_size = None if roi else (max(sized_w, min(width, net)), max(sized_h, min(height, net)))
        image = decode(data, self.max_input_pixels, min_size=min_size)
        to_image = (image.width / sized_w, image.height / sized_h)

        view = self._net_view(image, region, to_image, self.segmenter.input_shape)
        matte, net_ran, could_tile = self._matte(image, region, to_image, view, options.cache_scope, force_tiles)
        found = could_tile and self.refine_edges and bool((matte >= 0.5).any())
        # What the whole views found, in sized pixels: the edge work's answer is weighed against it
        # (counted only when the share is on: at 0 only an empty answer retries).
        found_area = (np.count_nonzero(matte > 0.1) / matte.size * (region[2] - region[0]) * (region[3] - region[1])
                      if found and self.retry_when_kept_under > 0 else 0.0)
        views = matte  # as the views found it, for the empty-answer check below
        if self.refine_edges:
            matte = refine.clean_matte(stretch_found(matte) if stretch else matte, hole_fill_over=self.hole_fill_over)

        # canvas: the picture's frame (sized pixels); source: the sized-pixel rectangle drawn
        # into it (the same, unless scale/position move the subject within the frame).
        canvas = source = full
        placed = options.crop or options.scale_percent is not None or options.position is not None
        # X-Type names the subject for the headers only: it runs beside the rest of the request.
        typing = _X_TYPE.submit(self._foreground_type, options, image, region, to_image, view, matte)
        refined = (image, to_image) if self.refine_edges else None
        subject = self._subject_box(matte, region, refined, self.edge_style) if placed else None
        if subject is not None:
            if options.crop:
                canvas = source = self._crop(subject, options)
            if options.scale_percent is not None or options.position is not None:
                source = self._place_subject(subject, canvas, options)

        cap_format = self._format_for_cap(options)
        canvas_w, canvas_h = canvas[2] - canvas[0], canvas[3] - canvas[1]
        out = encode.fit(
            (canvas_w, canvas_h),
            min(encode.FORMAT_MAX_PIXELS[cap_format], options.max_output_pixels or math.inf),
            encode.FORMAT_MAX_SIDE[cap_format],
        )
        scale = (out[0] / (source[2] - source[0]), out[1] / (source[3] - source[1]))
        canvas = source

        # The part of the output the net saw (the rest is outside the roi: background).
        seen = _seen_part(region, canvas, scale, out)
        alpha = self._render_alpha(matte, region, seen, out)
        colour, source_alpha = self._render_colour(image, to_image, full, canvas, scale, out)
        guide = None  # the colour on the edge steps' working grid, made once for both
        if self.refine_edges:
            guide = self._refine(alpha, colour, seen, out, self.edge_style)
            # The edge work can leave little or nothing half opaque of a find that is all
            # hesitation (a plant against a 21:9 frame's side: the net grey over it, a few pixels
            # solid). Rather than answer with that, the tiles look too (issue 15), once.
            empty = int(alpha.max()) < 128  # nothing half opaque (one pass over the answer, for both checks)
            if found and (empty or self._kept_little(alpha, scale, found_area)):
                return self._remove(data, options, force_tiles=True)
            # Still nothing half opaque where the net found something (it hesitated over all of
            # it, a few pixels at most solid): its find, stretched, rather than an empty answer.
            if empty and not stretch and float(views.max()) >= FOUND_LEVEL:
                return self._remove(data, options, force_tiles=force_tiles, stretch=True)
        if source_alpha is not None:  # the upload's own transparency stays transparent
            alpha = ((alpha.astype(np.uint16) * source_alpha + 127) // 255).astype(np.uint8)
        box = foreground_box(alpha)

        if options.channels == "rgba":
            colour = self.estimate_foreground(colour, alpha, guide)
        if options.shadow_opacity:  # after the box: X-Foreground-* is the subject's, not its shadow's
            colour, alpha = compose.drop_shadow(colour, alpha, options.shadow_opacity, box.height)
        data_out, content_type = self._encode(colour, alpha, image.info.get("icc_profile"), options, out)
        kind, label = typing.result()
        return RemovalResult(
            data=data_out,
            content_type=content_type,
            width=out[0],
            height=out[1],
            foreground_type=kind,  # type: ignore[arg-type]
            foreground=box,
            input=info,
            foreground_label=label,
            net_ran=net_ran,
        )

    # -- steps --------------------------------------------------------------------------------

    def _kept_little(self, alpha: np.ndarray, scale: tuple[float, float], found_area: float) -> bool:
        """Whether the answer's solid area (alpha >= 128, in sized pixels at `scale` output pixels
        each) is under `retry_when_kept_under` of `found_area` (an answer with none the caller
        has already sent to the tiles)."""
        if self.retry_when_kept_under <= 0:
            return False
        step = max(1, math.isqrt(alpha.size >> 20))  # counted on about a megapixel: a share, not a mask
        kept = np.count_nonzero(alpha[::step, ::step] >= 128) * step * step / (scale[0] * scale[1])
        return kept < self.retry_when_kept_under * found_area

    @staticmethod
    def _format_for_cap(options: RemovalOptions) -> str:
        """The format whose size cap applies; `auto` is PNG unless an opaque background rules alpha out."""
        fmt = options.output_format
        if options.channels == "alpha":
            return fmt if fmt in ("jpg", "webp") else "png"
        if fmt == "auto":
            opaque_bg = options.bg_image is not None or (options.bg_color is not None and options.bg_color[3] == 255)
            return "jpg" if opaque_bg else "png"
        return fmt

    def _matte(
        self, image: Image.Image, region: Rect, to_image: tuple[float, float], view: Image.Image, scope: str = "",
        force_tiles: bool = False,
    ) -> tuple[np.ndarray, bool, bool]:
        """The net's matte of the region at the aspect-kept view's shape; where the region is at
        least `square_view_from` wide or tall, joined (`view_join`) with the matte of the squashed
        square view, resampled to that shape, and from `tile_views_from` on (or from
        `square_view_from` when the whole views found a solid area under `tiles_when_under` of the
        frame, or their solid areas' IoU is under `tiles_when_views_agree_under`: then a tile adds
        only what no whole view found, and only when `disagreed_tile_sure` of it is sure; or when
        `force_tiles`) with those of square tiles along the long side. And whether the net ran for
        any of them (else all were cached), and whether the tiles could still look with nothing held
        back (the region is wide or tall enough for the squashed view, and they did not, or only
        as disagreement tiles)."""
        matte, held = self.segmenter.matte_held(view, scope)
        ran = not held
        width, height = region[2] - region[0], region[3] - region[1]
        side = self.segmenter.size
        if self.segmenter.fixed_shape is not None or view.size == (side, side):
            return matte, ran, False  # the net sees the square already
        aspect = max(width, height) / min(width, height)
        kept = matte
        disagree = False
        if aspect >= self.square_view_from:
            square = self._net_view(image, region, to_image, lambda w, h: (side, side))
            squashed, held = self.segmenter.matte_held(square, scope)
            ran |= not held
            squashed = cv2.resize(squashed, (matte.shape[1], matte.shape[0]), interpolation=cv2.INTER_AREA)
            # Measured only while the rule is on (0 turns it off, and then nothing pays for it).
            disagree = self.tiles_when_views_agree_under > 0 and (
                views_agreement(matte, squashed) < self.tiles_when_views_agree_under)
            matte = join_views(matte, squashed, self.view_join, clear_under=self.clear_hole_under)
        # The solid area is counted only on frames where the found-nothing tiles may run.
        wide = aspect >= self.square_view_from
        other_reason = aspect >= self.tile_views_from or (wide and force_tiles) or (
            wide and np.count_nonzero(matte >= 0.5) < self.tiles_when_under * matte.size
        )
        tiles = other_reason or disagree
        join, sure = (self.view_join, 0.0) if other_reason else ("components", self.disagreed_tile_sure)
        if tiles:
            matte = matte.copy() if matte is kept else matte
            for tile, (x0, y0, x1, y1) in self._tiles(region, matte.shape):
                tile_view = self._net_view(image, tile, to_image, lambda w, h: (side, side))
                found, held = self.segmenter.matte_held(tile_view, scope)
                ran |= not held
                found = cv2.resize(found, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)
                matte[y0:y1, x0:x1] = join_views(matte[y0:y1, x0:x1], found, join, sure, self.clear_hole_under)
        if matte is not kept:
            matte = drop_small_additions(kept, matte, self.added_at_least)
        return matte, ran, wide and not other_reason

    @staticmethod
    def _tiles(region: Rect, grid: tuple[int, int]) -> list[tuple[Rect, tuple[int, int, int, int]]]:
        """Square tiles of the region along its long side, ceil(aspect) of them evenly spaced from
        one end to the other (from MAX_TILES on, that many, each long_side / MAX_TILES long): each
        tile (sized pixels) and the cells of the matte grid (h, w) it covers, their edges rounded to
        whole cells (the tile is then exactly those cells)."""
        width, height = region[2] - region[0], region[3] - region[1]
        wide = width >= height
        long_side, short = (width, height) if wide else (height, width)
        count = min(MAX_TILES, math.ceil(long_side / short - 1e-6))
        length = max(short, long_side / count)
        cells = grid[1] if wide else grid[0]
        per_px = cells / long_side
        tiles = []
        for i in range(count):
            start = round(i * (long_side - length) / max(1, count - 1) * per_px)
            end = min(cells, start + max(1, round(length * per_px)))
            a, b = start / per_px, end / per_px
            if wide:
                tiles.append(((region[0] + a, region[1], region[0] + b, region[3]), (start, 0, end, grid[0])))
            else:
                tiles.append(((region[0], region[1] + a, region[2], region[1] + b), (0, start, grid[1], end)))
        return tiles

    @staticmethod
    def _net_view(
        image: Image.Image, region: Rect, to_image: tuple[float, float], input_shape: Callable[[int, int], tuple[int, int]]
    ) -> Image.Image:
        """The region the net sees, resized to the net's input shape for it (Segmenter.input_shape);
        transparency shown over white."""
        box = (region[0] * to_image[0], region[1] * to_image[1], region[2] * to_image[0], region[3] * to_image[1])
        shape = input_shape(max(1, round(box[2] - box[0])), max(1, round(box[3] - box[1])))
        # Enlarging up to 3x in pixels, LANCZOS gives the net a sharper view than BILINEAR
        # (bench/quality, alphamatting14, ~2-2.6x: net alone SAD 59.8 -> 57.1, Grad 28.5 -> 25.5);
        # enlarging more it rings (grabcut50's small JPEGs, 3.4-6.8x: MSE 29.0 -> 29.7). Shrinking,
        # BILINEAR already averages every pixel and costs a third of LANCZOS (70 ms less at 12 MP).
        pixels, net_pixels = (box[2] - box[0]) * (box[3] - box[1]), shape[0] * shape[1]
        sharp = net_pixels / 3 <= pixels <= net_pixels
        # Shrinking by less than half on each side (a 1 MP photo: 1176x850 -> 1024x736) from
        # whole pixels, OpenCV's bilinear filter samples enough of the photo: mean IoU against
        # the truth within +-0.0015 of Pillow's antialiased one (../shared/quality scaled to
        # 1.15, 1.5 and 1.9x the net's side) at 2.5-3.7 ms instead of 10-17 ms, one core.
        mild = shape[0] <= box[2] - box[0] < 2 * shape[0] and shape[1] <= box[3] - box[1] < 2 * shape[1]
        if mild and image.mode == "RGB" and all(float(v).is_integer() for v in box):
            whole = box == (0, 0, image.width, image.height)
            part = image if whole else image.crop(tuple(int(v) for v in box))
            return Image.fromarray(cv2.resize(pixels_of(part), shape, interpolation=cv2.INTER_LINEAR))
        view = image.resize(shape, Image.Resampling.LANCZOS if sharp else Image.Resampling.BILINEAR, box=box)
        if view.mode == "RGBA":
            white = Image.new("RGB", view.size, (255, 255, 255))
            view = Image.composite(view.convert("RGB"), white, view.getchannel("A"))
        return view

    @staticmethod
    def _subject_box(
        matte: np.ndarray, region: Rect, refined: tuple[Image.Image, tuple[float, float]] | None = None,
        style: refine.EdgeStyle = refine.STYLE,
    ) -> Rect | None:
        """Foreground box, exact in sized pixels (alpha above the threshold); None if there is none.

        Found from the net's matte first, then refined by resampling only that area, so a
        full-size alpha is never made just to measure it.
        """
        rough = coarse_box(matte)
        if rough is None:
            return None
        net_h, net_w = matte.shape
        per_px = (net_w / (region[2] - region[0]), net_h / (region[3] - region[1]))  # net px per sized px
        reach = 2 + math.ceil(max(1.0, *per_px))
        if refined is not None:
            # The refined edge may reach a little further out (engine/refine), and the part is
            # refined with the context the whole picture's refinement would give its edge, so
            # that the box found here is the one a whole render reports.
            image, to_image = refined
            scale = refine.work_scale(round(image.width / to_image[0]), round(image.height / to_image[1]))
            reach += math.ceil(refine.REACH * max(1.0, *per_px)) + math.ceil(refine.context(style) * scale * max(per_px))
        mx0, my0 = max(0, rough[0] - reach), max(0, rough[1] - reach)
        mx1, my1 = min(net_w, rough[2] + reach), min(net_h, rough[3] + reach)
        # The same area in sized pixels, on whole pixels, inside the region.
        x0 = max(math.floor(region[0] + mx0 / per_px[0]), math.ceil(region[0]))
        y0 = max(math.floor(region[1] + my0 / per_px[1]), math.ceil(region[1]))
        if refined is not None:  # even, as engine/refine's grids on the whole picture
            x0, y0 = max(x0 & ~1, math.ceil(region[0])), max(y0 & ~1, math.ceil(region[1]))
        x1 = min(math.ceil(region[0] + mx1 / per_px[0]), math.floor(region[2]))
        y1 = min(math.ceil(region[1] + my1 / per_px[1]), math.floor(region[3]))
        if x1 <= x0 or y1 <= y0:
            return None
        patch = upsample(
            matte,
            (x1 - x0, y1 - y0),
            ((x0 - region[0]) * per_px[0], (y0 - region[1]) * per_px[1],
             (x1 - region[0]) * per_px[0], (y1 - region[1]) * per_px[1]),
        )
        if refined is not None:
            colour = image.convert("RGB") if image.mode != "RGB" else image
            colour = colour.resize(
                (x1 - x0, y1 - y0), Image.Resampling.BICUBIC,
                box=(x0 * to_image[0], y0 * to_image[1], x1 * to_image[0], y1 * to_image[1]),
            )
            patch = refine.refine_alpha(pixels_of(colour), patch, style=style)
        found = foreground_box(patch)
        if found.width == 0:
            return None
        left, top = x0 + found.left, y0 + found.top
        return (float(left), float(top), float(left + found.width), float(top + found.height))

    @staticmethod
    def _crop(subject: Rect, options: RemovalOptions) -> Rect:
        """The subject's box grown by crop_margin (px, or % of the subject's size)."""
        width, height = subject[2] - subject[0], subject[3] - subject[1]
        m_top, m_right, m_bottom, m_left = options.crop_margin
        return (
            subject[0] - round(m_left.resolve(width)),
            subject[1] - round(m_top.resolve(height)),
            subject[2] + round(m_right.resolve(width)),
            subject[3] + round(m_bottom.resolve(height)),
        )

    @staticmethod
    def _place_subject(subject: Rect, canvas: Rect, options: RemovalOptions) -> Rect:
        """The sized-pixel rectangle that maps onto the canvas once the subject is scaled/moved.

        `scale` sizes the subject's box to that percentage of the canvas (its tighter side);
        `position` puts it at (h, v) percent of the free space (50, 50: centred, the default).
        """
        canvas_w, canvas_h = canvas[2] - canvas[0], canvas[3] - canvas[1]
        width, height = subject[2] - subject[0], subject[3] - subject[1]
        zoom = 1.0
        if options.scale_percent is not None:
            zoom = options.scale_percent / 100.0 * min(canvas_w / width, canvas_h / height)
        if options.position == "original":  # the subject keeps its share of the free space
            free_w, free_h = canvas_w - width, canvas_h - height
            horizontal = 100.0 * (subject[0] - canvas[0]) / free_w if free_w > 0 else 50.0
            vertical = 100.0 * (subject[1] - canvas[1]) / free_h if free_h > 0 else 50.0
        else:
            horizontal, vertical = options.position if options.position is not None else (50.0, 50.0)
        left = horizontal / 100.0 * (canvas_w - width * zoom)  # canvas pixels before the subject
        top = vertical / 100.0 * (canvas_h - height * zoom)
        origin_x, origin_y = subject[0] - left / zoom, subject[1] - top / zoom
        return (origin_x, origin_y, origin_x + canvas_w / zoom, origin_y + canvas_h / zoom)

    @staticmethod
    def _render_alpha(
        matte: np.ndarray, region: Rect, seen: tuple[Rect, tuple[int, int, int, int]] | None, out: tuple[int, int]
    ) -> np.ndarray:
        alpha = np.zeros((out[1], out[0]), dtype=np.uint8)
        if seen is None:
            return alpha
        seen, (ox0, oy0, ox1, oy1) = seen
        net_h, net_w = matte.shape
        per_px = (net_w / (region[2] - region[0]), net_h / (region[3] - region[1]))
        alpha[oy0:oy1, ox0:ox1] = upsample(
            matte,
            (ox1 - ox0, oy1 - oy0),
            ((seen[0] - region[0]) * per_px[0], (seen[1] - region[1]) * per_px[1],
             (seen[2] - region[0]) * per_px[0], (seen[3] - region[1]) * per_px[1]),
        )
        return alpha

    @staticmethod
    def _refine(
        alpha: np.ndarray, colour: np.ndarray, seen: tuple[Rect, tuple[int, int, int, int]] | None,
        out: tuple[int, int], style: refine.EdgeStyle = refine.STYLE,
    ) -> np.ndarray | None:
        """Refines `alpha` in place, inside the part of the output the net saw (outside the roi
        stays background). Returns the whole colour on the working grid when it made it."""
        if seen is None:
            return None
        ox0, oy0, ox1, oy1 = seen[1]
        whole = (ox0, oy0, ox1, oy1) == (0, 0, out[0], out[1])
        guide = refine.working_colour(colour) if whole else None
        alpha[oy0:oy1, ox0:ox1] = refine.refine_alpha(colour[oy0:oy1, ox0:ox1], alpha[oy0:oy1, ox0:ox1], guide, style)
        return guide

    @staticmethod
    def _render_colour(
        image: Image.Image, to_image: tuple[float, float], full: Rect, canvas: Rect,
        scale: tuple[float, float], out: tuple[int, int],
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """uint8 RGB of the canvas at `out` (black beyond the photo) and the photo's own alpha, if any.

        Colour and alpha are resampled apart: resizing RGBA premultiplies in 8 bits, which would
        darken the colour of faint edge pixels. The whole photo shrunk to the output (the usual
        case: `size` or the format's cap) goes through OpenCV on all cores: bicubic when it
        shrinks by less than half (12 -> 10 MP: 8 ms, where Pillow's bicubic took ~150 ms), the
        area filter, which averages every pixel, when it shrinks more. A part of the photo, or an
        enlargement, goes through Pillow's resize, which takes a fractional box.
        """
        has_alpha = image.mode == "RGBA"
        visible = _intersect(canvas, full)
        placed = _place(visible, canvas, scale, out) if visible is not None else (0, 0, 0, 0)
        ox0, oy0, ox1, oy1 = placed
        size = (ox1 - ox0, oy1 - oy0)
        if size[0] <= 0 or size[1] <= 0:
            return np.zeros((out[1], out[0], 3), np.uint8), (np.zeros((out[1], out[0]), np.uint8) if has_alpha else None)
        box = (visible[0] * to_image[0], visible[1] * to_image[1], visible[2] * to_image[0], visible[3] * to_image[1])
        whole = max(abs(box[0]), abs(box[1]), abs(box[2] - image.width), abs(box[3] - image.height)) < 1e-6

        def render(picture: Image.Image) -> np.ndarray:
            if whole and size == picture.size:
                return pixels_of(picture)
            if whole and size[0] <= picture.width and size[1] <= picture.height:
                mild = 2 * size[0] > picture.width and 2 * size[1] > picture.height
                return cv2.resize(pixels_of(picture), size, interpolation=cv2.INTER_CUBIC if mild else cv2.INTER_AREA)
            return pixels_of(picture.resize(size, Image.Resampling.BICUBIC, box=box))

        part = render(image.convert("RGB") if has_alpha else image)
        part_alpha = render(image.getchannel("A")) if has_alpha else None
        if placed == (0, 0, *out):  # the photo fills the frame: no canvas
            return part, part_alpha
        colour = np.zeros((out[1], out[0], 3), np.uint8)
        colour[oy0:oy1, ox0:ox1] = part
        source = None
        if part_alpha is not None:
            source = np.zeros((out[1], out[0]), np.uint8)
            source[oy0:oy1, ox0:ox1] = part_alpha
        return colour, source

    def _foreground_type(
        self, options: RemovalOptions, image: Image.Image, region: Rect, to_image: tuple[float, float],
        net_view: Image.Image, matte: np.ndarray,
    ) -> tuple[ForegroundType, str]:
        """(X-Type, finer label): the given type for both, or what the classifier names.

        The classifier looks at what the net saw when the net kept the photo's aspect (no second
        resize of the photo: ~10 ms at 1 MP), else at the region resized with its aspect.
        """
        if options.foreground_type != "auto":
            return options.foreground_type, options.foreground_type
        if self.segmenter.fixed_shape is None:
            view = net_view
        else:
            box = (region[0] * to_image[0], region[1] * to_image[1], region[2] * to_image[0], region[3] * to_image[1])
            size = encode.fit((box[2] - box[0], box[3] - box[1]), math.inf, _CLASSIFIER_VIEW)
            view = image.resize(size, Image.Resampling.BILINEAR, box=box)
            if view.mode != "RGB":
                view = view.convert("RGB")
        label = self.classify(view, matte)
        kind = label.split("-", 1)[0]
        if kind not in _FOREGROUND_TYPES:
            return "other", "other"
        return kind, label  # type: ignore[return-value]

    def _encode(
        self, colour: np.ndarray, alpha: np.ndarray, icc: bytes | None, options: RemovalOptions, out: tuple[int, int]
    ) -> tuple[bytes, str]:
        fmt = options.output_format
        if options.channels == "alpha":
            if fmt == "jpg":
                return encode.jpg(compose.as_image(alpha)), encode.CONTENT_TYPES["jpg"]
            if fmt == "webp":
                return encode.webp(compose.as_image(alpha)), encode.CONTENT_TYPES["webp"]
            return encode.png(alpha), encode.CONTENT_TYPES["png"]

        picture = None  # the cut-out itself, unless over a background
        if options.bg_image is not None:
            picture = compose.over_image(colour, alpha, self._background(options.bg_image, out))
        elif options.bg_color is not None:
            picture = compose.over_colour(colour, alpha, options.bg_color)
        if picture is not None and icc:
            picture.info["icc_profile"] = icc

        if fmt == "auto":
            transparent = picture.mode == "RGBA" if picture is not None else bool(alpha.min() < 255)
            fmt = "png" if transparent else "jpg"
        if fmt == "zip":
            if picture is None:
                return encode.zip_pair(compose.as_image(colour, icc), alpha), encode.CONTENT_TYPES["zip"]
            if picture.mode == "RGBA":
                return encode.zip_pair(picture.convert("RGB"), np.asarray(picture.getchannel("A"))), encode.CONTENT_TYPES["zip"]
            return encode.zip_pair(picture, np.full_like(alpha, 255)), encode.CONTENT_TYPES["zip"]
        if fmt == "jpg":
            if picture is None:
                flat = compose.flatten(colour, alpha)
            elif picture.mode == "RGBA":
                flat = compose.flatten(pixels_of(picture), np.asarray(picture.getchannel("A")))
            else:
                flat = picture
            if icc:
                flat.info["icc_profile"] = icc
            return encode.jpg(flat), encode.CONTENT_TYPES["jpg"]
        if fmt == "webp":
            if picture is None:
                picture = compose.as_image(compose.cutout(colour, alpha), icc)
            return encode.webp(picture), encode.CONTENT_TYPES["webp"]
        if picture is None:
            return encode.png(compose.cutout(colour, alpha), icc), encode.CONTENT_TYPES["png"]
        return encode.png(picture), encode.CONTENT_TYPES["png"]

    def _probe_background(self, data: bytes) -> None:
        try:
            probe(data, self.max_input_pixels)
        except EngineError as error:
            raise EngineError(error.code, f"Background image: {error.detail}") from None

    def _background(self, data: bytes, out: tuple[int, int]) -> Image.Image:
        try:
            return decode(data, self.max_input_pixels, min_size=out)
        except EngineError as error:
            raise EngineError(error.code, f"Background image: {error.detail}") from None
