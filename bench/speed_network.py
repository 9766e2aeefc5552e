"""The segmentation network alone, per variant: latency at its input size, and mask quality.

For each candidate of this machine's model manifest (`make model` measured them: fp32-cpu,
int8-cpu, and fp32-openvino, fp32-openvino-bf16, int8-openvino where the installed onnxruntime
offers OpenVINO) and the fp32 file as shipped, prints the median and best latency after warm-up, as a ratio
to fp32-as-shipped measured in the same run (the CPU is shared, so only ratios travel), then
mask agreement on ../shared/quality per set: mean IoU at 0.5 and MAE against the cleaned fp32
matte, and mean IoU against the ground truth (grabcut50's unlabelled band left out). Issue 6
requires the variant in use within 0.005 mean IoU of fp32 against the truth on each set.

    nice .venv/bin/python bench/speed_network.py [--limit N] [--runs 5] [--threads 2] [--variants a,b]

OpenVINO needs the `onnxruntime-openvino` distribution, which replaces `onnxruntime` (they
cannot share a venv): run this same file with that venv's python to measure it.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import numpy as np
from PIL import Image

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from engine.config import DEFAULT_CHECKPOINT  # noqa: E402
from engine.models import manifest, providers  # noqa: E402
from engine.models.families import family, fixed_shape, matte_output  # noqa: E402
from modelprep.fetch import cache_dir, ensure_checkpoint  # noqa: E402

DEFAULT_QUALITY = pathlib.Path(__file__).resolve().parents[2] / "shared" / "quality"
SETS = ("grabcut50", "alphamatting14")


def variant_table(source: pathlib.Path, model: manifest.Manifest) -> dict[str, tuple[pathlib.Path, str, str | None, bool]]:
    """name -> (model file, provider, OpenVINO precision hint, arena): the shipped file, then the
    manifest's candidates."""
    table = {"fp32-shipped": (source, providers.CPU, None, False)}
    for c in model.candidates:
        table[c.name] = (c.file, c.provider, c.precision, c.arena)
    return table


def session(path: pathlib.Path, provider: str, precision: str | None, arena: bool, threads: int,
            openvino_cache: pathlib.Path | None):
    return providers.inference_session(path, providers.session_options(threads, arena),
                                       providers.provider_list(provider, threads, precision, openvino_cache))


def photos(quality: pathlib.Path, limit: int | None, sets: list[str]) -> dict[str, list[tuple[pathlib.Path, pathlib.Path, pathlib.Path | None]]]:
    found = {}
    for name in sets:
        root = quality / name
        if not root.is_dir():
            continue
        items = []
        for image in sorted((root / "images").iterdir()):
            ignore = root / "ignore" / f"{image.stem}.png"
            items.append((image, root / "masks" / f"{image.stem}.png", ignore if ignore.exists() else None))
        found[name] = items[:limit] if limit else items
    return found


def matte(sess, fam, image: Image.Image) -> np.ndarray:
    """The net's matte resized back to the photo, float32 in [0, 1]."""
    shape = fixed_shape(sess) or fam.input_shape(*image.size, keep_aspect=True)  # else the photo's aspect
    name, coarse = matte_output(sess, fam)
    (out,) = sess.run([name], {sess.get_inputs()[0].name: fam.preprocess(image, shape)})
    small = fam.postprocess(out, shape if coarse else None)
    return np.asarray(Image.fromarray(small, mode="F").resize(image.size, Image.Resampling.BILINEAR))


def iou(a: np.ndarray, b: np.ndarray, keep: np.ndarray) -> float:
    union = ((a | b) & keep).sum()
    return float((a & b & keep).sum() / union) if union else 1.0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=pathlib.Path, help="source ONNX (default: the default checkpoint)")
    parser.add_argument("--quality", type=pathlib.Path, default=DEFAULT_QUALITY)
    parser.add_argument("--limit", type=int, default=None, help="photos per set (default: all)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per variant after 2 warm-ups")
    parser.add_argument("--threads", type=int, default=providers.default_threads())
    parser.add_argument("--variants", help="comma-separated subset of the variant names")
    parser.add_argument("--sets", default=",".join(SETS), help="comma-separated subset of the photo sets")
    parser.add_argument("-v", "--verbose", action="store_true", help="a row per photo")
    ns = parser.parse_args(argv)

    source = ns.model or ensure_checkpoint()
    found = manifest.load(cache_dir(), manifest.model_id(DEFAULT_CHECKPOINT, ns.model), model_path=ns.model)
    print(f"manifest {found.path}: chosen {found.chosen}\n")
    table = variant_table(source, found)
    if ns.variants:
        table = {k: v for k, v in table.items() if k in ns.variants.split(",")}
    fam = family("isnet")
    sessions = {name: session(*spec, ns.threads, found.openvino_cache) for name, spec in table.items()}

    # Latency: variants interleaved run by run, so a burst of load elsewhere hits them all alike;
    # at the square and at a 4:3 photo's shape (a variant that takes any shape keeps the aspect).
    side = fam.size
    shapes = {"square": (side, side), "4:3": fam.input_shape(4, 3, side, keep_aspect=True)}
    rng = np.random.default_rng(0)
    # A prepared variant's output is its coarse logits (families.matte_output): the upsampling
    # and sigmoid it leaves to numpy (~0.5 ms at 1024x768) are outside these times.
    outputs = {name: matte_output(sess, fam)[0] for name, sess in sessions.items()}
    for label, (width, height) in shapes.items():
        probes = {}
        for name, sess in sessions.items():
            shape = fixed_shape(sess) or (width, height)
            probes[name] = rng.random((1, 3, shape[1], shape[0]), dtype=np.float32) - 0.5
            for _ in range(2):
                sess.run([outputs[name]], {sess.get_inputs()[0].name: probes[name]})
        times = {name: [] for name in sessions}
        for _ in range(ns.runs):
            for name, sess in sessions.items():
                started = time.perf_counter()
                sess.run([outputs[name]], {sess.get_inputs()[0].name: probes[name]})
                times[name].append(time.perf_counter() - started)
        base = "fp32-shipped" if "fp32-shipped" in times else next(iter(times))
        shown = f"{width}x{height} where the variant takes any shape, else {side}x{side}" if width != height else f"{side}x{side}"
        print(f"latency for a {label} photo ({shown}), {ns.threads} threads, {ns.runs} runs (ratio to {base} in this run)")
        print(f"{'variant':14} {'shape':>9} {'median s':>9} {'best s':>7} {'x median':>9} {'x best':>7}")
        for name, t in times.items():
            shape = "x".join(map(str, probes[name].shape[:1:-1]))
            print(f"{name:14} {shape:>9} {np.median(t):9.3f} {min(t):7.3f} {np.median(t) / np.median(times[base]):9.2f} "
                  f"{min(t) / min(times[base]):7.2f}")
        print()

    # Quality. The shipped file runs the cleaned one's arithmetic, but only at its square: its
    # row is what keeping the photo's aspect changed.
    scored = list(sessions)
    reference = "fp32-cpu" if "fp32-cpu" in sessions else scored[0]
    for set_name, items in photos(ns.quality, ns.limit, ns.sets.split(",")).items():
        vs_ref = {name: [] for name in scored}
        mae = {name: [] for name in scored}
        vs_truth = {name: [] for name in scored}
        for image_path, mask_path, ignore_path in items:
            with Image.open(image_path) as opened:
                image = opened.convert("RGB")
            truth = np.asarray(Image.open(mask_path).convert("L")) > 127
            keep = ~(np.asarray(Image.open(ignore_path).convert("L")) > 127) if ignore_path else np.ones_like(truth)
            mattes = {name: matte(sessions[name], fam, image) for name in scored}
            for name, m in mattes.items():
                vs_ref[name].append(iou(m > 0.5, mattes[reference] > 0.5, np.ones_like(truth)))
                mae[name].append(float(np.abs(m - mattes[reference]).mean()))
                vs_truth[name].append(iou(m > 0.5, truth, keep))
            if ns.verbose:
                print(f"{set_name}/{image_path.stem}: " + "  ".join(
                    f"{name} ref {vs_ref[name][-1]:.3f} truth {vs_truth[name][-1]:.3f}" for name in scored))
        print(f"\n{set_name}: {len(items)} photos (IoU/MAE vs {reference} matte; IoU vs ground truth)")
        print(f"{'variant':14} {'IoU ref':>8} {'min':>6} {'MAE ref':>8} {'IoU truth':>10} {'delta':>7}")
        for name in scored:
            delta = np.mean(vs_truth[name]) - np.mean(vs_truth[reference])
            print(f"{name:14} {np.mean(vs_ref[name]):8.4f} {min(vs_ref[name]):6.3f} {np.mean(mae[name]):8.4f} "
                  f"{np.mean(vs_truth[name]):10.4f} {delta:+7.4f}")


if __name__ == "__main__":
    main(sys.argv[1:])
