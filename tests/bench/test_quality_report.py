"""The quality benchmark's colour score, set loading and table marking, on tiny inputs."""

from __future__ import annotations

import random

import numpy as np
import pytest
from PIL import Image

from bench.quality import datasets, report, synthetic


def _case() -> synthetic.ColourCase:
    alpha = np.array([[0, 51, 204, 255]], dtype=np.uint8)  # band: the middle two
    fg, bg = (200, 100, 0), (0, 100, 200)
    a = alpha[..., None] / 255.0
    photo = np.round(a * np.array(fg) + (1 - a) * np.array(bg)).astype(np.uint8)
    return synthetic.ColourCase("t", fg, bg, photo, alpha)


def test_colour_error_of_a_perfect_and_of_a_photo_coloured_cutout():
    case = _case()
    perfect = np.tile(np.array(case.foreground, np.uint8), (1, 4, 1))
    kept = np.ones((1, 4), dtype=np.float32)
    assert synthetic.colour_error(case, kept, perfect)["error"] == 0.0
    # Keeping the photo's colour: alpha 0.2 -> |R - 200| = 160, |B - 0| = 160 (G equal): mean 320/3;
    # alpha 0.8 -> 40, 40: mean 80/3; over both: 400/6.
    result = synthetic.colour_error(case, kept, case.photo)
    assert result["error"] == pytest.approx(400 / 6)
    assert result["photo"] == pytest.approx(400 / 6) and result["kept"] == 1.0
    dropped = kept.copy()
    dropped[0, 1] = 0.0  # the faint pixel is not kept: only alpha 0.8 counts
    result = synthetic.colour_error(case, dropped, case.photo)
    assert result["error"] == pytest.approx(80 / 3) and result["kept"] == 0.5


def test_synthetic_photos_are_the_stated_blend():
    case = synthetic.make_cases(size=96)[0]
    band = case.band
    assert band.any() and (case.alpha == 255).any() and (case.alpha == 0).any()
    a = case.alpha[band][:, None] / 255.0
    expected = a * np.array(case.foreground) + (1 - a) * np.array(case.background)
    assert np.abs(case.photo[band] - expected).max() <= 0.5 + 1e-6


def test_sets_load_categories_ignore_band_and_two_people_group(tmp_path):
    base = tmp_path / "grabcut50"
    for folder in ("images", "masks", "ignore"):
        (base / folder).mkdir(parents=True)
    (base / "meta.csv").write_text(
        "stem,image,mask,category,subject\n"
        "a,images/a.png,masks/a.png,animal,cat\n"
        "person4,images/person4.png,masks/person4.png,person,one of two\n"
    )
    mask = np.zeros((4, 4), dtype=np.uint8)
    mask[1:3, 1:3] = 255
    for stem in ("a", "person4"):
        Image.fromarray(mask).save(base / "masks" / f"{stem}.png")
    ignore = np.zeros((4, 4), dtype=np.uint8)
    ignore[0, 0] = 255
    Image.fromarray(ignore).save(base / "ignore" / "a.png")

    samples = datasets.load(tmp_path, "grabcut50")
    assert [(s.stem, s.category) for s in samples] == [("a", "animal"), ("person4", datasets.TWO_PEOPLE_GROUP)]
    assert samples[0].truth().sum() == 4.0
    assert samples[0].valid().sum() == 15 and samples[1].valid() is None
    assert len(datasets.load(tmp_path, "grabcut50", limit=1)) == 2  # the first of each part
    with pytest.raises(FileNotFoundError):
        datasets.load(tmp_path, "alphamatting14")


def test_table_marks_the_best_per_metric_and_keeps_two_people_apart():
    good = {"IoU": 0.9, "MAE": 0.01, "SAD": 1.0, "MSE": 1.0, "Grad": 1.0, "BF": 0.8}
    bad = {"IoU": 0.5, "MAE": 0.10, "SAD": 9.0, "MSE": 9.0, "Grad": 9.0, "BF": 0.3}
    result = report.SetResult("s", ["ours", "rembg"])
    result.rows.append(("x", "animal", {"ours": good, "rembg": bad}))
    result.rows.append(("y", datasets.TWO_PEOPLE_GROUP, {"ours": bad, "rembg": good}))
    groups = dict(result.groups())
    assert len(groups["all but two-people"]) == 1 and len(groups[datasets.TWO_PEOPLE_GROUP]) == 1
    table = report.set_table(result)
    assert "| all but two-people | 1 | IoU | **0.9000** | 0.5000 |" in table
    assert "| all but two-people | 1 | MAE | **0.0100** | 0.1000 |" in table
    assert f"| {datasets.TWO_PEOPLE_GROUP} | 1 | BF | 0.3000 | **0.8000** |" in table
    assert report.best({"a": 1.0, "b": 1.0}, True) == {"a", "b"}


def _scores(iou: float, sad: float, grad: float) -> dict[str, float]:
    return {"IoU": iou, "MAE": sad / 100, "SAD": sad, "MSE": sad, "Grad": grad, "BF": iou}


def test_checks_need_the_better_rembg_on_each_metric_and_a_margin_on_soft_sets():
    binary = report.SetResult("grabcut50", ["ours", "rembg", "rembg+matting"], "held-out")
    binary.rows.append(("x", "animal", {"ours": _scores(0.9, 10, 5), "rembg": _scores(0.8, 12, 6),
                                        "rembg+matting": _scores(0.85, 9.5, 6)}))
    lines, ok = report.checks([binary])
    assert not ok  # rembg+matting's SAD 9.5 beats ours' 10
    assert "SAD BEHIND (10.00 vs rembg+matting 9.50)" in lines[0] and "IoU ok" in lines[0]
    found = {c.text.split()[0]: c for c in report.set_checks(binary)}
    assert not found["SAD"].held and found["SAD"].shortfall == pytest.approx(0.5 / 9.5)
    assert found["IoU"].held and found["IoU"].shortfall == 0.0

    soft = report.SetResult("alphamatting14", ["ours", "rembg", "rembg+matting"], "held-out")
    soft.rows.append(("y", "hair", {"ours": _scores(0.9, 9.5, 5), "rembg": _scores(0.8, 10, 6),
                                    "rembg+matting": _scores(0.8, 12, 5.2)}))
    lines, ok = report.checks([soft])
    assert not ok  # ahead everywhere, but SAD only 5 % lower than the better rembg's
    assert "SAD +5.0 % lower than rembg (SHORT of 10 %)" in lines[0]
    assert "Grad +3.8 % lower than rembg+matting (SHORT of 10 %)" in lines[0]
    margins = [c.shortfall for c in report.set_checks(soft) if not c.held]
    assert margins == pytest.approx([0.05, 0.1 - (1 - 5 / 5.2)])
    soft.rows[0][2]["ours"].update(SAD=8.9, Grad=4.6, MAE=0.089)
    assert report.checks([soft])[1]


def _three_way(ours: dict[str, float], rembg: dict[str, float]) -> dict[str, dict[str, float]]:
    return {"ours": ours, "rembg": rembg, "rembg+matting": rembg}


def test_a_check_that_rests_on_one_photo_holds_in_some_resamples_only():
    steady = report.SetResult("alphamatting14", ["ours", "rembg", "rembg+matting"], "held-out")
    for stem in "abcdefg":
        steady.rows.append((stem, "hair", _three_way(_scores(0.9, 5, 2), _scores(0.8, 10, 4))))
    assert report.holding_shares(steady) == [1.0] * 6  # IoU, MAE, SAD, BF, SAD 10 %, Grad 10 %

    lucky = report.SetResult("alphamatting14", ["ours", "rembg", "rembg+matting"], "held-out")
    lucky.rows.append(("a", "hair", _three_way(_scores(0.9, 5, 2), _scores(0.8, 10, 40))))  # wins Grad by 38
    for stem in "bcdefg":
        lucky.rows.append((stem, "hair", _three_way(_scores(0.9, 5, 6), _scores(0.8, 10, 4))))  # loses it by 2
    lines, ok = report.checks([lucky])
    assert ok  # means: Grad 5.43 against 9.14
    grad = report.holding_shares(lucky)[5]
    assert 0.3 < grad < 0.9  # it holds only when photo a is drawn: 1 - (6/7)^7 = 0.66 of draws
    assert lines[0].endswith(f"[{grad:.0%}]") and "IoU ok (0.9000 vs rembg 0.8000) [100%]" in lines[0]
    assert report.holding_shares(lucky) == report.holding_shares(lucky)  # seeded


def test_resamples_draw_a_generated_image_with_the_others_of_its_photo():
    result = report.SetResult("composites-grabcut", ["ours", "rembg"], "held-out")
    for stem in ("h0-dog-16x9", "h1-dog-9x16", "h2-cat-21x9"):
        result.rows.append((stem, "animal", {"ours": _scores(0.9, 1, 1), "rembg": _scores(0.8, 1, 1)}))
    people = report.SetResult("grabcut50", ["ours", "rembg"], "held-out")
    people.rows.append(("a", "animal", {"ours": _scores(0.9, 1, 1), "rembg": _scores(0.8, 1, 1)}))
    people.rows.append(("p", datasets.TWO_PEOPLE_GROUP, {"ours": _scores(0.1, 1, 1), "rembg": _scores(0.8, 1, 1)}))
    rng = random.Random(1)
    for _ in range(50):
        stems = [row[0] for row in report._resample(result, rng).rows]
        assert len(stems) in (2, 3, 4) and stems.count("h0-dog-16x9") == stems.count("h1-dog-9x16")
        assert [row[0] for row in report._resample(people, rng).rows] == ["a"]  # outside 'all', never drawn


def test_iou_ratio_lists_the_photos_most_behind_and_those_under_half():
    result = report.SetResult("composites-grabcut", ["ours", "rembg", "rembg+matting"], "held-out")
    result.rows.append(("fine", "car", {"ours": _scores(0.9, 1, 1), "rembg": _scores(0.8, 1, 1),
                                        "rembg+matting": _scores(0.7, 1, 1)}))
    result.rows.append(("lost", "car", {"ours": _scores(0.3, 1, 1), "rembg": _scores(0.5, 1, 1),
                                        "rembg+matting": _scores(0.8, 1, 1)}))
    ratios = report.iou_ratios(result)
    assert [r[0] for r in ratios] == ["lost", "fine"]
    assert ratios[0][1] == 0.3 / 0.8 and ratios[0][3] == "rembg+matting"
    table, under = report.behind_table([result], worst=1)
    assert under == ["composites-grabcut/lost (held-out): 0.37"]
    assert "| composites-grabcut | held-out | lost | 0.300 | 0.800 (rembg+matting) | 0.37 **under 0.5** |" in table
    assert "| fine |" not in table  # only the worst one, and those under the floor
