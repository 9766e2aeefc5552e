"""python -m bench.quality.tune [--sets ...] [--limit N] [--edges | --edges-only | --mirror-only]

Sweeps the engine's data-chosen settings on the TUNED part of every set only (splits.py), so that
`make bench-quality`'s held-out part judges them on photos they were not chosen on (issue 15):

- geometry: from which aspect ratio on the net also sees the photo squashed into its square
  (Engine(square_view_from=...)), and how the two mattes are joined (Engine(view_join=...),
  engine/matte.join_views). Each photo is cut out with the aspect-kept view alone and with both
  views by each join; a threshold t gives each photo the first when its aspect is under t, so
  every (join, t) is scored from those runs. Chosen: the highest mean IoU over the sets (each set
  counting once) from MIN_FROM up, ties to the lower mean MAE, then the higher t (fewer second
  inferences).
- under which solid area (share of the frame) the whole views count as having found nothing, so
  that the square tiles look anyway (Engine(tiles_when_under=...)): chosen the same way.
- under which agreement of the two whole views (IoU of their solid areas) the tiles look too
  (Engine(tiles_when_views_agree_under=...)), jointly with how sure what such a tile adds must be
  (Engine(disagreed_tile_sure=...)): chosen the same way.
- which small holes in the subject engine/refine.clean_matte fills: from which mean of the net's
  matte over the hole (Engine(hole_fill_over=...)): chosen the same way.
- which holes max-open keeps open where the views disagree: under which mean matte a view's hole
  counts as seen clear through (Engine(clear_hole_under=...), engine/matte.clear_holes): chosen
  the same way.
- on frames the squashed view sees, under which share of what the whole views found the answer keeps
  (alpha >= 128) so that the tiles look too, once (Engine(retry_when_kept_under=...); an empty
  answer always is): judged by issue 15's checks on the tuned part, as the edges below.
- with --edges, engine/refine's edge settings (the contrast curve, both guided filters, the blend),
  one at a time from the current ones (EDGE_GRID; passes repeat while one takes a step, at most
  EDGE_PASSES), on every set: judged by issue 15's checks
  against rembg's cut-outs of the tuned part (fewest failing, then the least shortfall), a step
  taken only when it is no worse on either half of the tuned part (halves(): a soft set's tuned
  part is 7 photos, and steps that few of them carried did not hold out). With
  --edges-only, those alone from the engine's committed view settings: tune.md's edges section is
  replaced, the rest kept.
- with --mirror-only, whether the net also sees each view mirrored (EngineConfig.mirror), the other
  settings as committed: judged by the checks as the edges, ties to off; its section replaced.
- with --looks-only, which further looks at each view the net takes (scaled, or shifted against
  its stride grid), averaged in where the first answer is unsure (EngineConfig.looks, LOOKS), the
  other settings as committed: judged by the checks as the edges, looks taken over none only
  when no worse on either half of the tuned part too, ties to fewer pixels for the net; its
  section replaced.

The net's matte of each view is computed once (the engine's matte cache, sized to hold them all)
and reused by every setting. Writes bench-results/tune.md and prints it.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import io
import itertools
import math
import os
import pathlib
import sys

import numpy as np
from PIL import Image

from bench.quality import datasets, generated, report, splits
from bench.quality.metrics import score

THRESHOLDS = (1.0, 1.2, 1.4, 1.55, 1.7, 2.0, 2.5, math.inf)
# The cost bound: photos of 4:3 or squarer (most cameras', and issue 6's speed benchmark's) keep
# one inference; two views there would halve the service's throughput. The sweep's table still
# shows what lower thresholds would give.
MIN_FROM = 1.4
JOINS = ("max", "max-open", "components")
ADDED = (0.0, 0.0005, 0.001, 0.003, 0.01)
# Solid area (share of the frame) under which the whole views count as having found nothing, so
# that the tiles look anyway (Engine(tiles_when_under=...)); 0: never.
FOUND_LITTLE = (0.0, 0.0005, 0.001, 0.003, 0.01)
# IoU of the two whole views' solid areas under which they count as disagreeing, so that the tiles
# look too (Engine(tiles_when_views_agree_under=...)); 0: never.
AGREE = (0.0, 0.05, 0.2, 0.4, 0.6)
# With each of them: the share of a tile's new find that must be sure (Engine(disagreed_tile_sure=...)).
SURE = (0.0, 0.1, 0.2, 0.3)
# The net's mean over a small hole from which engine/refine.clean_matte fills it
# (Engine(hole_fill_over=...)): 0 fills every small hole; 0.5 none (a hole is where the matte is under 0.5).
HOLE_FILL_OVER = (0.0, 0.15, 0.3, 0.4, 0.5)
# The view's mean matte over a hole under which max-open keeps the hole open (Engine(clear_hole_under=...)).
CLEAR_UNDER = (0.05, 0.1, 0.2, 0.3)
# The share of the whole views' find (matte > 0.1) under which the answer counts as having kept too
# little of it (Engine(retry_when_kept_under=...)); 0: only an empty answer.
KEPT_UNDER = (0.0, 0.05, 0.1, 0.2)
# engine/refine.EdgeStyle's fields and the values tried for each, one field at a time from the
# current settings (coordinate descent, in this order, each step keeping the best so far).
# `low` stays above 0: at 0 the net's faint noise over a background (~0.001-0.01) comes out as
# alpha 1-2 everywhere, and a transparent background must stay 0 (tests/e2e/test_parameters.py).
EDGE_GRID = {
    "low": (0.02, 0.04, 0.08), "high": (0.75, 0.85, 0.95), "small": (1, 2, 3),
    "eps": (2e-5, 5e-5, 1e-4, 2e-4), "wide": (26, 34, 42), "reach": (5, 7, 9), "wide_at": (0.3, 0.5, 0.8),
    "narrow_lift": (0.0, 0.04, 0.08, 0.17), "narrow_under": (0.3, 0.4, 0.5), "wide_over": (0.6, 0.8, 0.9, 1.0),
    # The texture blur last (0: off), then its gate's settings, which matter only once it is on.
    "texture_blur": (0.0, 1.0, 1.5, 2.0, 2.5), "texture_window": (2, 3, 4), "texture_coherent": (0.3, 0.5, 0.7),
    "texture_unsure": (0.3, 0.6, 1.0), "texture_mid": (0.0, 0.3, 0.4, 0.5, 0.6),
}
# Coordinate descent's passes over EDGE_GRID at most (each further pass only while the last moved).
EDGE_PASSES = 3
# Further looks at each view (EngineConfig.looks): (scale, shift against the net's stride grid in
# pixels); each costs about scale² of a view's inference. Averaged in everywhere (no gate), every
# one tried lost on a half of the tuned part; gated, 1:16,0.875 won there and lost held-out
# (README, Quality).
LOOKS = ((), ((1.0, 16),), ((0.875, 0),), ((1.0, 16), (0.875, 0)))


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def command_of(argv: list[str] | None) -> str:
    """The command line that made a report (argv as main() got it, or the process's)."""
    return f"python -m bench.quality.tune {' '.join(argv if argv is not None else sys.argv[1:])}"


def now() -> str:
    return f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M}"


def aspect(path: pathlib.Path) -> float:
    with Image.open(path) as image:
        return max(image.size) / min(image.size)


def cut(engine, samples: list[datasets.Sample]) -> list[dict[str, float]]:
    from engine.types import RemovalOptions

    options = RemovalOptions(channels="alpha", output_format="png")
    scores = []
    for sample in samples:
        alpha = np.asarray(Image.open(io.BytesIO(engine.remove(sample.image.read_bytes(), options).data)).convert("L"))
        scores.append(score(alpha.astype(np.float32) / 255.0, sample.truth(), sample.valid()))
    return scores


def set_means(scores: list[dict[str, float]]) -> dict[str, float]:
    return {metric: report.mean([s[metric] for s in scores]) for metric in scores[0]}


def pick_threshold(per_set: dict[str, tuple[list[float], list[dict], dict[str, list[dict]]]],
                   min_from: float = MIN_FROM) -> tuple[tuple[str, float], list[str]]:
    """per_set: {set: (aspects, scores with one view, {join: scores with both views})} ->
    ((chosen join, chosen t), table lines): the highest mean IoU over the sets among thresholds of
    at least `min_from`, ties (to 4 places) to the lower mean MAE, then to the higher t."""
    names = list(per_set)
    joins = list(next(iter(per_set.values()))[2])
    lines = ["| join | from aspect | " + " | ".join(f"{n} IoU" for n in names)
             + " | mean IoU | mean MAE | mean BF | two views |",
             "|---|---:|" + "---:|" * (len(names) + 4)]
    rows = []
    for join in joins:
        for t in THRESHOLDS:
            ious, maes, bfs, twice, total = [], [], [], 0, 0
            for name in names:
                aspects, one, both = per_set[name]
                chosen = [b if a >= t and a > 1.0 else o for a, o, b in zip(aspects, one, both[join])]
                twice += sum(a >= t and a > 1.0 for a in aspects)
                total += len(aspects)
                means = set_means(chosen)
                ious.append(means["IoU"])
                maes.append(means["MAE"])
                bfs.append(means["BF"])
            rows.append((join, t, ious, report.mean(ious), report.mean(maes), report.mean(bfs), twice / total))
    best = max((r for r in rows if r[1] >= min_from), key=lambda r: (round(r[3], 4), -round(r[4], 5), r[1]))[:2]
    for join, t, ious, iou, mae, bf, share in rows:
        mark = " **chosen**" if (join, t) == best else ""
        lines.append(f"| {join} | {t:g}{mark} | " + " | ".join(f"{v:.4f}" for v in ious)
                     + f" | {iou:.4f} | {mae:.5f} | {bf:.4f} | {share * 100:.0f} % |")
    return best, lines


def edge_objective(ours: dict[str, list[dict[str, float]]], rembg: dict[str, dict[str, list[dict[str, float]]]],
                   samples: dict[str, list[datasets.Sample]]) -> tuple[int, float]:
    """Issue 15's checks (report.set_checks) on the tuned part against rembg's cut-outs of it:
    (how many fail, the sum of their shortfalls); lower is better, in that order."""
    failed, short = 0, 0.0
    for name, scores in ours.items():
        result = report.SetResult(name, ["ours", *rembg])
        for i, sample in enumerate(samples[name]):
            result.rows.append((sample.stem, sample.category,
                                {"ours": scores[i], **{m: per[name][i] for m, per in rembg.items()}}))
        for check in report.set_checks(result):
            failed += not check.held
            short += check.shortfall
    return failed, short


def objective_key(objective: tuple[int, float]) -> tuple[int, float]:
    """An edge_objective as compared: failing checks, then the shortfall to 4 decimals."""
    return objective[0], round(objective[1], 4)


def no_worse_on_halves(by_half: list[tuple[int, float]], base: list[tuple[int, float]]) -> bool:
    """Whether half_objectives `by_half` are no worse than `base`'s on every half."""
    return all(objective_key(h) <= objective_key(b) for h, b in zip(by_half, base))


def halves(samples: dict[str, list[datasets.Sample]]) -> list[dict[str, list[int]]]:
    """The tuned part in two halves, [{set: indices into samples[set]}] * 2, by the real photo each
    image shows (a composite goes with its subject's photo, in every set alike): each set's source
    photos ordered by a seeded hash and dealt alternately, so the halves are as even as can be."""
    found: list[dict[str, list[int]]] = [{}, {}]
    for name, chosen in samples.items():
        origin = generated.SOURCE.get(name, name)
        sources = sorted({generated.source_stem(name, s.stem) for s in chosen},
                         key=lambda stem: splits.key(f"{origin}/halves", stem))
        side = {stem: i % 2 for i, stem in enumerate(sources)}
        for half in found:
            half[name] = []
        for i, sample in enumerate(chosen):
            found[side[generated.source_stem(name, sample.stem)]][name].append(i)
    return found


def half_objectives(ours: dict[str, list[dict[str, float]]], rembg: dict[str, dict[str, list[dict[str, float]]]],
                    samples: dict[str, list[datasets.Sample]],
                    parts: list[dict[str, list[int]]]) -> list[tuple[int, float]]:
    """edge_objective on each of `parts` (halves()) alone."""
    found = []
    for part in parts:
        names = [n for n in ours if part.get(n)]

        def pick(per: dict[str, list]) -> dict[str, list]:
            return {n: [per[n][i] for i in part[n]] for n in names}

        found.append(edge_objective(pick(ours), {m: pick(per) for m, per in rembg.items()}, pick(samples)))
    return found


def rembg_scores(samples: dict[str, list[datasets.Sample]]) -> dict[str, dict[str, list[dict[str, float]]]]:
    """{rembg method: {set: per-photo scores}} of the tuned part (rembg's cut-outs are cached)."""
    from bench.quality.__main__ import build_methods, model_file

    model, family = model_file()
    found = {}
    for method in build_methods(["rembg", "rembg-matting"], model, family, None):
        found[method.name] = {}
        for name, chosen in samples.items():
            cutouts = method.cutouts([s.image for s in chosen])
            found[method.name][name] = [score(c.alpha, s.truth(), s.valid()) for c, s in zip(cutouts, chosen)]
    return found


def edge_steps(fields: list[str] | None = None) -> dict[tuple[str, ...], list[tuple[float, ...]]]:
    """The sweep's steps, {fields: their values together}: each of EDGE_GRID's fields alone, or
    only those named, where "a+b" moves a and b jointly over every pair of their grid's values
    (settings that pay only together, as the texture blur's strength and its gate)."""
    found = {}
    for entry in fields if fields is not None else list(EDGE_GRID):
        names = tuple(entry.split("+"))
        found[names] = list(itertools.product(*(EDGE_GRID[n] for n in names)))
    return found


def cuts_as(style):
    """`style` with what cannot change its cut set as committed: with the texture blur off, its
    gate's settings (so a sweep runs such styles once)."""
    from engine import refine

    if style.texture_blur:
        return style
    return dataclasses.replace(style, **{f: getattr(refine.STYLE, f) for f in EDGE_GRID
                                         if f.startswith("texture_") and f != "texture_blur"})


def sweep_edges(engine, samples: dict[str, list[datasets.Sample]], sets: list[str],
                rembg: dict | None = None, fields: list[str] | None = None) -> list[str]:
    """Coordinate descent over EDGE_GRID from engine/refine.STYLE, judged by edge_objective; the
    report's lines. `rembg`: rembg_scores of those sets, if the caller has them; `fields`: only
    these of EDGE_GRID (default all; "a+b" for two jointly, edge_steps)."""
    from engine import refine

    rembg = rembg if rembg is not None else rembg_scores({n: samples[n] for n in sets})

    def run(style) -> dict[str, list[dict[str, float]]]:
        engine.edge_style = style
        return {n: cut(engine, samples[n]) for n in sets}

    parts = halves({n: samples[n] for n in sets})
    current = run(refine.STYLE)
    best_style, best_score = refine.STYLE, edge_objective(current, rembg, samples)
    best_halves = half_objectives(current, rembg, samples, parts)
    rows = [("current", refine.STYLE, current, best_score, best_halves)]
    grid = edge_steps(fields)
    tried = {cuts_as(refine.STYLE)}
    # Further passes while the last one took a step: a step refused at first (say, by a half) can
    # pass once a later field has moved. Settings that pay only together need "a+b" (edge_steps).
    for sweep in range(1, EDGE_PASSES + 1):
        moved = False
        for names, values in grid.items():
            for value in values:
                style = dataclasses.replace(best_style, **dict(zip(names, value)))
                if cuts_as(style) in tried:
                    continue
                tried.add(cuts_as(style))
                scores = run(style)
                objective = edge_objective(scores, rembg, samples)
                by_half = half_objectives(scores, rembg, samples, parts)
                label = " + ".join(f"{f} {v:g}" for f, v in zip(names, value)) + (f" (pass {sweep})" if sweep > 1 else "")
                rows.append((label, style, scores, objective, by_half))
                log(f"edges {label}: {objective[0]} checks fail, shortfall {objective[1]:.4f}; halves "
                    + " / ".join(f"{h[0]} ({h[1]:.4f})" for h in by_half))
                # Better overall and worse on neither half: a step that a few photos carry is not taken.
                if objective_key(objective) < objective_key(best_score) and no_worse_on_halves(by_half, best_halves):
                    best_style, best_score, best_halves, moved = style, objective, by_half, True
        if not moved:
            break
    shown = list(EDGE_GRID)
    swept = "" if fields is None else f" Swept: {', '.join(' and '.join(n) + (' jointly' if len(n) > 1 else '') for n in grid)} only."
    lines = ["", "## Edges: engine/refine's settings, one at a time from the current ones, on every set's tuned part", "",
             "Objective: issue 15's checks on the tuned part against rembg's and rembg+matting's cut-outs of it "
             "(bench/quality/report.set_checks): fewest failing, then the least summed shortfall; a step is taken "
             "only when it is also no worse on either half of the tuned part (tune.halves: by source photo), "
             "judged alone. Each step starts from the best so far; passes over the fields repeat while one takes a "
             f"step (at most {EDGE_PASSES}); from {', '.join(f'{f} {getattr(refine.STYLE, f):g}' for f in shown)}.{swept} Chosen: "
             f"{', '.join(f'{f} {getattr(best_style, f):g}' for f in shown)} ({best_score[0]} failing, shortfall "
             f"{best_score[1]:.4f}).", "",
             "| step | " + " | ".join(f"{n} SAD / Grad / BF" for n in sets)
             + " | failing | shortfall | halves failing (shortfall) |",
             "|---|" + "---:|" * (len(sets) + 3)]
    for name, style, scores, (failed, short), by_half in rows:
        mark = " **chosen**" if style == best_style else ""
        means = {n: set_means(scores[n]) for n in sets}
        lines.append(f"| {name}{mark} | " + " | ".join(
            f"{means[n]['SAD']:.2f} / {means[n]['Grad']:.2f} / {means[n]['BF']:.4f}" for n in sets)
            + f" | {failed} | {short:.4f} | " + " / ".join(f"{h[0]} ({h[1]:.4f})" for h in by_half) + " |")
    rembg_means = {m: {n: set_means(per[n]) for n in sets} for m, per in rembg.items()}
    for method, means in rembg_means.items():
        lines.append(f"| {method} | " + " | ".join(
            f"{means[n]['SAD']:.2f} / {means[n]['Grad']:.2f} / {means[n]['BF']:.4f}" for n in sets) + " | | | |")
    return lines


def _label(share: float | tuple[float, ...]) -> str:
    return " / ".join(f"{v:g}" for v in (share if isinstance(share, tuple) else (share,)))


def looks_label(looks: tuple[tuple[float, int], ...]) -> str:
    """EngineConfig.looks as CLEARBG_NET_LOOKS writes them ("none" for none)."""
    return ",".join(f"{scale:g}:{shift}" if shift else f"{scale:g}" for scale, shift in looks) or "none"


def sweep_shares(make_engine, shares: tuple, samples: dict[str, list[datasets.Sample]],
                 what: str) -> tuple:
    """Each share of the frame (a threshold of an Engine made by make_engine(share); a tuple of
    them for a joint sweep) on every set -> (the chosen share, {share: {set: means}}): the best mean
    IoU over the sets, ties to the lower mean MAE, then the smaller share (element by element)."""
    found = {}
    for share in shares:
        engine = make_engine(share)
        found[share] = {name: set_means(cut(engine, chosen)) for name, chosen in samples.items()}
        log(f"{what} {_label(share)}: IoU " + ", ".join(f"{n} {m['IoU']:.4f}" for n, m in found[share].items()))
    best = max(found, key=lambda f: (round(report.mean([m["IoU"] for m in found[f].values()]), 4),
                                     -round(report.mean([m["MAE"] for m in found[f].values()]), 5),
                                     tuple(-v for v in (f if isinstance(f, tuple) else (f,)))))
    return best, found


def sweep_by_checks(make_engine, values: tuple, samples: dict[str, list[datasets.Sample]], what: str,
                    rembg: dict | None = None, parts: list | None = None, by_half: dict | None = None,
                    cost=None, name_of=_label) -> tuple:
    """Each value (an Engine made by make_engine(value)) on every set -> (the chosen value,
    {value: {set: means}}, {value: (failing, shortfall)}): judged by issue 15's checks against
    rembg's cut-outs of the tuned part (edge_objective), ties to the lower `cost(value)` (default:
    the smaller value). With `parts` (halves()), a value other than the first is chosen only when
    it is also no worse than the first on each part; `by_half` gets {value: half_objectives}.
    `name_of(value)` names a value in the log."""
    rembg = rembg if rembg is not None else rembg_scores(samples)
    found, judged = {}, {}
    by_half = {} if by_half is None else by_half
    for value in values:
        engine = make_engine(value)
        scores = {name: cut(engine, chosen) for name, chosen in samples.items()}
        found[value] = {name: set_means(s) for name, s in scores.items()}
        judged[value] = edge_objective(scores, rembg, samples)
        if parts is not None:
            by_half[value] = half_objectives(scores, rembg, samples, parts)
        log(f"{what} {name_of(value)}: {judged[value][0]} checks fail, shortfall {judged[value][1]:.4f}"
            + (f", halves {by_half[value]}" if parts is not None else ""))
    allowed = [v for v in values if parts is None or v == values[0] or no_worse_on_halves(by_half[v], by_half[values[0]])]
    best = min(allowed, key=lambda v: (*objective_key(judged[v]), cost(v) if cost else v))
    return best, found, judged


def share_table(label: str, found: dict, chosen, judged: dict | None = None, name_of=_label) -> list[str]:
    """sweep_shares' (or sweep_by_checks') results as a table's lines, the chosen share marked;
    `name_of(value)` names a row."""
    names = list(next(iter(found.values())))
    checks = " failing | shortfall |" if judged else ""
    return [f"| {label} | " + " | ".join(f"{n} IoU" for n in names) + " | mean IoU | mean MAE |" + checks,
            "|---:|" + "---:|" * (len(names) + 2 + 2 * bool(judged)),
            *(f"| {name_of(f)}{' **chosen**' if f == chosen else ''} | " + " | ".join(f"{m['IoU']:.4f}" for m in means.values())
              + f" | {report.mean([m['IoU'] for m in means.values()]):.4f}"
              f" | {report.mean([m['MAE'] for m in means.values()]):.5f} |"
              + (f" {judged[f][0]} | {judged[f][1]:.4f} |" if judged else "")
              for f, means in found.items())]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.quality.tune", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    all_sets = (*datasets.SETS, *generated.SETS)
    parser.add_argument("--sets", default=",".join(all_sets), help=f"comma-separated, from {', '.join(all_sets)}")
    parser.add_argument("--limit", type=int, default=None, help="first N photos of each set's tuned part")
    edges = parser.add_mutually_exclusive_group()
    edges.add_argument("--edges", action="store_true", help="also sweep engine/refine's edge settings")
    edges.add_argument("--edges-only", action="store_true",
                       help="sweep the edge settings alone, from the engine's committed view settings")
    edges.add_argument("--mirror-only", action="store_true",
                       help="judge the mirrored view (on or off) alone, with the other settings as committed")
    edges.add_argument("--looks-only", action="store_true",
                       help="judge the further looks at each view alone, with the other settings as committed")
    parser.add_argument("--edge-fields", default=None,
                        help="with --edges-only: only these of EDGE_GRID's fields, comma-separated (default all); "
                             "a+b sweeps a and b jointly")
    parser.add_argument("--quality-dir", type=pathlib.Path, default=None)
    parser.add_argument("--out", type=pathlib.Path, default=datasets.REPO / "bench-results")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.edge_fields and not args.edges_only:
        parser.error("--edge-fields goes with --edges-only")
    fields = args.edge_fields.split(",") if args.edge_fields else None
    try:  # a misspelt field refused at once, not after the net has seen every photo
        edge_steps(fields)
    except KeyError:
        parser.error(f"--edge-fields: choose from {', '.join(EDGE_GRID)} (a+b: those two jointly)")
    if os.nice(0) < 10:  # the CPU is shared
        os.nice(10 - os.nice(0))

    from engine.pipeline import (ADDED_AT_LEAST, RETRY_WHEN_KEPT_UNDER, SQUARE_VIEW_FROM, TILE_VIEWS_FROM,
                                 TILES_WHEN_UNDER, TILES_WHEN_VIEWS_AGREE_UNDER, DISAGREED_TILE_SURE, VIEW_JOIN,
                                 Engine)
    from engine.matte import CLEAR_HOLE
    from engine.refine import HOLE_FILL_OVER as HOLE_FILL_OVER_NOW
    from service.config import Settings

    root = args.quality_dir or datasets.default_root()
    sets = [s for s in args.sets.split(",") if s]
    # Every view of the tuned part held (~4 MB each): the sweeps re-run the rest, never the net.
    config = dataclasses.replace(Settings.from_environ().engine_config(threads=args.threads, matte_cache_mb=2**16),
                                 xtype=False)
    segmenter = Engine.from_config(config).segmenter
    samples = {name: datasets.load(root if name in datasets.SETS else generated.build(root, log=log), name,
                                   args.limit, (splits.TUNED,)) for name in sets}

    if args.edges_only:
        return edges_only(Engine(segmenter), samples, sets, args.out, argv, fields)
    if args.looks_only:
        def with_looks(looks: tuple[tuple[float, int], ...]):
            return Engine(Engine.from_config(dataclasses.replace(config, looks=looks, xtype=False)).segmenter)

        return looks_only(with_looks, samples, sets, args.out, argv, config.looks)
    if args.mirror_only:
        other = Engine.from_config(dataclasses.replace(config, mirror=not config.mirror)).segmenter
        segmenters = {config.mirror: segmenter, not config.mirror: other}
        return mirror_only(lambda mirror: Engine(segmenters[mirror]), samples, sets, args.out, argv, config.mirror)

    # The views are swept first as they are, without the tiles' look where they found nothing (below).
    views = dict(tiles_when_under=0.0)
    per_set = {}
    for name in sets:
        one = cut(Engine(segmenter, square_view_from=math.inf, tile_views_from=math.inf, **views), samples[name])
        both = {join: cut(Engine(segmenter, square_view_from=1.0, view_join=join, tile_views_from=math.inf, **views),
                          samples[name])
                for join in JOINS}
        per_set[name] = ([aspect(s.image) for s in samples[name]], one, both)
        log(f"{name}: IoU one view {set_means(one)['IoU']:.4f}, "
            + ", ".join(f"both by {join} {set_means(b)['IoU']:.4f}" for join, b in both.items()))
    (join, chosen), lines = pick_threshold(per_set)
    tiled = {}
    for name in sets:
        aspects, _, _ = per_set[name]
        geometry = cut(Engine(segmenter, square_view_from=chosen, view_join=join, tile_views_from=math.inf, **views),
                       samples[name])
        tiles = cut(Engine(segmenter, square_view_from=chosen, view_join=join, tile_views_from=1.0, **views), samples[name])
        tiled[name] = (aspects, geometry, {"tiles": tiles})
        log(f"{name}: IoU {join} from {chosen:g} {set_means(geometry)['IoU']:.4f}, with tiles {set_means(tiles)['IoU']:.4f}")
    (_, tiles_from), tile_lines = pick_threshold(tiled)
    when_under, little = sweep_shares(
        lambda f: Engine(segmenter, square_view_from=chosen, view_join=join, tile_views_from=tiles_from,
                         tiles_when_under=f), FOUND_LITTLE, samples, "tiles when under")
    pairs = tuple((a, sure) for a in AGREE for sure in (SURE if a > 0 else (0.0,)))
    (agree_under, tile_sure), agreed = sweep_shares(
        lambda f: Engine(segmenter, square_view_from=chosen, view_join=join, tile_views_from=tiles_from,
                         tiles_when_under=when_under, tiles_when_views_agree_under=f[0], disagreed_tile_sure=f[1]),
        pairs, samples, "agree under / sure")
    disagreed = dict(tiles_when_views_agree_under=agree_under, disagreed_tile_sure=tile_sure)
    least, added = sweep_shares(
        lambda f: Engine(segmenter, square_view_from=chosen, view_join=join, tile_views_from=tiles_from,
                         tiles_when_under=when_under, **disagreed, added_at_least=f),
        ADDED, samples, "added at least")
    fill_over, holes = sweep_shares(
        lambda f: Engine(segmenter, square_view_from=chosen, view_join=join, tile_views_from=tiles_from,
                         tiles_when_under=when_under, **disagreed, added_at_least=least, hole_fill_over=f),
        HOLE_FILL_OVER, samples, "holes filled from")
    clear_under, cleared = sweep_shares(
        lambda f: Engine(segmenter, square_view_from=chosen, view_join=join, tile_views_from=tiles_from,
                         tiles_when_under=when_under, **disagreed, added_at_least=least, hole_fill_over=fill_over,
                         clear_hole_under=f),
        CLEAR_UNDER, samples, "clear holes under")
    settled = dict(hole_fill_over=fill_over, clear_hole_under=clear_under)
    rembg = rembg_scores(samples)  # rembg's cut-outs of the tuned part (cached): the checks' yardstick
    kept_under, retried, retry_checks = sweep_by_checks(
        lambda f: Engine(segmenter, square_view_from=chosen, view_join=join, tile_views_from=tiles_from,
                         tiles_when_under=when_under, **disagreed, added_at_least=least, **settled,
                         retry_when_kept_under=f),
        KEPT_UNDER, samples, "retry when kept under", rembg)
    md = [
        "# Settings swept on the tuned part (bench/quality/tune.py)",
        "",
        f"- command: `{command_of(argv)}`; {now()} UTC; `{segmenter.model_path}`",
        f"- photos (tuned part only): " + ", ".join(f"{n} {len(samples[n])}" for n in sets),
        "",
        "## Geometry: from which aspect ratio the squashed square view joins the aspect-kept one, and how",
        "",
        "Mean over each set's tuned part (all its photos), per join and threshold; 'two views': the share of "
        f"photos that run the net twice. Chosen: the best mean IoU from {MIN_FROM:g} up (squarer photos keep "
        f"one inference: the service's speed), ties to the lower MAE: {join} from {chosen:g}; "
        f"engine/pipeline.py has {VIEW_JOIN} from {SQUARE_VIEW_FROM:g}.",
        "",
        *lines,
        "",
        "## Tiles: from which aspect ratio square tiles along the long side join too",
        "",
        f"With the geometry chosen above ({join} from {chosen:g}); 'two views' here: the share of photos that "
        f"also run the tiles (ceil(aspect) more inferences). Chosen the same way: from {tiles_from:g}; "
        f"engine/pipeline.py TILE_VIEWS_FROM is {TILE_VIEWS_FROM:g}.",
        "",
        *tile_lines,
        "",
        "## When the whole views found (almost) nothing: under which solid area (share of the frame) the tiles look",
        "",
        f"With the views chosen above; chosen the same way (best mean IoU, ties to the lower MAE, then the smaller "
        f"share: fewer photos pay for the tiles): {when_under:g}; engine/pipeline.py TILES_WHEN_UNDER is "
        f"{TILES_WHEN_UNDER:g}.",
        "",
        *share_table("under", little, when_under),
        "",
        "## When the whole views disagree: under which IoU of their solid areas the tiles look, and how sure their finds must be",
        "",
        f"With the views chosen above; such tiles add only what no whole view found, when at least 'sure' of it "
        f"is >= 0.9. Chosen the same way (best mean IoU, ties to the lower MAE, then the lower IoU: fewer photos "
        f"pay for the tiles): {agree_under:g} / {tile_sure:g}; engine/pipeline.py has "
        f"{TILES_WHEN_VIEWS_AGREE_UNDER:g} / {DISAGREED_TILE_SURE:g}.",
        "",
        *share_table("agree under / sure", agreed, (agree_under, tile_sure)),
        "",
        "## What only the further views found: from which solid area (share of the frame) it is kept",
        "",
        f"With the views chosen above; chosen the same way (best mean IoU, ties to the lower MAE, then the "
        f"smaller share): {least:g}; engine/pipeline.py ADDED_AT_LEAST is {ADDED_AT_LEAST:g}.",
        "",
        *share_table("at least", added, least),
        "",
        "## Small holes in the subject: from which mean of the net's matte over one it is filled",
        "",
        f"With everything chosen above; chosen the same way (best mean IoU, ties to the lower MAE, then the "
        f"lower mean: more holes filled, as before the setting): {fill_over:g}; engine/refine.py HOLE_FILL_OVER "
        f"is {HOLE_FILL_OVER_NOW:g}.",
        "",
        *share_table("filled from", holes, fill_over),
        "",
        "## Holes one view sees clear through: under which mean of that view's matte max-open keeps one open",
        "",
        f"With everything chosen above; chosen the same way (best mean IoU, ties to the lower MAE, then the "
        f"lower level): {clear_under:g}; engine/matte.py CLEAR_HOLE is {CLEAR_HOLE:g}.",
        "",
        *share_table("clear under", cleared, clear_under),
        "",
        "## An answer that kept little of the whole views' find: under which share of it the tiles look too",
        "",
        f"With everything chosen above. Judged by issue 15's checks against rembg's cut-outs of the tuned part "
        f"(fewest failing, then the least shortfall, then the smaller share: fewer photos pay for the tiles), "
        f"not by mean IoU: the tiles raise IoU on a hesitant find and its gradient error with it. Chosen: "
        f"{kept_under:g}; engine/pipeline.py RETRY_WHEN_KEPT_UNDER is {RETRY_WHEN_KEPT_UNDER:g}.",
        "",
        *share_table("kept under", retried, kept_under, retry_checks),
    ]
    if args.edges:
        md += sweep_edges(Engine(segmenter, square_view_from=chosen, view_join=join, tile_views_from=tiles_from,
                                 tiles_when_under=when_under, **disagreed, added_at_least=least, **settled,
                                 retry_when_kept_under=kept_under), samples, sets,
                              rembg)
    text = "\n".join(md) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "tune.md").write_text(text)
    print(text)
    return 0


EDGES_HEADER = "## Edges:"


MIRROR_HEADER = "## Mirror:"


LOOKS_HEADER = "## Looks:"


def replace_section(out: pathlib.Path, header: str, lines: list[str]) -> str:
    """tune.md with its section under `header` (to the next "## " heading) replaced by `lines` (a
    blank, the header, ...), or those appended where it has none; the rest kept. Written and returned."""
    path = out / "tune.md"
    text = path.read_text() if path.is_file() else "# Settings swept on the tuned part (bench/quality/tune.py)\n"
    before, after = text, ""
    if header in text:
        start = text.index(header)
        end = text.find("\n## ", start)
        before, after = text[:start], (text[end + 1:] if end >= 0 else "")
    text = before.rstrip("\n") + "\n" + "\n".join(lines) + "\n" + ("\n" + after if after else "")
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return text


def from_line(argv: list[str] | None, model_path: str, what: str, samples: dict[str, list], sets: list[str]) -> str:
    return (f"From `{command_of(argv)}`, {now()} UTC, `{model_path}`, {what}; photos (tuned part only): "
            + ", ".join(f"{n} {len(samples[n])}" for n in sets) + ".")


def edges_only(engine, samples: dict[str, list[datasets.Sample]], sets: list[str], out: pathlib.Path,
               argv: list[str] | None, fields: list[str] | None = None) -> int:
    """sweep_edges from `engine`'s settings; its section replaces tune.md's edges section."""
    lines = sweep_edges(engine, samples, sets, fields=fields)
    below = next(i for i, line in enumerate(lines) if line.startswith(EDGES_HEADER)) + 2  # the header, a blank
    lines[below:below] = [from_line(argv, engine.segmenter.model_path, "the view settings as committed", samples, sets), ""]
    print(replace_section(out, EDGES_HEADER, lines))
    return 0


def mirror_only(make_engine, samples: dict[str, list[datasets.Sample]], sets: list[str], out: pathlib.Path,
                argv: list[str] | None, now_on: bool) -> int:
    """Whether the net also sees each view mirrored (make_engine(mirror)), judged by issue 15's
    checks on the tuned part, ties to off (half the net's time); its section replaces tune.md's."""
    chosen, found, judged = sweep_by_checks(make_engine, (False, True), samples, "mirror")
    lines = ["", f"{MIRROR_HEADER} whether the net also sees each view mirrored, the two answers averaged", "",
             from_line(argv, make_engine(True).segmenter.model_path, "the other settings as committed", samples, sets),
             "",
             "Judged by issue 15's checks against rembg's cut-outs of the tuned part (fewest failing, then the least "
             f"shortfall, then off: half the net's time). Chosen: {'on' if chosen else 'off'} (1 on, 0 off); "
             f"engine/config.py EngineConfig.mirror is {'on' if now_on else 'off'}.",
             "", *share_table("mirrored", found, chosen, judged)]
    print(replace_section(out, MIRROR_HEADER, lines))
    return 0


def looks_only(make_engine, samples: dict[str, list[datasets.Sample]], sets: list[str], out: pathlib.Path,
               argv: list[str] | None, now: tuple, candidates: tuple = LOOKS) -> int:
    """Which further looks at each view the net takes (make_engine(looks)), judged by issue 15's
    checks on the tuned part (fewest failing, then the least shortfall, then the fewest pixels for
    the net); looks are taken over none only when no worse on either half of the tuned part
    (halves()). Its section replaces tune.md's."""
    paths = []

    def engine_for(looks: tuple):
        engine = make_engine(looks)
        paths.append(engine.segmenter.model_path)
        return engine

    by_half: dict = {}
    chosen, found, judged = sweep_by_checks(engine_for, candidates, samples, "looks", parts=halves(samples),
                                            by_half=by_half, cost=lambda c: sum(scale * scale for scale, _ in c),
                                            name_of=looks_label)
    model_path = paths[-1]
    rows = share_table("looks", found, chosen, judged, looks_label)
    rows[0] += " halves (failing, shortfall) |"
    rows[1] += "---|"
    rows[2:] = [row + " " + "; ".join(f"{f} / {s:.4f}" for f, s in by_half[c]) + " |" for row, c in zip(rows[2:], candidates)]
    lines = ["", f"{LOOKS_HEADER} which further looks at each view the net takes, averaged in where the first answer is unsure", "",
             from_line(argv, model_path, "the other settings as committed", samples, sets),
             "",
             "Judged by issue 15's checks against rembg's cut-outs of the tuned part (fewest failing, then the least "
             "shortfall, then the fewest pixels for the net), looks taken over none only when no worse on either half "
             f"of the tuned part. Looks are scale or scale:shift (CLEARBG_NET_LOOKS). Chosen: {looks_label(chosen)}; "
             f"engine/config.py EngineConfig.looks is {looks_label(now)}.",
             "", *rows]
    print(replace_section(out, LOOKS_HEADER, lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
