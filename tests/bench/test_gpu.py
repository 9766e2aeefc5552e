"""bench/gpu.py's parts that need no GPU: the time budget, the load driver, the CPU meter, the
report. Its GPU sections run only where a GPU is (bench/GPU_RUN.md)."""

from __future__ import annotations

import os
import threading
import time

import pytest

from bench import gpu


def test_each_section_gets_its_share_of_what_is_left():
    budget = gpu.Budget(100.0)
    shares = {s: budget.share(s, gpu.SECTIONS[gpu.SECTIONS.index(s):]) for s in gpu.SECTIONS}
    assert shares["net"] == pytest.approx(15.0, abs=0.5)
    assert shares["rest"] == pytest.approx(100.0, abs=0.5)  # the last one takes all that is left
    assert budget.share("rest", ["rest"]) > budget.share("net", list(gpu.SECTIONS))


def test_the_driver_counts_answers_and_failures_and_stops_at_its_time():
    calls = []
    lock = threading.Lock()

    def call(photo: bytes) -> None:
        with lock:  # the driver's workers call at once: each call's number decided under the lock
            calls.append(photo)
            number = len(calls)
        time.sleep(0.01)
        if number % 5 == 0:
            raise RuntimeError("HTTP 503: busy")

    started = time.monotonic()
    cell = gpu._drive_calls(call, [b"a", b"b"], concurrency=3, seconds=0.5)
    # It stops once its time is up (in-flight calls finish); the upper bound only says it stopped.
    assert 0.5 <= time.monotonic() - started < 60
    assert cell["completed"] + cell["failed"] == len(calls) and cell["failed"] == len(calls) // 5
    assert cell["error"] == "RuntimeError: HTTP 503: busy"
    assert cell["images_per_min"] > 0 and 0.01 <= cell["p50_s"] <= cell["p99_s"]


def test_cpu_seconds_are_read_for_a_process_and_grow_with_work():
    before = gpu._cpu_seconds([os.getpid()])
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:
        pass
    assert gpu._cpu_seconds([os.getpid()]) - before >= 0.2
    assert gpu._cpu_seconds([2**22 + 12345]) == 0.0  # a process that is gone counts nothing


def test_the_report_has_every_section_and_says_what_failed():
    results = {
        "when": "2026-12-04 22:57 UTC", "machine": "H200", "command": "python -m bench.gpu",
        "net": [{"precision": "fp16", "view": "1024x768", "batch": 32, "images_per_s": 416.0, "ms_per_batch": 77.0,
                 "first_run_s": 1.2, "peak_gpu_mib": 9000}],
        "agree": {"photos": 15, "bound": 0.995, "fp16": {"mean_iou": 0.9997, "min_iou": 0.9975, "passes": True},
                  "bf16": {"mean_iou": 0.99, "min_iou": 0.95, "passes": False}},
        "engine": [{"candidate": "torch-cuda-fp16", "concurrency": 48, "images_per_min": 3000, "p50_s": 0.5,
                    "p99_s": 0.9, "cpu_s_per_image": 0.2, "mean_batch": 7.5, "failed": 0}],
        "rest": {"processes": 8, "workers": 24, "variant": "auto",
                 "serving": ['] {"variant": "torch-cuda-fp16", "provider": "TorchCUDA", "event": "serving"}'],
                 "cells": [{"megapixels": 1, "concurrency": 96, "images_per_min": 5100, "p50_s": 1.0, "p99_s": 1.8,
                            "cpu_s_per_image": 0.18, "gpu_util_mean_pct": 40, "gpu_mem_max_mib": 30000, "failed": 0},
                           {"megapixels": 12, "concurrency": 48, "skipped": "out of time"}]},
        "errors": {"engine": "RuntimeError: boom"},
    }
    text = gpu.render(results)
    assert "| fp16 | 1024x768 | 32 | 416.0 | 77.0 | 1.2 | 9000 |" in text
    assert "| bf16 | 0.99 | 0.95 | NO |" in text and "| fp16 | 0.9997 | 0.9975 | yes |" in text
    assert "variant auto: torch-cuda-fp16" in text
    assert "| 1 | 96 | 5100 | 1.0 | 1.8 | 0.18 | 40 | 30000 | 0 |" in text
    assert "skipped: out of time" in text and "- engine: FAILED: RuntimeError: boom" in text
