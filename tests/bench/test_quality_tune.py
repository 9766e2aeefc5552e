"""bench/quality/tune.py's choice of the aspect ratio from which the squashed view joins, and of
the join."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

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


def _full(iou: float, sad: float, grad: float, bf: float) -> dict[str, float]:
    return {"IoU": iou, "MAE": sad / 100, "SAD": sad, "MSE": sad, "Grad": grad, "BF": bf}


def test_the_edge_objective_counts_the_issues_checks_that_fail_then_their_shortfall():
    from types import SimpleNamespace

    samples = {"alphamatting14": [SimpleNamespace(stem="a", category="hair"), SimpleNamespace(stem="b", category="hair")]}
    rembg = {"rembg": {"alphamatting14": [_full(0.8, 10, 10, 0.7)] * 2},
             "rembg+matting": {"alphamatting14": [_full(0.7, 12, 9, 0.6)] * 2}}
    ahead = {"alphamatting14": [_full(0.9, 8, 7, 0.8)] * 2}
    assert tune.edge_objective(ahead, rembg, samples) == (0, 0.0)
    # SAD only 5 % lower than rembg's 10: one failing check, 5 % short of the 10 % margin
    close = {"alphamatting14": [_full(0.9, 9.5, 7, 0.8)] * 2}
    failed, short = tune.edge_objective(close, rembg, samples)
    assert failed == 1 and short == pytest.approx(0.05)
    # and BF behind too: a second failure
    worse = {"alphamatting14": [_full(0.9, 9.5, 7, 0.65)] * 2}
    assert tune.edge_objective(worse, rembg, samples)[0] == 2


def test_a_share_is_chosen_by_iou_then_mae_then_the_smaller_share(monkeypatch):
    # The "engine" is the share itself; the scores are what that share would give on every photo.
    given = {0.0: (0.80, 0.05), 0.001: (0.85, 0.04), 0.003: (0.85, 0.04), 0.01: (0.85, 0.03)}
    monkeypatch.setattr(tune, "cut", lambda share, photos: [{"IoU": given[share][0], "MAE": given[share][1]}] * len(photos))
    samples = {"a": [object()] * 2, "b": [object()]}
    chosen, found = tune.sweep_shares(lambda share: share, tuple(given), samples, "test")
    assert chosen == 0.01  # the same IoU as 0.001 and 0.003, the lowest MAE
    assert found[0.0] == {"a": {"IoU": 0.80, "MAE": 0.05}, "b": {"IoU": 0.80, "MAE": 0.05}}
    given[0.01] = (0.85, 0.04)
    assert tune.sweep_shares(lambda share: share, tuple(given), samples, "test")[0] == 0.001  # a full tie: the smaller
    lines = tune.share_table("under", found, chosen)
    assert lines[0] == "| under | a IoU | b IoU | mean IoU | mean MAE |"
    assert lines[2 + 3].startswith("| 0.01 **chosen** | 0.8500 | 0.8500 | 0.8500 | 0.03000 |")


def test_a_joint_sweep_breaks_ties_by_the_smaller_first_setting_then_the_second(monkeypatch):
    given = {(0.0, 0.0): (0.80, 0.05), (0.2, 0.1): (0.85, 0.04), (0.2, 0.3): (0.85, 0.04), (0.4, 0.0): (0.85, 0.04)}
    monkeypatch.setattr(tune, "cut", lambda pair, photos: [{"IoU": given[pair][0], "MAE": given[pair][1]}] * len(photos))
    chosen, found = tune.sweep_shares(lambda pair: pair, tuple(given), {"a": [object()]}, "test")
    assert chosen == (0.2, 0.1)
    lines = tune.share_table("agree under / sure", found, chosen)
    assert lines[2 + 1].startswith("| 0.2 / 0.1 **chosen** | 0.8500 |")


def test_a_setting_judged_by_the_checks_takes_the_fewest_failing_then_the_least_shortfall_then_the_smaller(monkeypatch):
    # The "engine" is the value itself; edge_objective is stood in by what each value would give.
    judged = {0.0: (5, 1.50), 0.05: (5, 1.50), 0.1: (4, 2.00), 0.2: (4, 1.90)}
    monkeypatch.setattr(tune, "cut", lambda value, photos: [{"IoU": value, "MAE": 0.1}] * len(photos))
    monkeypatch.setattr(tune, "edge_objective", lambda scores, rembg, samples: judged[scores["a"][0]["IoU"]])
    samples = {"a": [object()]}
    chosen, found, checks = tune.sweep_by_checks(lambda value: value, tuple(judged), samples, "test", rembg={})
    assert chosen == 0.2 and checks == judged
    judged[0.2] = (5, 1.50)
    judged[0.1] = (5, 1.50)
    assert tune.sweep_by_checks(lambda value: value, tuple(judged), samples, "test", rembg={})[0] == 0.0  # a tie: the smaller
    lines = tune.share_table("kept under", found, chosen, checks)
    assert lines[0] == "| kept under | a IoU | mean IoU | mean MAE | failing | shortfall |"
    assert lines[2 + 3] == "| 0.2 **chosen** | 0.2000 | 0.2000 | 0.10000 | 4 | 1.9000 |"


def test_edges_only_replaces_the_edges_section_and_keeps_the_views_sections(monkeypatch, tmp_path):
    import types

    monkeypatch.setattr(tune, "sweep_edges", lambda engine, samples, sets, fields=None: [
        "", "## Edges: new sweep", "", "Objective: ...", "", "| step | new |"])
    engine = types.SimpleNamespace(segmenter=types.SimpleNamespace(model_path="/m/int8.onnx"))
    samples = {"a": [object()] * 3}
    (tmp_path / "tune.md").write_text("# Settings\n\n## Geometry\n\n| views |\n\n## Edges: old sweep\n\n| step | old |\n")
    assert tune.edges_only(engine, samples, ["a"], tmp_path, ["--edges-only"]) == 0
    text = (tmp_path / "tune.md").read_text()
    assert text.startswith("# Settings\n\n## Geometry\n\n| views |\n\n## Edges: new sweep\n\nFrom `")
    assert "UTC, `/m/int8.onnx`" in text and ".\n\nObjective: ..." in text
    assert "old" not in text and text.endswith("| step | new |\n")
    assert "`python -m bench.quality.tune --edges-only`" in text and "a 3" in text and "/m/int8.onnx" in text
    fresh = tmp_path / "fresh"
    tune.edges_only(engine, samples, ["a"], fresh, [])
    assert (fresh / "tune.md").read_text().count("## Edges: new sweep") == 1
    with pytest.raises(SystemExit):  # one or the other
        tune.main(["--edges", "--edges-only"])


def test_mirror_only_judges_off_and_on_by_the_checks_and_replaces_only_its_section(monkeypatch, tmp_path):
    import types

    judged = {False: (5, 1.08), True: (4, 1.36)}
    engines = {m: types.SimpleNamespace(mirror=m, segmenter=types.SimpleNamespace(model_path="/m/int8.onnx"))
               for m in judged}
    monkeypatch.setattr(tune, "cut", lambda engine, photos: [{"IoU": 0.5 + engine.mirror * 0.1, "MAE": 0.1}] * len(photos))
    monkeypatch.setattr(tune, "edge_objective", lambda scores, rembg, samples: judged[scores["a"][0]["IoU"] > 0.55])
    monkeypatch.setattr(tune, "rembg_scores", lambda samples: {})
    samples = {"a": [object()] * 3}
    (tmp_path / "tune.md").write_text("# Settings\n\n## Mirror: old\n\n| old |\n\n## Edges: kept\n\n| step | kept |\n")
    assert tune.mirror_only(engines.__getitem__, samples, ["a"], tmp_path, ["--mirror-only"], True) == 0
    text = (tmp_path / "tune.md").read_text()
    assert "old" not in text and text.count("## Mirror:") == 1
    assert text.endswith("\n\n## Edges: kept\n\n| step | kept |\n")  # the section after it kept
    assert "Chosen: on (1 on, 0 off); engine/config.py EngineConfig.mirror is on." in text
    assert "| 1 **chosen** | 0.6000 | 0.6000 | 0.10000 | 4 | 1.3600 |" in text
    assert "`python -m bench.quality.tune --mirror-only`" in text and "a 3" in text
    judged[True] = (5, 1.08)  # a tie: off, which costs half the net's time
    tune.mirror_only(engines.__getitem__, samples, ["a"], tmp_path, [], True)
    text = (tmp_path / "tune.md").read_text()
    assert "Chosen: off" in text and text.count("## Mirror:") == 1 and text.count("## Edges: kept") == 1


def test_looks_only_takes_the_best_looks_no_worse_on_either_half_and_replaces_only_its_section(monkeypatch, tmp_path):
    import types

    candidates = ((), ((1.0, 16),), ((0.875, 0),), ((1.0, 16), (0.875, 0)))
    # (whole tuned part, its two halves) per candidate, told apart by the IoU the fake cut gives.
    judged = {(): ((4, 1.19), [(7, 1.96), (3, 0.15)]),
              ((1.0, 16),): ((3, 0.90), [(6, 1.50), (3, 0.15)]),
              ((0.875, 0),): ((3, 0.90), [(6, 1.50), (3, 0.14)]),  # ties 1:16 but fewer pixels for the net
              ((1.0, 16), (0.875, 0)): ((2, 0.50), [(2, 0.30), (4, 0.20)])}  # best overall, worse on one half
    iou = {c: 0.5 + i / 100 for i, c in enumerate(candidates)}
    by_iou = {round(v, 4): c for c, v in iou.items()}
    engines = {c: types.SimpleNamespace(looks=c, segmenter=types.SimpleNamespace(model_path="/m/int8.onnx"))
               for c in candidates}
    monkeypatch.setattr(tune, "cut", lambda engine, photos: [{"IoU": iou[engine.looks], "MAE": 0.1}] * len(photos))
    monkeypatch.setattr(tune, "rembg_scores", lambda samples: {})
    monkeypatch.setattr(tune, "halves", lambda samples: [{"a": [0]}, {"a": [1, 2]}])
    monkeypatch.setattr(tune, "edge_objective", lambda scores, rembg, samples: judged[by_iou[round(scores["a"][0]["IoU"], 4)]][0])
    monkeypatch.setattr(tune, "half_objectives", lambda scores, rembg, samples, parts:
                        judged[by_iou[round(scores["a"][0]["IoU"], 4)]][1])
    samples = {"a": [object()] * 3}
    (tmp_path / "tune.md").write_text("# Settings\n\n## Looks: old\n\n| old |\n\n## Edges: kept\n\n| step | kept |\n")
    assert tune.looks_only(engines.__getitem__, samples, ["a"], tmp_path, ["--looks-only"], (), candidates) == 0
    text = (tmp_path / "tune.md").read_text()
    assert "old" not in text and text.count("## Looks:") == 1
    assert text.endswith("\n\n## Edges: kept\n\n| step | kept |\n")
    assert "Chosen: 0.875; engine/config.py EngineConfig.looks is none." in text
    assert "| none | 0.5000 | 0.5000 | 0.10000 | 4 | 1.1900 | 7 / 1.9600; 3 / 0.1500 |" in text
    assert "| 0.875 **chosen** | 0.5200 | 0.5200 | 0.10000 | 3 | 0.9000 | 6 / 1.5000; 3 / 0.1400 |" in text
    assert "| 1:16,0.875 | 0.5300 | 0.5300 | 0.10000 | 2 | 0.5000 | 2 / 0.3000; 4 / 0.2000 |" in text
    # Nothing better on both halves: no further look.
    judged[((1.0, 16),)] = judged[((0.875, 0),)] = ((3, 0.90), [(8, 1.50), (2, 0.10)])
    tune.looks_only(engines.__getitem__, samples, ["a"], tmp_path, [], ((0.875, 0),), candidates)
    assert "Chosen: none; engine/config.py EngineConfig.looks is 0.875." in (tmp_path / "tune.md").read_text()


def _sample(stem: str):
    from types import SimpleNamespace

    return SimpleNamespace(stem=stem, category="hair")


def test_the_halves_deal_source_photos_alternately_and_keep_a_composite_with_its_photo():
    real = [_sample(f"GT{i:02d}") for i in range(7)]
    composites = [_sample(f"t{i:02d}-GT{i % 7:02d}-{'16x9' if i % 2 else '9x16'}") for i in range(20)]
    samples = {"alphamatting14": real, "composites-alpha": composites}
    parts = tune.halves(samples)
    assert sorted(len(p["alphamatting14"]) for p in parts) == [3, 4]
    for part in parts:
        photos = {real[i].stem for i in part["alphamatting14"]}
        assert {composites[i].stem.split("-")[1] for i in part["composites-alpha"]} == photos
    assert sorted(parts[0]["composites-alpha"] + parts[1]["composites-alpha"]) == list(range(20))


def test_an_edge_step_that_helps_overall_but_hurts_one_half_is_not_taken(monkeypatch):
    from types import SimpleNamespace

    from engine import refine

    samples = {"alphamatting14": [_sample("GT01"), _sample("GT02")]}  # one photo in each half
    rembg = {"rembg": {"alphamatting14": [_full(0.8, 10, 10, 0.7)] * 2}}
    # As committed, SAD is 5 % under rembg's on both photos: one failing check overall and per half.
    # low 0.02: far better on one photo, a little worse on the other: no check fails overall, but
    # that photo's half is further short. high 0.95: better on both.
    by_style = {
        refine.STYLE: [_full(0.9, 9.5, 7, 0.8)] * 2,
        replace(refine.STYLE, low=0.02): [_full(0.9, 5.0, 7, 0.8), _full(0.9, 9.8, 7, 0.8)],
        replace(refine.STYLE, high=0.95): [_full(0.9, 8.5, 7, 0.8)] * 2,
        # The second pass (high moved) tries low 0.02 again: still worse on that half.
        replace(refine.STYLE, low=0.02, high=0.95): [_full(0.9, 5.0, 7, 0.8), _full(0.9, 9.8, 7, 0.8)],
    }
    monkeypatch.setattr(tune, "EDGE_GRID", {"low": (refine.STYLE.low, 0.02), "high": (0.95,)})
    monkeypatch.setattr(tune, "cut", lambda engine, chosen: by_style[engine.edge_style])
    lines = tune.sweep_edges(SimpleNamespace(edge_style=None), samples, ["alphamatting14"], rembg)
    assert tune.edge_objective({"alphamatting14": by_style[replace(refine.STYLE, low=0.02)]}, rembg, samples)[0] == 0
    chosen = next(line for line in lines if "**chosen**" in line)
    assert chosen.startswith("| high 0.95 **chosen** |")
    assert any(line.startswith("| low 0.02 |") and line.endswith("|") for line in lines)
    assert f"Chosen: low {refine.STYLE.low:g}, high 0.95 (" in next(line for line in lines if line.startswith("Objective"))
    assert "Swept:" not in next(line for line in lines if line.startswith("Objective"))

    # --edge-fields: only the fields named are tried; the rest stay as committed.
    lines = tune.sweep_edges(SimpleNamespace(edge_style=None), samples, ["alphamatting14"], rembg, fields=["high"])
    assert not any(line.startswith("| low ") for line in lines)
    objective = next(line for line in lines if line.startswith("Objective"))
    assert " Swept: high only. " in objective and "high 0.95 (" in objective
    assert next(line for line in lines if "**chosen**" in line).startswith("| high 0.95 **chosen** |")


def test_a_step_refused_at_first_is_taken_in_a_further_pass_once_another_field_moved(monkeypatch):
    from types import SimpleNamespace

    from engine import refine

    samples = {"alphamatting14": [_sample("GT01"), _sample("GT02")]}  # one photo in each half
    rembg = {"rembg": {"alphamatting14": [_full(0.8, 10, 10, 0.7)] * 2}}
    committed = [_full(0.9, 9.5, 7, 0.8)] * 2  # SAD 5 % under rembg's: one check fails
    low = replace(refine.STYLE, low=0.02)
    high = replace(refine.STYLE, high=0.95)
    both = replace(low, high=0.95)
    # low 0.02 alone hurts the second photo's half; after high 0.95 it no longer does.
    by_style = {
        refine.STYLE: committed,
        low: [_full(0.9, 5.0, 7, 0.8), _full(0.9, 9.8, 7, 0.8)],
        high: [_full(0.9, 9.0, 7, 0.8)] * 2,
        both: [_full(0.9, 5.0, 7, 0.8), _full(0.9, 8.9, 7, 0.8)],
    }
    runs = []

    def cut(engine, chosen):
        runs.append(engine.edge_style)
        return by_style[engine.edge_style]

    monkeypatch.setattr(tune, "EDGE_GRID", {"low": (refine.STYLE.low, 0.02), "high": (refine.STYLE.high, 0.95)})
    monkeypatch.setattr(tune, "cut", cut)
    lines = tune.sweep_edges(SimpleNamespace(edge_style=None), samples, ["alphamatting14"], rembg)
    assert next(line for line in lines if "**chosen**" in line).startswith("| low 0.02 (pass 2) **chosen** |")
    assert "Chosen: low 0.02, high 0.95 (" in next(line for line in lines if line.startswith("Objective"))
    # Every setting ran once: the third pass (nothing moved in it) tried nothing new, and stopped.
    assert sorted(map(repr, runs)) == sorted(map(repr, [refine.STYLE, low, high, both]))

    # With one pass, as before: low 0.02 refused, high taken.
    monkeypatch.setattr(tune, "EDGE_PASSES", 1)
    lines = tune.sweep_edges(SimpleNamespace(edge_style=None), samples, ["alphamatting14"], rembg)
    assert next(line for line in lines if "**chosen**" in line).startswith("| high 0.95 **chosen** |")

    # "low+high": both moved together in one pass, every pair of their values tried once.
    runs.clear()
    lines = tune.sweep_edges(SimpleNamespace(edge_style=None), samples, ["alphamatting14"], rembg, fields=["low+high"])
    assert next(line for line in lines if "**chosen**" in line).startswith("| low 0.02 + high 0.95 **chosen** |")
    objective = next(line for line in lines if line.startswith("Objective"))
    assert " Swept: low and high jointly only. " in objective and "Chosen: low 0.02, high 0.95 (" in objective
    assert sorted(map(repr, runs)) == sorted(map(repr, [refine.STYLE, low, high, both]))


@pytest.mark.parametrize("argv", [["--edges-only", "--edge-fields", "texture_blurr"],
                                  ["--edges-only", "--edge-fields", "texture_blur+mid"],
                                  ["--edge-fields", "texture_blur"]])
def test_edge_fields_are_checked_before_any_photo_loads(monkeypatch, argv):
    monkeypatch.setattr(tune.datasets, "load", lambda *a, **k: pytest.fail("photos loaded before the check"))
    with pytest.raises(SystemExit) as raised:
        tune.main(argv)
    assert raised.value.code == 2


def test_with_the_texture_blur_off_its_gate_settings_run_once(monkeypatch):
    from types import SimpleNamespace

    from engine import refine

    samples = {"alphamatting14": [_sample("GT01"), _sample("GT02")]}
    rembg = {"rembg": {"alphamatting14": [_full(0.8, 10, 10, 0.7)] * 2}}
    runs = []

    def cut(engine, chosen):
        runs.append(engine.edge_style)
        return [_full(0.9, 9.5, 7, 0.8)] * 2

    monkeypatch.setattr(tune, "EDGE_GRID", {"texture_blur": (0.0, refine.STYLE.texture_blur),
                                            "texture_mid": (0.1, 0.2, refine.STYLE.texture_mid)})
    monkeypatch.setattr(tune, "cut", cut)
    tune.sweep_edges(SimpleNamespace(edge_style=None), samples, ["alphamatting14"], rembg,
                     fields=["texture_blur+texture_mid"])
    # The committed style, blur 0 once (not with each texture_mid), and the blur on with the two others.
    assert len(runs) == 4
    assert sum(style.texture_blur == 0 for style in runs) == 1
