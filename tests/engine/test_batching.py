"""engine/models/batching: which inputs share a batch, how long a lone one waits, errors.

The backend here is a numpy function (each row's sum), so these run without a GPU or torch;
the real net behind the batcher is checked by bench/gpu.py on the GPU machine.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from engine.models.batching import Batcher


class Backend:
    """Records each batch's shape; answers each row's sum, so rows can be matched to inputs."""

    def __init__(self, delay_s: float = 0.0, fail: bool = False):
        self.shapes: list[tuple] = []
        self.delay_s, self.fail = delay_s, fail

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.shapes.append(batch.shape)
        time.sleep(self.delay_s)
        if self.fail:
            raise MemoryError("out of GPU memory")
        return batch.reshape(len(batch), -1).sum(axis=1, keepdims=True)


def _input(value: float, shape=(3, 4, 6)) -> np.ndarray:
    return np.full((1, *shape), value, np.float32)


def test_inputs_that_arrive_together_run_as_one_batch_and_each_gets_its_own_row():
    backend = Backend()
    # Windows here are long against a loop of submits: a loaded machine may pause this thread.
    batcher = Batcher(backend, max_batch=8, max_wait_s=2.0)
    futures = [batcher.submit(_input(i)) for i in range(5)]
    rows = [f.result(timeout=5) for f in futures]
    batcher.close()
    assert backend.shapes == [(5, 3, 4, 6)]
    assert [float(r[0, 0]) for r in rows] == [i * 72.0 for i in range(5)]  # 3*4*6 values of i each


def test_a_full_batch_runs_at_once_without_waiting_out_its_window():
    backend = Backend()
    batcher = Batcher(backend, max_batch=4, max_wait_s=30.0)
    started = time.monotonic()
    futures = [batcher.submit(_input(i)) for i in range(4)]
    for f in futures:
        f.result(timeout=5)
    assert time.monotonic() - started < 5.0
    batcher.close()
    assert backend.shapes == [(4, 3, 4, 6)]


def test_more_than_max_batch_are_split_and_the_rest_keeps_its_turn():
    backend = Backend()
    batcher = Batcher(backend, max_batch=3, max_wait_s=2.0)
    futures = [batcher.submit(_input(i)) for i in range(7)]
    rows = [float(f.result(timeout=5)[0, 0]) for f in futures]
    batcher.close()
    assert sorted(s[0] for s in backend.shapes) == [1, 3, 3]
    assert rows == [i * 72.0 for i in range(7)]


def test_a_lone_input_waits_about_the_window_not_more():
    backend = Backend()
    batcher = Batcher(backend, max_batch=32, max_wait_s=0.05)
    started = time.monotonic()
    batcher.run(_input(1.0))
    waited = time.monotonic() - started
    batcher.close()
    assert backend.shapes == [(1, 3, 4, 6)]
    assert 0.04 <= waited < 2.0  # held for the window (others might have come), then run alone


def test_shapes_never_share_a_batch():
    backend = Backend()
    batcher = Batcher(backend, max_batch=8, max_wait_s=2.0)
    futures = [batcher.submit(_input(i, (3, 4, 6) if i % 2 else (3, 6, 4))) for i in range(6)]
    for f in futures:
        f.result(timeout=5)
    batcher.close()
    assert sorted(backend.shapes) == [(3, 3, 4, 6), (3, 3, 6, 4)]


def test_inputs_from_many_threads_are_batched_while_the_backend_is_busy():
    backend = Backend(delay_s=0.05)
    batcher = Batcher(backend, max_batch=16, max_wait_s=0.002)
    answers: dict[int, float] = {}

    def client(i: int) -> None:
        answers[i] = float(batcher.run(_input(i))[0, 0])

    threads = [threading.Thread(target=client, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    batcher.close()
    assert answers == {i: i * 72.0 for i in range(24)}
    assert sum(s[0] for s in backend.shapes) == 24
    assert len(backend.shapes) < 24  # those that came while a batch ran went together


def test_a_backend_failure_reaches_every_request_of_that_batch_and_the_next_batch_runs():
    backend = Backend(fail=True)
    batcher = Batcher(backend, max_batch=4, max_wait_s=0.05)
    futures = [batcher.submit(_input(i)) for i in range(3)]
    for f in futures:
        with pytest.raises(MemoryError):
            f.result(timeout=5)
    backend.fail = False
    assert float(batcher.run(_input(2.0))[0, 0]) == 144.0
    batcher.close()


def test_settings_and_inputs_are_checked():
    with pytest.raises(ValueError):
        Batcher(Backend(), max_batch=0)
    batcher = Batcher(Backend(), max_batch=2, max_wait_s=0.01)
    with pytest.raises(ValueError):
        batcher.submit(np.zeros((2, 3, 4, 4), np.float32))
    batcher.close()
    with pytest.raises(RuntimeError):
        batcher.submit(_input(1.0))


def test_backends_pad_to_a_few_bucket_sizes():
    from engine.models.batching import bucket

    assert [bucket(n) for n in (1, 2, 3, 4, 5, 8, 9, 17, 32, 33)] == [1, 2, 4, 4, 8, 8, 16, 32, 32, 64]


class _BatchedSession:
    """What a torch candidate's session offers the Segmenter (engine/models/torchnet.TorchSession):
    here numpy, each row's logit its input's mean, so every caller can tell its own answer."""

    batched = True

    def __init__(self):
        self.batches: list[int] = []

    def get_inputs(self):
        return [type("Arg", (), {"name": "input", "shape": [None, 3, "height", "width"]})()]

    def get_outputs(self):
        return [type("Arg", (), {"name": "coarse_logits", "shape": None})()]

    def get_providers(self):
        return ["TorchCUDA"]

    def run_batch(self, batch):
        self.batches.append(len(batch))
        means = batch.reshape(len(batch), -1).mean(axis=1)
        return np.broadcast_to(means[:, None, None, None], (len(batch), 1, batch.shape[2] // 4, batch.shape[3] // 4)).copy()

    def run(self, names, feed):
        return [self.run_batch(feed["input"])]


def test_the_segmenter_batches_concurrent_requests_on_a_batching_session(monkeypatch, tmp_path):
    from PIL import Image

    from engine.models import providers
    from engine.models.families import Segmenter
    from engine.models.manifest import Candidate

    session = _BatchedSession()
    monkeypatch.setattr(Segmenter, "_session", lambda self, candidate, threads: session)
    candidate = Candidate(name="torch-cuda-fp16", file=tmp_path / "torch.json", kind="torch", provider=providers.TORCH_CUDA,
                          precision="fp16", arena=False, size=0, latency_ms={}, mean_iou=1.0, min_iou=1.0, mae=0.0, passes=True)
    # The batch fires when the sixth request joins it, not when a wait runs out: under load one
    # thread's preprocessing missed a 300 ms window ([5, 1]), and no test may hang on speed.
    segmenter = Segmenter([candidate], "isnet", concurrent_runs=6, batch_max=6, batch_wait_ms=30_000)
    assert segmenter.open_lanes([(1024, 768)]) == 0  # no CPU lanes beside a batching session
    mattes: dict[int, np.ndarray] = {}

    def request(grey: int) -> None:
        mattes[grey] = segmenter.matte(Image.new("RGB", (400, 300), (grey,) * 3))

    threads = [threading.Thread(target=request, args=(g,), daemon=True) for g in (0, 50, 100, 150, 200, 250)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert session.batches == [6]  # one batch, not six runs
    for grey, matte in mattes.items():
        assert matte.shape == (768, 1024)  # the coarse logits brought to the net's view
        expected = 1 / (1 + np.exp(-(grey / 255 - 0.5)))  # ISNet's normalisation, then the sigmoid
        assert abs(float(matte.mean()) - expected) < 1e-3, grey
