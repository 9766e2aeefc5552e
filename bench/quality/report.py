"""Per-set and per-category means, as a Markdown table with the best method marked per metric."""

from __future__ import annotations

import math
import random
from collections import defaultdict
from dataclasses import dataclass, field

from bench.quality.datasets import TWO_PEOPLE_GROUP
from bench.quality.generated import source_stem
from bench.quality.metrics import METRICS

DECIMALS = {"IoU": 4, "MAE": 4, "SAD": 2, "MSE": 2, "Grad": 2, "BF": 4}


# Sets whose truth is soft alpha: there ours must beat the better rembg by SOFT_MARGIN in SAD and Grad.
SOFT_SETS = frozenset({"alphamatting14", "composites-alpha", "crops-alpha"})
SOFT_MARGIN = 0.10
# The metrics on which ours must be at least as good as the better rembg on every set.
CHECKED = ("IoU", "MAE", "SAD", "BF")
# A photo where ours keeps less than this share of what the better rembg keeps (IoU ratio) is listed.
RATIO_FLOOR = 0.5
# Resamples of a part's photos behind each check's holding share (checks()).
RESAMPLES = 1000


@dataclass
class SetResult:
    name: str
    methods: list[str]
    part: str = ""  # splits.TUNED or splits.HELD_OUT ("" when not split)
    # one per photo: (stem, category, {method: {metric: value}})
    rows: list[tuple[str, str, dict[str, dict[str, float]]]] = field(default_factory=list)

    def groups(self) -> list[tuple[str, list[dict[str, dict[str, float]]]]]:
        """("all", every photo but the two-people ones), then each category, largest first."""
        by_category: dict[str, list] = defaultdict(list)
        for _, category, scores in self.rows:
            by_category[category].append(scores)
        main = [s for _, c, s in self.rows if c != TWO_PEOPLE_GROUP]
        ordered = sorted(by_category.items(), key=lambda kv: (kv[0] == TWO_PEOPLE_GROUP, -len(kv[1]), kv[0]))
        label = "all" if len(main) == len(self.rows) else "all but two-people"
        return [(label, main)] + ordered


def mean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else float("nan")


def best(values: dict[str, float], higher_is_better: bool) -> set[str]:
    finite = {k: v for k, v in values.items() if not math.isnan(v)}
    if len(finite) < 2:
        return set()
    target = max(finite.values()) if higher_is_better else min(finite.values())
    return {k for k, v in finite.items() if v == target}


def _cell(value: float, decimals: int, bold: bool) -> str:
    text = "n/a" if math.isnan(value) else f"{value:.{decimals}f}"
    return f"**{text}**" if bold else text


def set_table(result: SetResult) -> str:
    lines = [
        f"| group | n | metric | {' | '.join(result.methods)} |",
        "|---|---:|---|" + "---:|" * len(result.methods),
    ]
    for label, scores in result.groups():
        if not scores:
            continue
        for metric, (_, higher, _) in METRICS.items():
            means = {m: mean([s[m][metric] for s in scores]) for m in result.methods}
            # Rounded first, so a tie in what is printed is marked as a tie.
            shown = {m: round(v, DECIMALS[metric]) for m, v in means.items()}
            winners = best(shown, higher)
            cells = [_cell(means[m], DECIMALS[metric], m in winners) for m in result.methods]
            lines.append(f"| {label} | {len(scores)} | {metric} | {' | '.join(cells)} |")
    return "\n".join(lines)


def metric_legend() -> str:
    parts = [f"**{name}** {'↑' if higher else '↓'} {text}" for name, (_, higher, text) in METRICS.items()]
    return "; ".join(parts) + "."


def colour_table(methods: list[str], cases: list[tuple[str, int, dict[str, dict[str, float]]]]) -> str:
    """cases: (name, band pixels, {method: colour_error dict})."""
    lines = [
        f"| photo | band px | {' | '.join(methods)} | photo's own colour |",
        "|---|---:|" + "---:|" * (len(methods) + 1),
    ]
    rows = list(cases)
    if len(rows) > 1:
        rows.append(("mean", sum(c[1] for c in rows),
                     {m: {k: mean([c[2][m][k] for c in cases]) for k in ("error", "kept", "photo")} for m in methods}))
    for name, band, per_method in rows:
        errors = {m: round(per_method[m]["error"], 1) for m in methods}
        winners = best(errors, higher_is_better=False)
        cells = [f"{_cell(per_method[m]['error'], 1, m in winners)} ({per_method[m]['kept'] * 100:.0f} %)" for m in methods]
        reference = per_method[methods[0]]["photo"]
        lines.append(f"| {name} | {band} | {' | '.join(cells)} | {reference:.1f} |")
    return "\n".join(lines)


def main_group(result: SetResult) -> list[dict[str, dict[str, float]]]:
    """The photos a set's headline figures are over ("all", or all but the two-people ones)."""
    return result.groups()[0][1]


def means(result: SetResult) -> dict[str, dict[str, float]]:
    """{method: {metric: mean over the main group}}."""
    scores = main_group(result)
    return {m: {metric: mean([s[m][metric] for s in scores]) for metric in METRICS} for m in result.methods}


def better_rembg(values: dict[str, float], metric: str, ours: str = "ours") -> tuple[str, float]:
    """The best of the other methods on `metric`: (its name, its value)."""
    higher = METRICS[metric][1]
    others = {m: v for m, v in values.items() if m != ours and not math.isnan(v)}
    name = (max if higher else min)(others, key=others.get)
    return name, others[name]


def summary_table(results: list[SetResult]) -> str:
    """One row per set and metric (each set's main group), best per row in bold."""
    methods = results[0].methods if results else []
    lines = [f"| set (n) | metric | {' | '.join(methods)} |", "|---|---|" + "---:|" * len(methods)]
    for result in results:
        table = means(result)
        n = len(main_group(result))
        for metric, (_, higher, _) in METRICS.items():
            shown = {m: round(table[m][metric], DECIMALS[metric]) for m in methods}
            winners = best(shown, higher)
            cells = [_cell(table[m][metric], DECIMALS[metric], m in winners) for m in methods]
            lines.append(f"| {result.name} ({n}) | {metric} | {' | '.join(cells)} |")
    return "\n".join(lines)


@dataclass(frozen=True)
class Check:
    """One of issue 15's conditions on one set: `shortfall` is how far ours is from meeting it,
    relative to the better rembg's value (0 when it holds)."""

    set: str
    text: str
    held: bool
    shortfall: float


def set_checks(result: SetResult, ours: str = "ours") -> list[Check]:
    """Issue 15's conditions on one set: ours at least as good as the better rembg on CHECKED (as
    printed: rounded to the table's decimals), and SOFT_MARGIN lower SAD and Grad on SOFT_SETS."""
    table = means(result)
    if ours not in table or len(table) < 2:
        return []
    found = []
    for metric in CHECKED:
        higher = METRICS[metric][1]
        other, value = better_rembg({m: v[metric] for m, v in table.items()}, metric, ours)
        mine = round(table[ours][metric], DECIMALS[metric])
        theirs = round(value, DECIMALS[metric])
        held = mine >= theirs if higher else mine <= theirs
        gap = (theirs - mine if higher else mine - theirs) / abs(theirs) if theirs else float(not held)
        found.append(Check(result.name, f"{metric} {'ok' if held else 'BEHIND'} ({mine:.{DECIMALS[metric]}f} vs "
                           f"{other} {theirs:.{DECIMALS[metric]}f})", held, 0.0 if held else gap))
    if result.name in SOFT_SETS:
        for metric in ("SAD", "Grad"):
            other, value = better_rembg({m: v[metric] for m, v in table.items()}, metric, ours)
            lower = 1.0 - table[ours][metric] / value if value else float("nan")
            held = lower >= SOFT_MARGIN
            found.append(Check(result.name, f"{metric} {lower * 100:+.1f} % lower than {other} "
                               f"({'ok' if held else 'SHORT'} of {SOFT_MARGIN * 100:.0f} %)", held,
                               0.0 if held else SOFT_MARGIN - lower))
    return found


def _resample(result: SetResult, rng: random.Random) -> SetResult:
    """The set's main group drawn again with replacement, as many real photos as it shows: a
    generated image comes and goes with the others made from its photo, which it is not
    independent of."""
    by_photo: dict[str, list] = defaultdict(list)
    for row in result.rows:
        if row[1] != TWO_PEOPLE_GROUP:
            by_photo[source_stem(result.name, row[0])].append(row)
    photos = list(by_photo.values())
    return SetResult(result.name, result.methods, result.part, [row for _ in photos for row in rng.choice(photos)])


def holding_shares(result: SetResult, ours: str = "ours", resamples: int = RESAMPLES) -> list[float]:
    """Per condition of set_checks, the share of `resamples` bootstrap draws of the part's photos
    in which it holds: with seven photos to a part, a check's verdict can rest on which seven;
    near 0 or 1 it does not. Seeded by the set and part, so a report repeats."""
    rng = random.Random(f"{result.name}/{result.part}")
    held = [0] * len(set_checks(result, ours))
    for _ in range(resamples if held else 0):
        for i, check in enumerate(set_checks(_resample(result, rng), ours)):
            held[i] += check.held
    return [count / resamples for count in held]


def checks(results: list[SetResult], ours: str = "ours") -> tuple[list[str], bool]:
    """Issue 15's conditions per set (set_checks): the lines that say so, each with its holding
    share over resamples of the photos in brackets, and whether all hold."""
    lines, ok = [], True
    for result in results:
        found = set_checks(result, ours)
        if found:
            ok &= all(c.held for c in found)
            shares = holding_shares(result, ours)
            lines.append(f"- {result.name}: " + "; ".join(f"{c.text} [{share:.0%}]" for c, share in zip(found, shares)))
    return lines, ok


def iou_ratios(result: SetResult, ours: str = "ours") -> list[tuple[str, float, float, str, float]]:
    """Per photo (every photo, two-people ones too): (stem, ours / the better other IoU, ours'
    IoU, the better other, its IoU), most behind first."""
    rows = []
    for stem, _, scores in result.rows:
        if ours not in scores or len(scores) < 2:
            continue
        other, value = better_rembg({m: v["IoU"] for m, v in scores.items()}, "IoU", ours)
        mine = scores[ours]["IoU"]
        ratio = mine / value if value > 0 else (1.0 if mine == 0 else math.inf)
        rows.append((stem, ratio, mine, other, value))
    return sorted(rows, key=lambda r: (r[2] - r[4], r[1]))


def behind_table(results: list[SetResult], worst: int = 3, floor: float = RATIO_FLOOR) -> tuple[str, list[str]]:
    """Per set, the `worst` photos where ours is most behind the better rembg on IoU, and every
    photo under `floor` IoU ratio. Returns the table and the photos under the floor."""
    lines = ["| set | part | photo | ours IoU | better rembg IoU | ratio |", "|---|---|---|---:|---:|---:|"]
    under = []
    for result in results:
        ratios = iou_ratios(result)
        shown = [r for r in ratios if r[1] < floor] or []
        shown += [r for r in ratios[:worst] if r not in shown]
        for stem, ratio, mine, other, value in shown:
            flag = " **under %.1f**" % floor if ratio < floor else ""
            lines.append(f"| {result.name} | {result.part} | {stem} | {mine:.3f} | {value:.3f} ({other}) | "
                         f"{ratio:.2f}{flag} |")
            if ratio < floor:
                under.append(f"{result.name}/{stem} ({result.part}): {ratio:.2f}")
    return "\n".join(lines), under
