"""Measures X-Type accuracy and latency on the research photos (../shared/quality/grabcut50).

Prints accuracy overall and per class, the confusion table, and the per-image latency of
`ForegroundClassifier.classify` (mean and p95, on the threads given). The matte is the photo's
ground-truth mask by default, or the engine's own matte with --matte model.

    .venv/bin/python bench/xtype.py [--quality DIR] [--threads 1] [--matte gt|model] [-v]
"""

from __future__ import annotations

import argparse
import csv
import pathlib
import sys
import time

import numpy as np
from PIL import Image

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from engine.classify import TYPES, ForegroundClassifier  # noqa: E402

# meta.csv's categories mapped to X-Type values (issue 3).
CATEGORY_TYPE = {
    "person": "person", "animal": "animal", "car": "car", "vehicle": "car",
    "product": "product", "toy": "product", "object": "other", "plant": "other",
}
DEFAULT_QUALITY = pathlib.Path(__file__).resolve().parents[2] / "shared" / "quality"


def _model_matte():
    """The engine's own matte (the default segmentation checkpoint), as the service computes it."""
    from engine.models.families import Segmenter

    found = _manifest()
    return Segmenter(found.preference(), found.family, openvino_cache=found.openvino_cache).matte


def _manifest():
    from engine.config import DEFAULT_CHECKPOINT
    from engine.models import manifest
    from modelprep.fetch import cache_dir

    return manifest.load(cache_dir(), DEFAULT_CHECKPOINT)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quality", type=pathlib.Path, default=DEFAULT_QUALITY)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--matte", choices=["gt", "model"], default="gt")
    ap.add_argument("-v", "--verbose", action="store_true", help="one line per photo")
    ns = ap.parse_args(argv)

    root = ns.quality / "grabcut50"
    rows = list(csv.DictReader((root / "meta.csv").open()))
    unknown = {r["category"] for r in rows} - CATEGORY_TYPE.keys()
    if unknown:
        sys.exit(f"meta.csv has categories with no X-Type mapping: {sorted(unknown)}")
    found = _manifest()
    classifier = ForegroundClassifier(found.xtype["detector"], found.xtype["classifier"], found.openvino_cache,
                                      threads=ns.threads)
    matte_of = None
    if ns.matte == "model":
        matte_of = _model_matte()

    confusion = {t: {p: 0 for p in TYPES} for t in TYPES}
    latencies = []
    for r in rows:
        image = Image.open(root / r["image"]).convert("RGB")
        if matte_of is None:
            matte = np.asarray(Image.open(root / r["mask"]).convert("L"))
        else:
            matte = matte_of(image)
        start = time.perf_counter()
        pred = classifier.predict(image, matte)
        latencies.append(time.perf_counter() - start)
        truth = CATEGORY_TYPE[r["category"]]
        confusion[truth][pred.type] += 1
        if ns.verbose:
            mark = "  " if pred.type == truth else "XX"
            print(f"{mark} {r['image']:22s} {truth:8s} -> {pred.type:8s} ({pred.detail}) "
                  f"[{r['subject'][:40]}]")

    total = sum(sum(row.values()) for row in confusion.values())
    right = sum(confusion[t][t] for t in TYPES)
    print(f"\nX-Type on {total} photos ({root}), matte={ns.matte}")
    print(f"overall accuracy: {right}/{total} = {100 * right / total:.1f}%")
    for t in TYPES:
        n = sum(confusion[t].values())
        if n:
            print(f"  {t:8s} {confusion[t][t]:3d}/{n:<3d} = {100 * confusion[t][t] / n:5.1f}%")
    print("\nconfusion (rows: truth, columns: predicted)")
    print(" " * 10 + "".join(f"{p:>9s}" for p in TYPES))
    for t in TYPES:
        print(f"{t:10s}" + "".join(f"{confusion[t][p]:9d}" for p in TYPES))
    lat = np.array(latencies) * 1000
    print(f"\nlatency per photo ({ns.threads} thread(s)): mean {lat.mean():.1f} ms, "
          f"p50 {np.percentile(lat, 50):.1f} ms, p95 {np.percentile(lat, 95):.1f} ms, "
          f"first {lat[0]:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
