"""What the net sees (issue 15): wide and tall photos also squashed into the net's square, the
two mattes joined (engine/matte.join_views); near-square photos once, with their aspect kept.

The rule is checked with a recording stand-in for the segmenter (unit); a small subject in a
21:9 frame is checked with the real model, made as bench/quality/generated.py makes its
composites.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from PIL import Image

from engine import refine
from engine.models.families import ISNet
from engine.matte import clear_holes, drop_small_additions, join_views, views_agreement
from engine.pipeline import MAX_TILES, SQUARE_VIEW_FROM, TILE_VIEWS_FROM, TILES_WHEN_VIEWS_AGREE_UNDER, Engine
from engine.types import RemovalOptions

ALPHA = RemovalOptions(channels="alpha", output_format="png")


class Recording:
    """A segmenter that takes any shape (as the prepared variants do): records the view sizes
    it is shown and finds a centred square blob only in the squashed square view."""

    size = 1024
    fixed_shape = None

    def __init__(self):
        self.seen: list[tuple[int, int]] = []

    def input_shape(self, width: int, height: int) -> tuple[int, int]:
        return ISNet().input_shape(width, height, self.size, keep_aspect=True)

    def matte_held(self, image: Image.Image, scope: str = "") -> tuple[np.ndarray, bool]:
        return self.matte(image), False

    def matte(self, image: Image.Image) -> np.ndarray:
        self.seen.append(image.size)
        width, height = image.size
        matte = np.zeros((height, width), np.float32)
        if width == height:
            matte[height // 2 - 40 : height // 2 + 40, width // 2 - 40 : width // 2 + 40] = 1.0
        return matte


def png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (90, 120, 150)).save(out, "PNG")
    return out.getvalue()


def alpha_of(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("L"))


@pytest.mark.parametrize("size", [(1920, 1080), (2520, 1080), (1080, 1920), (1500, 1000)])  # 16:9, 21:9, 9:16, 3:2
def test_wide_and_tall_photos_are_also_seen_squashed_and_what_only_that_view_found_is_kept(size):
    segmenter = Recording()
    result = Engine(segmenter, refine_edges=False).remove(png(*size), ALPHA)
    aspect = max(size) / min(size)
    # Only the squashed view finds anything: the two views disagree, so the tiles look too.
    disagree = TILES_WHEN_VIEWS_AGREE_UNDER > 0
    tiles = math.ceil(aspect) if aspect >= TILE_VIEWS_FROM or disagree else 0
    assert segmenter.seen == [segmenter.input_shape(*size), (1024, 1024)] + [(1024, 1024)] * tiles
    alpha = alpha_of(result.data)
    assert alpha[size[1] // 2, size[0] // 2] == 255  # the square view's subject, in the photo's frame
    assert alpha[5, 5] == 0


class FindsEverywhere(Recording):
    """Finds a centred square blob in every view, whatever its shape."""

    def matte(self, image: Image.Image) -> np.ndarray:
        self.seen.append(image.size)
        width, height = image.size
        matte = np.zeros((height, width), np.float32)
        matte[height // 2 - 40 : height // 2 + 40, width // 2 - 40 : width // 2 + 40] = 1.0
        return matte


@pytest.mark.parametrize("size", [(1600, 1200), (1200, 1600), (1000, 1000), (1300, 1000)])
def test_near_square_photos_are_seen_once_with_their_aspect(size):
    assert max(size) / min(size) < SQUARE_VIEW_FROM
    segmenter = Recording()
    Engine(segmenter, refine_edges=False).remove(png(*size), ALPHA)
    assert segmenter.seen == [segmenter.input_shape(*size)]


def test_the_further_views_can_be_turned_off():
    segmenter = Recording()
    engine = Engine(segmenter, refine_edges=False, square_view_from=math.inf, tile_views_from=math.inf,
                    tiles_when_under=0.0)
    result = engine.remove(png(1920, 1080), ALPHA)
    assert segmenter.seen == [(1024, 576)]
    assert alpha_of(result.data).max() == 0  # the aspect-kept view alone found nothing


class FindsInTilesOnly(Recording):
    """Finds its blob only in a square view that shows part of the photo: a tile (told from the
    squashed view, which shows the whole photo, by the bright patch in the photo's far corner)."""

    def matte(self, image: Image.Image) -> np.ndarray:
        self.seen.append(image.size)
        matte = np.zeros((image.size[1], image.size[0]), np.float32)
        far = np.asarray(image.convert("L"))[-1, -1] > 200
        if image.size[0] == image.size[1] and not far:
            matte[400:600, 400:600] = 1.0
        return matte


def bright_corner(width: int, height: int) -> bytes:
    photo = np.full((height, width, 3), 90, np.uint8)
    photo[-20:, -20:] = 255
    out = io.BytesIO()
    Image.fromarray(photo).save(out, "PNG")
    return out.getvalue()


@pytest.mark.parametrize("size", [(1920, 1080), (2520, 1080), (1080, 1920)])
def test_the_tiles_look_where_the_whole_views_found_nothing(size):
    segmenter = FindsInTilesOnly()
    alpha = alpha_of(Engine(segmenter, refine_edges=False).remove(bright_corner(*size), ALPHA).data)
    tiles = math.ceil(max(size) / min(size))
    assert segmenter.seen == [segmenter.input_shape(*size), (1024, 1024)] + [(1024, 1024)] * tiles
    assert alpha.max() == 255  # a tile's find is kept
    found = FindsEverywhere()  # the whole views find a subject: no tile runs
    Engine(found, refine_edges=False).remove(png(*size), ALPHA)
    assert found.seen == [found.input_shape(*size), (1024, 1024)]


@pytest.mark.parametrize("size", [(8000, 4), (40, 6000)])
def test_a_strip_of_a_photo_costs_a_few_inferences_not_one_per_square(size):
    segmenter = FindsInTilesOnly()  # the whole views find nothing: the tiles look
    Engine(segmenter, refine_edges=False).remove(bright_corner(*size), ALPHA)
    assert segmenter.seen[:2] == [segmenter.input_shape(*size), (1024, 1024)]
    assert segmenter.seen[2:] == [(1024, 1024)] * MAX_TILES  # not 2000 or 150


def test_squarer_frames_keep_one_inference_even_when_nothing_is_found():
    segmenter = Recording()  # finds nothing in the aspect-kept view of a 4:3 photo
    alpha = alpha_of(Engine(segmenter, refine_edges=False).remove(png(1600, 1200), ALPHA).data)
    assert segmenter.seen == [segmenter.input_shape(1600, 1200)] and alpha.max() == 0


@pytest.mark.parametrize("region", [(0, 0, 1920, 1080), (0, 0, 2520, 1080), (0, 0, 1080, 1920), (100, 50, 1300, 650),
                                    (0, 0, 4000, 1000), (0, 0, 8000, 40), (0, 0, 30, 6000)])
def test_tiles_are_squares_spanning_the_long_side_on_whole_matte_cells(region):
    width, height = region[2] - region[0], region[3] - region[1]
    grid = (max(1, round(1024 * height / max(width, height))), max(1, round(1024 * width / max(width, height))))  # (h, w)
    tiles = Engine._tiles(region, grid)
    aspect = max(width, height) / min(width, height)
    assert len(tiles) == min(MAX_TILES, math.ceil(aspect))
    covered = np.zeros(grid, bool)
    for (x0, y0, x1, y1), (c0, r0, c1, r1) in tiles:
        if aspect <= MAX_TILES:
            assert abs((x1 - x0) - (y1 - y0)) <= max(width, height) / 1024 * 1.01  # square to a cell
        else:  # a strip: as many tiles as MAX_TILES allows, each as long as a share of it
            assert abs(max(x1 - x0, y1 - y0) - max(width, height) / MAX_TILES) <= max(width, height) / grid[0 if height > width else 1] * 1.01
        assert region[0] <= x0 < x1 <= region[2] + 1e-6 and region[1] <= y0 < y1 <= region[3] + 1e-6
        covered[r0:r1, c0:c1] = True
        # the tile is exactly the cells it covers
        assert x0 == pytest.approx(region[0] + c0 * width / grid[1]) and x1 == pytest.approx(region[0] + c1 * width / grid[1])
        assert y0 == pytest.approx(region[1] + r0 * height / grid[0]) and y1 == pytest.approx(region[1] + r1 * height / grid[0])
    assert covered.all()


class FindsInTiles(Recording):
    """Finds the bright subject only in a square view it fills at least 8 % of: a tile over it."""

    def matte(self, image: Image.Image) -> np.ndarray:
        self.seen.append(image.size)
        pixels = np.asarray(image.convert("L"), np.float32)
        matte = np.zeros(pixels.shape, np.float32)
        if image.size[0] == image.size[1] and (pixels > 200).mean() >= 0.08:
            matte[pixels > 200] = 1.0
        return matte


def test_a_subject_only_a_tile_finds_is_kept_in_the_photos_frame():
    photo = np.full((1080, 2520, 3), 20, np.uint8)
    photo[600:1000, 2200:2500] = 250  # at the right edge of a 21:9 frame: 4.4 % of it, 10 % of a tile
    out = io.BytesIO()
    Image.fromarray(photo).save(out, "PNG")
    alpha = alpha_of(Engine(FindsInTiles(), refine_edges=False, tile_views_from=2.0).remove(out.getvalue(), ALPHA).data)
    assert alpha[800, 2350] == 255 and alpha[100, 100] == 0 and alpha[800, 1000] == 0
    alone = Engine(FindsInTiles(), refine_edges=False, tile_views_from=math.inf, tiles_when_under=0.0)
    assert alpha_of(alone.remove(out.getvalue(), ALPHA).data).max() == 0
    # Nothing found by the whole views: the tiles look, whatever tile_views_from says.
    rescued = alpha_of(Engine(FindsInTiles(), refine_edges=False, tile_views_from=math.inf).remove(out.getvalue(), ALPHA).data)
    assert rescued[800, 2350] == 255 and rescued[100, 100] == 0


class FindsGreyToo(FindsInTiles):
    """As FindsInTiles, and a large grey area in any square view it fills at least 20 % of (a
    mountain the squashed view takes for the subject)."""

    def matte(self, image: Image.Image) -> np.ndarray:
        matte = super().matte(image)
        pixels = np.asarray(image.convert("L"), np.float32)
        grey = (pixels > 100) & (pixels < 160)
        if image.size[0] == image.size[1] and grey.mean() >= 0.2:
            matte[grey] = 1.0
        return matte


def test_when_the_whole_views_disagree_the_tiles_look():
    photo = np.full((1080, 2520, 3), 20, np.uint8)
    photo[300:1000, 600:1600] = 128  # only the squashed view finds it; the aspect-kept view nothing
    photo[600:1000, 2200:2500] = 250  # only the right-hand tile finds it
    out = io.BytesIO()
    Image.fromarray(photo).save(out, "PNG")
    plain = alpha_of(Engine(FindsGreyToo(), refine_edges=False, tiles_when_views_agree_under=0.0)
                     .remove(out.getvalue(), ALPHA).data)
    assert plain[650, 1100] == 255 and plain[800, 2350] == 0  # found a lot: the found-nothing rule sleeps
    looked = alpha_of(Engine(FindsGreyToo(), refine_edges=False, tiles_when_views_agree_under=0.2)
                      .remove(out.getvalue(), ALPHA).data)
    assert looked[650, 1100] == 255 and looked[800, 2350] == 255 and looked[100, 100] == 0


def test_a_tile_that_looked_because_the_views_disagree_adds_only_a_sure_new_find():
    photo = np.full((1080, 2520, 3), 20, np.uint8)
    photo[300:1000, 600:1600] = 128  # the squashed view's find
    photo[600:1000, 2200:2500] = 250  # the right-hand tile's
    out = io.BytesIO()
    Image.fromarray(photo).save(out, "PNG")

    class FindsItGrey(FindsGreyToo):
        # the tiles' find of the bright subject only 0.6: nothing of it is sure
        def matte(self, image):
            matte = super().matte(image)
            if image.size[0] == image.size[1] and (np.asarray(image.convert("L")) > 200).mean() >= 0.08:
                matte[np.asarray(image.convert("L")) > 200] = 0.6
            return matte

    def cut(segmenter, sure):
        engine = Engine(segmenter, refine_edges=False, tiles_when_views_agree_under=0.2, disagreed_tile_sure=sure)
        return alpha_of(engine.remove(out.getvalue(), ALPHA).data)

    assert cut(FindsGreyToo(), 0.5)[800, 2350] == 255  # solid: comes
    assert cut(FindsItGrey(), 0.0)[800, 2350] > 128  # unsure, no bound: comes
    assert cut(FindsItGrey(), 0.5)[800, 2350] == 0  # unsure: stays out
    assert cut(FindsItGrey(), 0.5)[650, 1100] == 255  # what the whole views found stays


def test_components_join_with_sure_takes_only_a_region_sure_enough():
    kept = _blob((60, 100), 10, 10, 30, 40)
    sure = _blob((60, 100), 70, 20, 80, 30, 0.95, 0.3)  # 100 of 144 pixels >= 0.9
    mush = _blob((60, 100), 70, 20, 80, 30, 0.6, 0.3)
    assert join_views(kept, sure, "components", sure=0.5)[25, 75] == np.float32(0.95)
    assert join_views(kept, mush, "components", sure=0.5)[25, 75] == 0.0
    assert join_views(kept, mush, "components")[25, 75] == np.float32(0.6)


def test_views_agreement_is_the_iou_of_the_solid_areas():
    a, b = np.zeros((10, 10), np.float32), np.zeros((10, 10), np.float32)
    assert views_agreement(a, b) == 1.0  # both found nothing: no disagreement
    a[0:5] = 0.9
    assert views_agreement(a, b) == 0.0
    b[3:10] = 0.6
    b[9] = 0.4  # not solid
    assert views_agreement(a, b) == pytest.approx(2 / 9)


def _blob(shape, x0, y0, x1, y1, value=1.0, edge=0.0):
    """A rectangle of `value` with a one-pixel rim of `edge` around it."""
    matte = np.zeros(shape, np.float32)
    matte[y0 - 1 : y1 + 1, x0 - 1 : x1 + 1] = edge
    matte[y0:y1, x0:x1] = value
    return matte


def test_components_join_adds_what_only_the_second_view_found_whole():
    kept = _blob((60, 100), 10, 10, 30, 40)
    second = _blob((60, 100), 70, 20, 80, 30, 0.9, 0.3)  # a small subject the kept view missed
    joined = join_views(kept, second, "components")
    np.testing.assert_array_equal(joined[10:40, 10:30], 1.0)
    np.testing.assert_array_equal(joined[20:30, 70:80], np.float32(0.9))
    assert joined[19, 75] == np.float32(0.3)  # its soft rim comes with it
    assert joined[50, 50] == 0.0


def test_components_join_keeps_the_kept_views_edge_where_both_found_the_subject():
    kept = _blob((60, 100), 10, 10, 30, 40, 1.0, 0.2)
    second = _blob((60, 100), 8, 8, 32, 42, 1.0, 0.6)  # the same subject, fatter and softer
    joined = join_views(kept, second, "components")
    np.testing.assert_array_equal(joined, kept)
    assert joined is not kept
    fattened = join_views(kept, second, "max")  # the per-pixel max takes the fatter edge
    assert fattened[8, 8] == 1.0 and kept[8, 8] == 0.0


def test_max_open_join_keeps_a_hole_one_view_sees_clear_through():
    filled = _blob((60, 100), 10, 10, 60, 50)
    holed = filled.copy()
    holed[20:30, 25:45] = 0.02  # the gap under a car's wing, seen by this view only
    for kept, second in ((filled, holed), (holed, filled)):
        assert join_views(kept, second, "max")[25, 35] == 1.0
        joined = join_views(kept, second, "max-open")
        assert joined[25, 35] == np.float32(0.02)
        np.testing.assert_array_equal(joined[10:20], filled[10:20])  # the rest is the max
        np.testing.assert_array_equal(joined[30:50], filled[30:50])


def test_max_open_join_fills_a_hole_the_view_was_unsure_of_and_a_bay_open_to_the_border():
    filled = _blob((60, 100), 10, 10, 60, 50)
    unsure = filled.copy()
    unsure[20:30, 25:45] = 0.3  # mean over the clear level (CLEAR_HOLE): not clear, the max fills it
    np.testing.assert_array_equal(join_views(filled, unsure, "max-open"), filled)
    assert clear_holes(unsure) == []
    faint = filled.copy()
    faint[20:30, 25:45] = 0.15  # clear or not by the level asked for (the sweep's values)
    np.testing.assert_array_equal(join_views(filled, faint, "max-open", clear_under=0.1), filled)
    assert join_views(filled, faint, "max-open", clear_under=0.2)[25, 35] == np.float32(0.15)
    bay = np.ones((60, 100), np.float32)
    bay[0:30, 25:45] = 0.0  # open to the top border: background, not a hole
    assert clear_holes(bay) == []
    bay[40:50, 60:70] = 0.0  # enclosed: a hole
    [(window, mine)] = clear_holes(bay)
    assert window == (slice(40, 50), slice(60, 70)) and mine.all()
    bay[40:50, 60:70] = 1.0
    np.testing.assert_array_equal(join_views(bay, np.ones_like(bay), "max-open"), 1.0)


class HesitantWholeViews(Recording):
    """Recording's views, but it sees the photo's red patch: in a whole view, where the patch is
    a small part of the frame, as grey mush with solid pixels scattered over it; in a square
    tile, where it fills a good part, solid (with `tiles_find`=False: not at all). `core`: a
    solid square of that side at the patch's corner in the whole views too."""

    def __init__(self, tiles_find: bool = True, core: int = 0):
        super().__init__()
        self.tiles_find = tiles_find
        self.core = core

    def matte(self, image: Image.Image) -> np.ndarray:
        self.seen.append(image.size)
        pixels = np.asarray(image.convert("RGB"), np.int16)
        red = (pixels[..., 0] > 200) & (pixels[..., 1] < 60)
        matte = np.zeros(red.shape, np.float32)
        if red.mean() > 0.01:
            if self.tiles_find:
                matte[red] = 1.0
        elif red.any():
            matte[red] = 0.3
            sure = np.zeros_like(red)
            sure[::3, ::3] = True  # single pixels, over 0.05 % of the frame in all
            matte[red & sure] = 0.9
            rows, cols = np.nonzero(red)
            matte[rows[0] : rows[0] + self.core, cols[0] : cols[0] + self.core] = 1.0
        return matte


# The retry's own rule, apart from the swept one that sends the tiles where the whole views
# disagree (its value would change how many views these tests count), and with the whole edge
# style the grey mush above is made for: swept edges may keep more of it solid (low 0, high 0.75 do).
RETRY_ALONE = {"tiles_when_views_agree_under": 0.0,
               "edge_style": refine.EdgeStyle(low=0.08, high=0.85, small=1, eps=5e-5, wide=34, reach=5,
                                              wide_at=0.3, narrow_lift=0.04, narrow_under=0.5,
                                              wide_over=1.0)}


def _red_patch_photo() -> bytes:
    """1120x480 (21:9, over the edge work's one-to-one working size), a 60 px red patch near
    its right side."""
    pixels = np.full((480, 1120, 3), (90, 120, 150), np.uint8)
    pixels[300:360, 1000:1060] = (230, 20, 20)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG")
    return out.getvalue()


def test_a_find_the_edge_work_would_leave_empty_is_looked_for_with_the_tiles():
    segmenter = HesitantWholeViews()
    alpha = alpha_of(Engine(segmenter, **RETRY_ALONE).remove(_red_patch_photo(), ALPHA).data)
    assert (alpha[305:355, 1005:1055] >= 128).mean() > 0.95  # the tiles found it whole
    assert np.count_nonzero(alpha >= 128) < 1.2 * 60 * 60
    whole = [(1024, 448), (1024, 1024)]
    assert segmenter.seen[:4] == whole + whole  # looked at again, once
    assert len(segmenter.seen) == 4 + 3  # and with the three tiles


def test_the_tiles_look_once_and_an_empty_answer_stays_empty_when_they_find_nothing_either():
    segmenter = HesitantWholeViews(tiles_find=False)
    alpha = alpha_of(Engine(segmenter, **RETRY_ALONE).remove(_red_patch_photo(), ALPHA).data)
    assert not (alpha >= 128).any()
    # Then the views' find stretched to full (the same views: the service's matte cache holds them);
    # its scattered pixels at 0.9 leave the grey mush grey.
    assert len(segmenter.seen) == 2 + 2 + 3 + 2 + 3
    assert segmenter.seen[7:] == segmenter.seen[2:7]


def test_a_find_the_edge_work_would_keep_little_of_is_looked_for_with_the_tiles():
    """The whole views' find keeps a small solid corner through the edge work: not empty, but
    under `retry_when_kept_under` of what they found."""
    segmenter = HesitantWholeViews(core=12)
    alpha = alpha_of(Engine(segmenter, retry_when_kept_under=0.2, **RETRY_ALONE).remove(_red_patch_photo(), ALPHA).data)
    assert (alpha[305:355, 1005:1055] >= 128).mean() > 0.95
    assert len(segmenter.seen) == 2 + 2 + 3

    segmenter = HesitantWholeViews(core=12)
    alpha = alpha_of(Engine(segmenter, retry_when_kept_under=0.0, **RETRY_ALONE).remove(_red_patch_photo(), ALPHA).data)
    assert 0 < np.count_nonzero(alpha >= 128) < 0.2 * 60 * 60  # the corner alone
    assert len(segmenter.seen) == 2  # 0: only an empty answer is looked at again


class FaintEverywhere(Recording):
    """Sees the photo's red patch at 0.3 in every view (`core`: a few pixels of it at 0.55), as
    the net answers a plant it is unsure of."""

    def __init__(self, core: bool = False):
        super().__init__()
        self.core = core

    def matte(self, image: Image.Image) -> np.ndarray:
        self.seen.append(image.size)
        pixels = np.asarray(image.convert("RGB"), np.int16)
        matte = np.full(pixels.shape[:2], 0.01, np.float32)
        red = (pixels[..., 0] > 200) & (pixels[..., 1] < 60)
        matte[red] = 0.3
        if self.core and red.any():
            rows, cols = np.nonzero(red)
            middle = (rows[len(rows) // 2], cols[len(cols) // 2])
            matte[middle[0] - 2 : middle[0] + 2, middle[1] - 2 : middle[1] + 2] = 0.55
        return matte


@pytest.mark.parametrize("size", [(800, 600), (1120, 480)])
@pytest.mark.parametrize("core", [False, True])
def test_a_find_the_net_hesitated_over_everywhere_comes_out_rather_than_an_empty_answer(size, core):
    pixels = np.full((size[1], size[0], 3), (90, 120, 150), np.uint8)
    pixels[200:300, 300:420] = (230, 20, 20)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG")
    alpha = alpha_of(Engine(FaintEverywhere(core)).remove(out.getvalue(), ALPHA).data)
    assert (alpha[210:290, 310:410] >= 128).all()
    assert (alpha[:150] == 0).all()

def test_an_unknown_join_is_refused():
    with pytest.raises(ValueError):
        join_views(np.zeros((4, 4), np.float32), np.zeros((4, 4), np.float32), "mean")


def test_a_small_subject_in_a_21_9_frame_is_kept(engine, grabcut):
    """grabcut50's sheep at ~3 % of a 1120x480 frame, on a flat grey-green ground with a soft
    gradient: the engine as configured keeps it (IoU against the exact truth)."""
    data, truth, _ = grabcut("sheep")
    photo = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    rows, cols = np.flatnonzero(truth.any(axis=1)), np.flatnonzero(truth.any(axis=0))
    subject = photo[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    mask = truth[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    scale = math.sqrt(0.03 * 1120 * 480 / mask.sum())
    size = (round(mask.shape[1] * scale), round(mask.shape[0] * scale))
    subject = np.asarray(Image.fromarray(subject).resize(size, Image.Resampling.BILINEAR))
    mask = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.Resampling.NEAREST)) > 127
    ramp = np.linspace(0, 1, 1120, dtype=np.float32)[None, :, None]
    frame = np.round((1 - ramp) * np.array([118, 132, 104]) + ramp * np.array([150, 156, 128]))
    frame = np.repeat(frame, 480, axis=0).astype(np.uint8)
    expected = np.zeros((480, 1120), bool)
    x, y = 1120 - size[0] - 60, 480 - size[1] - 30  # far right, low: off the squashed view's centre
    frame[y : y + size[1], x : x + size[0]][mask] = subject[mask]
    expected[y : y + size[1], x : x + size[0]] = mask
    out = io.BytesIO()
    Image.fromarray(frame).save(out, "PNG")
    alpha = alpha_of(engine.remove(out.getvalue(), ALPHA).data) >= 128
    iou = np.count_nonzero(alpha & expected) / np.count_nonzero(alpha | expected)
    print(f"IoU {iou:.3f}")
    assert iou >= 0.7


def test_what_only_the_further_views_found_goes_when_it_is_small():
    kept = _blob((100, 100), 10, 10, 40, 40)
    joined = np.maximum(kept, _blob((100, 100), 80, 80, 83, 83))  # 9 cells: 0.09 % of the frame
    joined = np.maximum(joined, _blob((100, 100), 50, 50, 60, 60))  # 100 cells: 1 %
    joined = np.maximum(joined, _blob((100, 100), 38, 10, 45, 20))  # grows the kept subject: stays
    out = drop_small_additions(kept, joined, 0.005)
    assert out[81, 81] == 0 and out[55, 55] == 1 and out[15, 43] == 1 and out[20, 20] == 1
    assert drop_small_additions(kept, joined, 0.0) is joined
    assert drop_small_additions(kept, joined, 0.0005) is joined
