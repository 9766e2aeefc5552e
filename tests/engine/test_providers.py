"""engine/models/providers: the session options every onnxruntime session of the engine opens with."""

from __future__ import annotations

import pytest

from engine.models import providers

SPINNING = "session.intra_op.allow_spinning"


def test_intra_op_threads_sleep_unless_asked_to_spin():
    # Spinning threads burn the cores that the engine's other lane and other processes wait for
    # (bench/spinning.py).
    assert providers.session_options(2).get_session_config_entry(SPINNING) == "0"
    assert providers.session_options(2, spin=True).get_session_config_entry(SPINNING) == "1"


@pytest.mark.parametrize("threads", [1, 3])
def test_threads_as_asked_and_every_core_by_default(threads):
    assert providers.session_options(threads).intra_op_num_threads == threads
    assert providers.session_options().intra_op_num_threads == providers.default_threads()
