"""bench/quality/tune.py's choice of the aspect ratio from which the squashed view joins, and of
the join."""

from __future__ import annotations

import math

from bench.quality import tune


def _s(iou: float, mae: float = 0.1) -> dict[str, float]:
    return {"IoU": iou, "BF": iou, "MAE": mae}


def test_the_threshold_takes_two_views_where_they_help_and_the_higher_one_on_a_tie():
    # Two views help the 16:9 and 21:9 photos, hurt the 4:3 one.
    aspects = [4 / 3, 16 / 9, 21 / 9]
    one = [_s(0.9), _s(0.5), _s(0.4)]
    both = [_s(0.8), _s(0.7), _s(0.6)]
    chosen, lines = tune.pick_threshold({"a": (aspects, one, {"max": both})}, min_from=1.0)
    # 1.4, 1.55 and 1.7 all split 4:3 from 16:9 alike: the highest of them costs the least.
    assert chosen == ("max", 1.7)
    assert any(line.startswith("| max | 1.7 **chosen** |") for line in lines)


def test_the_cost_bound_keeps_squarer_photos_at_one_view():
    aspects = [4 / 3, 16 / 9]
    one = [_s(0.7), _s(0.5)]
    both = {"max": [_s(0.9), _s(0.7)]}  # two views help both
    assert tune.pick_threshold({"a": (aspects, one, both)}, min_from=1.0)[0] == ("max", 1.2)  # 1.0 and 1.2 tie
    assert tune.pick_threshold({"a": (aspects, one, both)}, min_from=1.4)[0] == ("max", 1.7)


def test_no_second_view_when_it_never_helps():
    aspects = [16 / 9, 2.0]
    one = [_s(0.9), _s(0.8)]
    both = {"max": [_s(0.85), _s(0.8)]}
    (_, chosen), _ = tune.pick_threshold({"a": (aspects, one, both)})
    assert chosen == math.inf


def test_the_join_with_the_better_iou_wins_and_on_a_tie_the_lower_mae():
    aspects = [16 / 9, 21 / 9]
    one = [_s(0.5), _s(0.4)]
    better = {"max": [_s(0.7), _s(0.6)], "components": [_s(0.8), _s(0.6)]}
    assert tune.pick_threshold({"a": (aspects, one, better)})[0] == ("components", 1.7)
    tied = {"max": [_s(0.7, 0.02), _s(0.6, 0.02)], "components": [_s(0.7, 0.01), _s(0.6, 0.01)]}
    assert tune.pick_threshold({"a": (aspects, one, tied)})[0] == ("components", 1.7)
    tied["max"] = [_s(0.7, 0.005), _s(0.6, 0.005)]
    assert tune.pick_threshold({"a": (aspects, one, tied)})[0] == ("max", 1.7)
