"""bench/soak.py's figure: RSS growth from the warm-up's end to the run's end, by medians of
windows (one sample's spike, an image's buffers freed a moment later, is not growth)."""

import pytest

from bench.soak import MIX, growth


def test_growth_compares_the_windows_medians():
    flat = [(t, 100) for t in range(0, 600, 30)]
    spike = [(t, 100 if t != 300 else 900) for t in range(0, 600, 30)]
    leak = [(t, 100 + t // 30) for t in range(0, 600, 30)]
    assert growth(flat, 120, 90)[2] == 0
    assert growth(spike, 120, 90)[2] == 0  # a spike moves no median
    baseline, final, grew = growth(leak, 120, 90)
    assert (baseline, final) == (105.5, 117.5) and grew == pytest.approx(12 / 105.5)


def test_too_short_a_run_gives_no_figure():
    with pytest.raises(SystemExit):
        growth([(0, 100), (30, 100)], 600, 120)


def test_the_mix_has_successes_and_errors():
    names = [c.name for c in MIX]
    assert any(n.startswith("error-") for n in names) and any(not n.startswith("error-") for n in names)
    assert {dict(c.fields).get("format") for c in MIX} >= {"jpg", "webp", "zip", None}
