"""The `clearbg` command against the fake server: what it takes from folders, where results go,
--json lines, the summary, exit codes, --skip-existing, option mapping, one shared Retry-After
pause for every worker, --watch; and `clearbg account`."""

from __future__ import annotations

import io
import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

import pytest

from clearbg.cli import Arrivals, main
from clearbg.cli._files import Layout, collect_jobs
from fake_server import Reply, error_reply, ok_png

CLEARBG = str(pathlib.Path(sys.executable).parent / "clearbg")


def run_cli(server, *args, key="k", env=None):
    out, err = io.StringIO(), io.StringIO()
    argv = [*args]
    if key is not None:
        argv += ["--api-key", key]
    if server is not None:
        argv += ["--base-url", server.url]
    code = main(argv, out, err)
    return code, out.getvalue(), err.getvalue()


def photos(folder: pathlib.Path, *names: str) -> list:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"jpeg:" + name.encode())
    return [folder / name for name in names]


def lines(out: str) -> list:
    return [json.loads(line) for line in out.splitlines()]


def test_a_folder_gives_outputs_beside_the_photos_never_taking_outputs_or_other_files(fake_server, tmp_path):
    photos(tmp_path, "a.jpg", "B.JPEG", "c.png", "d.webp", "e.gif", "f.bmp", "g.tif", "h.TIFF", "notes.txt",
           "old-clearbg.png", "sub/inner.jpg")
    code, out, err = run_cli(fake_server, "remove", str(tmp_path))
    assert code == 0, err
    made = sorted(p.name for p in tmp_path.iterdir() if p.name.endswith("-clearbg.png"))
    assert made == sorted(f"{stem}-clearbg.png" for stem in ("a", "B", "c", "d", "e", "f", "g", "h")) + ["old-clearbg.png"]
    assert (tmp_path / "a-clearbg.png").read_bytes() == b"\x89PNG fake"
    assert len(fake_server.seen) == 8
    assert out == "done 8, failed 0, skipped 0, credits charged 8\n"
    assert err == ""  # no terminal: no bar, and no failures


def test_recursive_into_an_outdir_keeps_the_tree_and_skips_the_outdir(fake_server, tmp_path):
    photos(tmp_path / "in", "a.jpg", "sub/b.jpg", "sub/deeper/c.png")
    outdir = tmp_path / "in" / "results"
    photos(outdir, "stale.jpg")  # inside the folder, but it is the OUTDIR: never an input
    code, out, _ = run_cli(fake_server, "remove", str(tmp_path / "in"), "-o", str(outdir), "--recursive", "--format", "webp")
    assert code == 0
    assert sorted(str(p.relative_to(outdir)) for p in outdir.rglob("*.webp")) == ["a.webp", "sub/b.webp", "sub/deeper/c.webp"]
    assert all(seen.form()["format"] == "webp" for seen in fake_server.seen) and len(fake_server.seen) == 3


def test_format_auto_names_the_output_after_the_answer(fake_server, tmp_path):
    fake_server.default = ok_png(**{"Content-Type": "image/jpeg"})
    (photo,) = photos(tmp_path, "a.png")
    code, _, _ = run_cli(fake_server, "remove", str(photo), "--format", "auto")
    assert code == 0 and (tmp_path / "a-clearbg.jpg").is_file()


def test_json_lines_and_the_summary(fake_server, tmp_path):
    a, b = photos(tmp_path, "a.jpg", "b.jpg")
    fake_server.queue(ok_png(), error_reply(402, "insufficient_credits", "No credits left"))
    code, out, err = run_cli(fake_server, "remove", str(a), str(b), "--json", "--concurrency", "1")
    assert code == 1 and err == ""
    first, second, summary = lines(out)
    assert first == {"file": str(a), "output": str(tmp_path / "a-clearbg.png"), "status": "done", "credits_charged": 1,
                     "credits_remaining": 49.5, "width": 40, "height": 30, "type": "person"}
    assert second == {"file": str(b), "output": None, "status": "failed", "credits_charged": 0, "credits_remaining": None,
                      "width": None, "height": None, "type": None,
                      "error": {"status": 402, "code": "insufficient_credits", "title": "Title 402", "detail": "No credits left"}}
    assert summary == {"summary": {"done": 1, "failed": 1, "skipped": 0, "credits_charged": 1}}


def test_failures_are_a_line_each_on_stderr_and_exit_1(fake_server, tmp_path):
    (photo,) = photos(tmp_path, "a.jpg")
    fake_server.default = error_reply(400, "invalid_file_type", "Not an image")
    code, out, err = run_cli(fake_server, "remove", str(photo))
    assert code == 1
    assert err == f"failed: {photo}: 400 invalid_file_type: Not an image (request id req-400)\n"
    assert out == "done 0, failed 1, skipped 0, credits charged 0\n"


def test_skip_existing_sends_nothing_for_photos_already_done(fake_server, tmp_path):
    photos(tmp_path, "a.jpg", "b.jpg", "c.jpg")
    (tmp_path / "a-clearbg.png").write_bytes(b"done before")
    code, out, _ = run_cli(fake_server, "remove", str(tmp_path), "--skip-existing", "--json")
    records = lines(out)
    assert code == 0 and len(fake_server.seen) == 2
    assert records[0] == {**records[0], "file": str(tmp_path / "a.jpg"), "status": "skipped", "output": str(tmp_path / "a-clearbg.png")}
    assert records[-1]["summary"] == {"done": 2, "failed": 0, "skipped": 1, "credits_charged": 2}
    assert (tmp_path / "a-clearbg.png").read_bytes() == b"done before"


def test_picture_options_map_to_the_api_fields(fake_server, tmp_path):
    (photo,) = photos(tmp_path, "a.jpg")
    bg = tmp_path / "bg.png"
    bg.write_bytes(b"background")
    code, _, _ = run_cli(
        fake_server, "remove", str(photo), "--size", "preview", "--type", "product", "--type-level", "2",
        "--format", "png", "--bg-color", "red", "--bg-image-file", str(bg), "--channels", "rgba", "--crop",
        "--crop-margin", "10px", "--scale", "80%", "--position", "center", "--roi", "0 0 50% 50%", "--add-shadow",
    )
    assert code == 0
    assert fake_server.last.form() == {
        "size": "preview", "type": "product", "type_level": "2", "format": "png", "bg_color": "red",
        "channels": "rgba", "crop": "true", "crop_margin": "10px", "scale": "80%", "position": "center",
        "roi": "0 0 50% 50%", "add_shadow": "true", "image_file": b"jpeg:a.jpg", "bg_image_file": b"background",
    }


@pytest.mark.parametrize("args", [
    ["remove", "NOWHERE"], ["remove", "{photo}", "--format", "gif"], ["remove", "{photo}", "--concurrency", "0"],
    ["remove", "{photo}", "--watch"], ["remove", "{photo}", "--unknown"], ["remove"], ["frobnicate"],
    ["remove", "{photo}", "--bg-image-file", "NOWHERE.png"],
])
def test_usage_errors_exit_2_and_send_nothing(fake_server, tmp_path, args):
    (photo,) = photos(tmp_path, "a.jpg")
    code, _, err = run_cli(fake_server, *[a.replace("{photo}", str(photo)) for a in args])
    assert code == 2 and err.startswith("clearbg: ")
    assert fake_server.seen == []


def test_no_key_is_a_usage_error(fake_server, tmp_path):
    (photo,) = photos(tmp_path, "a.jpg")
    code, _, err = run_cli(fake_server, "remove", str(photo), key=None)
    assert code == 2 and "CLEARBG_API_KEY" in err and fake_server.seen == []


def test_key_and_url_from_the_environment(fake_server, tmp_path, monkeypatch):
    (photo,) = photos(tmp_path, "a.jpg")
    monkeypatch.setenv("CLEARBG_API_KEY", "env-key")
    monkeypatch.setenv("CLEARBG_BASE_URL", fake_server.url)
    code, _, _ = run_cli(None, "remove", str(photo), key=None)
    assert code == 0 and fake_server.last.headers["x-api-key"] == "env-key"


def test_a_retry_after_pauses_every_worker_and_the_429_is_not_shown(fake_server, tmp_path):
    """Four calls in flight; the first is answered 429 (Retry-After: 1), the other three 0.5 s
    later. Every worker then waits for the one pause: no request before it has passed."""
    photos(tmp_path, *(f"p{i}.jpg" for i in range(8)))
    together = threading.Barrier(4)
    arrivals = []
    limited_at = []
    lock = threading.Lock()

    def answer(seen):
        with lock:
            number = len(arrivals)
            arrivals.append(seen.at)
        if number < 4:
            together.wait(10)
            if number == 0:
                limited_at.append(time.monotonic())
                return error_reply(429, "rate_limit_exceeded", **{"Retry-After": "1"})
            time.sleep(0.5)
        return Reply(200, b"png", {"Content-Type": "image/png", "X-Credits-Charged": "1"})

    fake_server.default = answer
    code, out, err = run_cli(fake_server, "remove", str(tmp_path), "--concurrency", "4")
    assert code == 0 and err == "" and out.startswith("done 8, failed 0")
    later = sorted(at - limited_at[0] for at in arrivals[4:])
    assert len(later) == 5 and later[0] >= 0.95, later  # nobody knocked again before Retry-After had passed


def test_after_a_retry_after_the_refused_photo_goes_first_and_alone(fake_server, tmp_path):
    """Three photos in flight, the first refused (Retry-After: 1), a fourth queued meanwhile. When
    the pause is over the refused photo goes first, and the fourth only after its answer: newer
    photos cannot keep overtaking one the limit refused."""
    photos(tmp_path, *(f"p{i}.jpg" for i in range(4)))
    together = threading.Barrier(3)
    lock = threading.Lock()
    arrivals = []

    def answer(seen):
        with lock:
            number = len(arrivals)
            arrivals.append(seen)
        if number < 3:
            together.wait(10)
            if number == 0:
                return error_reply(429, "rate_limit_exceeded", **{"Retry-After": "1"})
        return Reply(200, b"png", {"Content-Type": "image/png", "X-Credits-Charged": "1"}, delay_s=0.3)

    fake_server.default = answer
    code, out, err = run_cli(fake_server, "remove", str(tmp_path), "--concurrency", "3")
    assert code == 0 and err == "" and out.startswith("done 4, failed 0"), (out, err)
    refused, retried, newer = arrivals[0], arrivals[3], arrivals[4]
    assert len(arrivals) == 5
    assert retried.headers["idempotency-key"] == refused.headers["idempotency-key"], "the refused photo went first"
    assert newer.at - retried.at >= 0.25, f"a newer photo went {newer.at - retried.at:.3f} s after the retry"


def test_a_dropped_connection_is_retried_after_a_backoff_not_at_once(fake_server, tmp_path):
    """No answer, so no Retry-After for the workers' gate: the call itself waits its backoff
    (0.5 s less up to a quarter) before sending the photo again."""
    photos(tmp_path, "p.jpg")
    fake_server.queue(Reply(drop=True))
    fake_server.default = Reply(200, b"png", {"Content-Type": "image/png", "X-Credits-Charged": "1"})
    code, out, err = run_cli(fake_server, "remove", str(tmp_path))
    assert code == 0 and out.startswith("done 1, failed 0"), (out, err)
    first, again = fake_server.seen
    assert again.at - first.at >= 0.35, f"sent again {again.at - first.at:.3f} s after the dropped one"


def test_account_human_and_json(fake_server):
    body = b'{"data":{"attributes":{"credits":{"total":50.5,"subscription":45,"payg":5.5,"enterprise":0},"api":{"free_calls":50,"sizes":"all"}}}}'
    fake_server.default = Reply(200, body, {"Content-Type": "application/json"})
    code, out, _ = run_cli(fake_server, "account")
    assert code == 0
    assert out == "credits     50.5 (subscription 45, payg 5.5, enterprise 0)\nfree calls  50\nsizes       all\n"
    code, out, _ = run_cli(fake_server, "account", "--json")
    assert json.loads(out) == {"credits": {"total": 50.5, "subscription": 45, "payg": 5.5, "enterprise": 0},
                               "free_calls": 50, "sizes": "all"}
    fake_server.default = error_reply(401, "invalid_api_key", "The API key is invalid")
    code, _, err = run_cli(fake_server, "account")
    assert code == 1 and "401 invalid_api_key" in err


def test_watch_processes_photos_dropped_in_until_interrupted(fake_server, tmp_path):
    folder = tmp_path / "inbox"
    photos(folder, "first.jpg")
    env = dict(os.environ, CLEARBG_WATCH_INTERVAL_MS="100")
    process = subprocess.Popen(
        [CLEARBG, "remove", str(folder), "--watch", "--api-key", "k", "--base-url", fake_server.url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not (folder / "first-clearbg.png").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        photos(folder, "second.jpg", "third.png")
        while len(list(folder.glob("*-clearbg.png"))) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # nothing else comes
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert sorted(p.name for p in folder.glob("*-clearbg.png")) == ["first-clearbg.png", "second-clearbg.png", "third-clearbg.png"]
    assert out == "done 3, failed 0, skipped 0, credits charged 3\n"
    assert len(fake_server.seen) == 3


def interrupted_run(fake_server, folder, until, *args):
    """The command on `folder` as a user runs it, Ctrl-C once `until(fake_server.seen)` holds:
    (exit status, stdout, stderr, requests seen before the Ctrl-C, seconds it took to end)."""
    process = subprocess.Popen([CLEARBG, "remove", str(folder), *args, "--api-key", "k", "--base-url", fake_server.url],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not until(fake_server.seen) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert until(fake_server.seen), f"never came to the point of the Ctrl-C: {len(fake_server.seen)} requests"
        time.sleep(0.2)
        tried = len(fake_server.seen)
        interrupted_at = time.monotonic()
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=90)
        return process.returncode, out, err, tried, time.monotonic() - interrupted_at
    finally:
        if process.poll() is None:
            process.kill()


@pytest.mark.parametrize("mode", [[], ["--watch"]], ids=["folder", "watch"])
@pytest.mark.parametrize("refusal", [
    error_reply(503, "overloaded"),  # no Retry-After: the call's own backoff, 0.5 s then doubling
    error_reply(429, "rate_limit_exceeded", **{"Retry-After": "60"}),  # the workers' shared pause
], ids=["backoff", "retry-after"])
def test_ctrl_c_ends_a_wait_to_try_again_at_once_and_sends_nothing_more(fake_server, tmp_path, refusal, mode):
    """With the default 10 retries a refused photo's attempts are a minute and more apart in all:
    Ctrl-C does not sit that out. The refused photo was not charged and stays for the next run."""
    photos(tmp_path, "p.jpg")
    fake_server.default = refusal
    attempts = 2 if refusal.status == 503 else 1
    code, out, err, tried, took = interrupted_run(fake_server, tmp_path, lambda seen: len(seen) >= attempts, *mode)
    assert code == (0 if mode else 130), (code, err)
    assert len(fake_server.seen) == tried  # no attempt after the Ctrl-C
    assert out == "done 0, failed 0, skipped 0, credits charged 0\n", (out, err)
    assert not (tmp_path / "p-clearbg.png").exists()
    # The next attempt was due 1 s (backoff) or 60 s (Retry-After) later, the last ~50 s later:
    # it ended long before.
    assert took < 10, took


@pytest.mark.parametrize("mode", [[], ["--watch"]], ids=["folder", "watch"])
def test_ctrl_c_keeps_an_answer_on_its_way(fake_server, tmp_path, mode):
    """The server is still working on the photo at the Ctrl-C: its answer (charged) is waited
    for and written; the photos not started are left."""
    photos(tmp_path, "a.jpg", "b.jpg")
    fake_server.default = Reply(200, b"png", {"Content-Type": "image/png", "X-Credits-Charged": "1"}, delay_s=2.0)
    code, out, err, tried, _ = interrupted_run(fake_server, tmp_path, lambda seen: len(seen) >= 1, "--concurrency", "1", *mode)
    assert code == (0 if mode else 130), (code, err)
    assert tried == len(fake_server.seen) == 1
    assert out == "done 1, failed 0, skipped 0, credits charged 1\n", (out, err)
    assert len(list(tmp_path.glob("*-clearbg.png"))) == 1


def test_a_file_still_growing_is_taken_once_its_size_holds(tmp_path):
    folder = tmp_path / "inbox"
    (old,) = photos(folder, "old.jpg")
    layout = Layout(None, False, None)
    arrivals = Arrivals([str(folder)], layout, collect_jobs([str(folder)], layout))
    growing = folder / "big.jpg"
    growing.write_bytes(b"x" * 1000)
    assert arrivals.poll() == []  # first sight
    with open(growing, "ab") as out:
        out.write(b"x" * 1000)
    assert arrivals.poll() == []  # still growing
    (job,) = arrivals.poll()  # held still since the last look
    assert job.source == str(growing) and job.output_base == str(folder / "big-clearbg")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "big-clearbg.png").write_bytes(b"an output")
    assert arrivals.poll() == [] and arrivals.poll() == []  # taken once; empty files and outputs never
