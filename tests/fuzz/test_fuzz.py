"""A short, bounded run of every fuzz target (fuzz/targets.py) from its committed seeds: no
crash, no hang. `make fuzz` runs them longer. The crashes fuzzing found are regression tests
beside the code they crashed (tests/service/test_rest_request.py, test_remote_image_policy.py,
test_dashboard.py)."""

from __future__ import annotations

import os

import pytest

from fuzz.run import CORPUS, fuzz
from fuzz.targets import TARGETS

# Seconds per target in `make test` (CLEARBG_FUZZ_SECONDS to change): thousands of inputs each.
SECONDS = int(os.environ.get("CLEARBG_FUZZ_SECONDS", "5"))


@pytest.mark.parametrize("target", list(TARGETS))
def test_every_target_has_seeds(target):
    assert any((CORPUS / target).iterdir()), f"fuzz/corpus/{target}/ is empty"


@pytest.mark.parametrize("target", list(TARGETS))
def test_a_short_run_finds_no_crash(target, tmp_path):
    outcome = fuzz(target, SECONDS, tmp_path / target)
    assert outcome.ok, f"{target} crashed; input in {[str(c) for c in outcome.crashes]}\n{outcome.output[-4000:]}"
    # It ran the seeds and then mutated them: libFuzzer's final stats count the inputs tried.
    runs = int(outcome.output.rsplit("stat::number_of_executed_units:", 1)[1].split()[0])
    assert runs > len(list((CORPUS / target).iterdir()))

