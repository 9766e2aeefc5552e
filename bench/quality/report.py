"""Per-set and per-category means, as a Markdown table with the best method marked per metric."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

from bench.quality.datasets import TWO_PEOPLE_GROUP
from bench.quality.metrics import METRICS

DECIMALS = {"IoU": 4, "MAE": 4, "SAD": 2, "MSE": 2, "Grad": 2, "BF": 4}


@dataclass
class SetResult:
    name: str
    methods: list[str]
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
