"""`python -m modelprep` (what `make model` runs): the model, prepared and measured on this machine.

1. fetches and verifies the segmentation checkpoint (or takes CLEARBG_MODEL_PATH's file);
2. fetches and converts X-Type's two networks;
3. makes the cleaned fp32 graph and the int8 variant (minutes the first time, cached after);
4. times every candidate this machine offers and checks its masks against fp32 (measure.py),
   and X-Type's networks per precision;
5. writes the manifest the server reads (engine/models/manifest.py) and prints the table.

Steps 1-3 are cached by sha256, step 4 by this machine's key: a second run only verifies and
prints the recorded table. `--remeasure` measures again (say, after moving to a quieter machine).
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import pathlib
import sys
import time

import numpy as np
from PIL import Image

from engine.config import DEFAULT_CHECKPOINT
from engine.models import manifest, providers
from engine.models.families import family as family_of
from modelprep import measure, variants
from modelprep.calibration import CHECK_PHOTOS, ensure_photos
from modelprep.catalog import CHECKPOINTS
from modelprep.fetch import cache_dir, ensure_checkpoint, sha256_file
from modelprep.xtype.fetch import ensure_models


def _aux_inputs(photos: list[pathlib.Path]) -> tuple[list[dict], list[dict]]:
    """The check photos as X-Type's detector and classifier take them (engine/classify)."""
    from engine.classify import classifier as xt

    detector, classifier = [], []
    for photo in photos:
        with Image.open(photo) as image:
            rgb = np.asarray(image.convert("RGB"))
        detector.append({"image": xt._resized(rgb, (xt.DETECTOR_SIZE,) * 2).astype(np.float32)[None]})
        view = xt._resized(rgb, (xt.CLASSIFIER_SIZE,) * 2).astype(np.float32)
        view = view * xt._CLASSIFIER_SCALE - xt._CLASSIFIER_SHIFT
        classifier.append({"image": np.ascontiguousarray(view.transpose(2, 0, 1)[None])})
    return detector, classifier


def _still_valid(found: manifest.Manifest, source: dict, files: dict[str, pathlib.Path],
                 xtype_files: dict[str, pathlib.Path]) -> bool:
    """A recorded manifest still describes what is on disk (same source, same variant files) and
    was judged by the bounds in force."""
    if found.source.get("sha256") != source["sha256"]:
        return False
    if found.bound.get("mean_iou") != measure.BOUND_MEAN_IOU or found.bound.get("mae") != measure.BOUND_MAE:
        return False
    recorded = {c.file for c in found.candidates}
    if recorded != set(files.values()) or any(c.file.stat().st_size != c.size for c in found.candidates):
        return False
    return {k: m.file for k, m in found.xtype.items()} == xtype_files


def table(found: manifest.Manifest) -> str:
    shapes = list(dict.fromkeys(label for c in found.candidates for label in c.latency_ms))
    machine = found.machine
    lines = [
        f"model {found.model} ({found.family}) measured {found.measured_at} on {machine['cpu']} "
        f"({machine['machine']}, {machine['cores']} cores; flags: {' '.join(machine['flags']) or 'none listed'})",
        f"{machine['runtime']}",
        "",
        f"{'candidate':<20}" + "".join(f"{s + ' ms':>14}" for s in shapes) + f"{'IoU vs fp32 mean/min':>24}{'MAE':>9}  within bound",
    ]
    for c in sorted(found.candidates, key=lambda c: c.mean_latency_ms):
        lines.append(
            f"{c.name:<20}" + "".join(f"{c.latency_ms.get(s, float('nan')):>14.1f}" for s in shapes)
            + f"{c.mean_iou:>16.4f} / {c.min_iou:.4f}{c.mae:>9.4f}  {'yes' if c.passes else 'NO'}"
            + ("   <- chosen" if c.name == found.chosen else "")
        )
    lines.append("")
    torch_bound = f" ({measure.TORCH_BOUND_MEAN_IOU} for torch candidates)" if any(c.kind == "torch" for c in found.candidates) else ""
    mae_bound = f", MAE <= {found.bound['mae']}" if "mae" in found.bound else ""
    lines.append(f"bound: mean IoU >= {found.bound['mean_iou']}{torch_bound}{mae_bound} against {measure.REFERENCE} on "
                 f"{found.bound['photos']} held-out photos x {len(shapes)} shapes")
    for name, model in sorted(found.xtype.items()):
        tried = "; ".join(
            f"{row['provider'].replace('ExecutionProvider', '')} {row['precision'] or ''} {row['latency_ms']:.1f} ms"
            f" err {row['error']:.3f}{'' if row['passes'] else ' (out of bound)'}"
            for row in found.xtype_measured.get(name, []))
        lines.append(f"X-Type {name}: {model.provider}{' ' + model.precision if model.precision else ''}"
                     + (f"   [{tried}]" if tried else ""))
    lines.append(f"chosen: {found.chosen}   (manifest {found.path})")
    return "\n".join(lines)


def prepare(checkpoint: str, model_path: pathlib.Path | None, family_name: str | None, remeasure: bool,
            out=sys.stdout, kinds: tuple[str, ...] = variants.KINDS, torch_cpu_check: bool = False) -> manifest.Manifest:
    root = cache_dir()
    if model_path is not None:
        source_path, family_name = model_path.resolve(), family_name or "isnet"
    else:
        source_path, family_name = ensure_checkpoint(checkpoint), family_name or CHECKPOINTS[checkpoint].family
    stat = source_path.stat()
    source = {"path": str(source_path), "sha256": sha256_file(source_path), "size": stat.st_size, "mtime": int(stat.st_mtime)}
    xtype_files = ensure_models(root)
    files = {kind: variants.prepare(source_path, family_name, kind) for kind in kinds}
    torch_providers = measure.torch_offered(torch_cpu_check)
    if torch_providers:  # PyTorch with a GPU here (or a check asked for): its variant too
        from modelprep import torchconvert

        files["torch"] = torchconvert.prepare(variants.prepare(source_path, family_name, "fp32"))
    identity = manifest.machine_identity(runtime=manifest.onnxruntime_version())
    model = manifest.model_id(checkpoint, model_path)
    target = manifest.manifest_path(root, model, manifest.machine_key(identity))
    if target.is_file() and not remeasure:
        try:
            found = manifest.read(target)
            if _still_valid(found, source, files, xtype_files):
                return found
        except (manifest.ManifestError, OSError, KeyError):
            pass
    print(f"measuring the model's candidates on this machine ({identity['cpu']}); a minute or more ...", file=out, flush=True)
    started = time.monotonic()
    offered = providers.offered() + torch_providers
    openvino_cache = variants.variants_dir() / "openvino"
    photos = ensure_photos(root, CHECK_PHOTOS)
    fam = family_of(family_name)
    candidates = measure.measure(measure.candidate_specs(files, offered), fam, measure.check_inputs(fam, photos),
                                 openvino_cache=openvino_cache)
    chosen = manifest.first_passing(candidates)
    detector_inputs, classifier_inputs = _aux_inputs(photos)
    detector, detector_rows = measure.choose_aux(xtype_files["detector"], detector_inputs, offered,
                                                 openvino_cache=openvino_cache)
    classifier, classifier_rows = measure.choose_aux(xtype_files["classifier"], classifier_inputs, offered,
                                                     top_class=True, openvino_cache=openvino_cache)
    found = manifest.Manifest(
        model=model, family=family_name, source=source, machine=identity,
        bound={"mean_iou": measure.BOUND_MEAN_IOU, "mae": measure.BOUND_MAE, "photos": len(photos)},
        candidates=tuple(candidates), chosen=chosen.name,
        xtype={"detector": detector, "classifier": classifier},
        xtype_measured={"detector": detector_rows, "classifier": classifier_rows}, openvino_cache=openvino_cache,
        measured_at=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    )
    found.write(target)
    print(f"measured in {time.monotonic() - started:.0f} s", file=out)
    return manifest.read(target)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m modelprep", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=os.environ.get("CLEARBG_MODEL_PATH") or None, help="any IS-Net-style ONNX file")
    parser.add_argument("--checkpoint", default=os.environ.get("CLEARBG_MODEL") or DEFAULT_CHECKPOINT,
                        choices=sorted(CHECKPOINTS))
    parser.add_argument("--family", default=os.environ.get("CLEARBG_MODEL_FAMILY") or None)
    parser.add_argument("--remeasure", action="store_true", help="measure again even if this machine has a manifest")
    parser.add_argument("--kinds", default=",".join(variants.KINDS),
                        help="the ONNX variants to prepare (fp32 always; int8 takes minutes to calibrate)")
    parser.add_argument("--torch-cpu-check", action="store_true",
                        help="also measure PyTorch on the CPU (torch-cpu-fp32): checks the GPU path's conversion without a GPU")
    ns = parser.parse_args(argv)
    kinds = tuple(dict.fromkeys(["fp32", *(k.strip() for k in ns.kinds.split(",") if k.strip())]))
    unknown = [k for k in kinds if k not in variants.KINDS]
    if unknown:
        parser.error(f"--kinds: unknown {', '.join(unknown)}; known: {', '.join(variants.KINDS)}")
    logging.basicConfig(level=logging.WARNING)
    try:
        found = prepare(ns.checkpoint, pathlib.Path(ns.model) if ns.model else None, ns.family, ns.remeasure,
                        kinds=kinds, torch_cpu_check=ns.torch_cpu_check)
    except Exception as exc:  # noqa: BLE001 - install-time tool: one clear line, not a traceback
        sys.exit(f"model preparation failed: {type(exc).__name__}: {exc}")
    print(table(found))


if __name__ == "__main__":
    main(sys.argv[1:])
