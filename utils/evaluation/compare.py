"""Paired comparison of two rows of the table: for every figure both have per utterance, A minus B over
the utterances both scored with its paired 95 % bootstrap interval (:func:`paired_difference`), and the
verdict the interval supports: A better, B better, or no clear difference (the interval holds 0)."""

import math
import os
from itertools import combinations
from pathlib import Path
from typing import NamedTuple

from utils.evaluation.bootstrap import CONFIDENCE, Difference, by_figure, paired_difference
from utils.evaluation.scoring import ModelScores

__all__ = ["Comparison", "compare", "compare_all", "format_difference", "write_comparisons"]


class Comparison(NamedTuple):
    """One figure of model ``a`` against model ``b``: ``a - b`` and which one the interval favours."""

    figure: str
    a: str
    b: str
    difference: Difference
    verdict: str  # "<a> better", "<b> better" or "no clear difference"


def _verdict(difference: Difference, a: str, b: str, lower_better: bool) -> str:
    if math.isnan(difference.low) or difference.low <= 0 <= difference.high:
        return "no clear difference"
    a_higher = difference.low > 0
    return f"{a if a_higher != lower_better else b} better"


def format_difference(difference: Difference) -> tuple[str, str]:
    """``("+0.123", "[+0.045, +0.201]")``; "—" where undefined (no interval from fewer than two)."""

    def signed(value: float) -> str:
        return "—" if math.isnan(value) else f"{value:+.3f}"

    spread = "—" if math.isnan(difference.low) else f"[{signed(difference.low)}, {signed(difference.high)}]"
    return signed(difference.difference), spread


def compare(a: ModelScores, b: ModelScores) -> list[Comparison]:
    """Every figure that both rows scored per utterance, in ``a``'s order."""
    figures_a, figures_b = by_figure(a.scores), by_figure(b.scores)
    comparisons = []
    for figure, scores in figures_a.items():
        if figure not in figures_b:
            continue
        difference = paired_difference(scores, figures_b[figure])
        lower_better = a.lower_better.get(figure, False)
        comparisons.append(
            Comparison(figure, a.name, b.name, difference, _verdict(difference, a.name, b.name, lower_better))
        )
    return comparisons


def compare_all(rows: list[ModelScores]) -> list[Comparison]:
    """:func:`compare` of every pair of rows, in table order."""
    return [comparison for a, b in combinations(rows, 2) for comparison in compare(a, b)]


def write_comparisons(comparisons: list[Comparison], folder: str | os.PathLike) -> Path:
    """``comparison.md`` in ``folder``: one table per pair of models."""
    lines = [
        f"# Paired comparisons ({100 * CONFIDENCE:.0f} % bootstrap intervals, utterances both scored)",
        "",
    ]
    pairs = dict.fromkeys((c.a, c.b) for c in comparisons)
    for a, b in pairs:
        lines += [
            f"## {a} vs {b}",
            "",
            f"| figure | {a} − {b} | interval | utterances | verdict |",
            "|---|---|---|---|---|",
        ]
        for c in comparisons:
            if (c.a, c.b) == (a, b):
                cells = [c.figure, *format_difference(c.difference), c.difference.n, c.verdict]
                lines.append("| " + " | ".join(map(str, cells)) + " |")
        lines.append("")
    if not pairs:
        lines.append("Fewer than two rows share a per-utterance figure: nothing to compare.")
    path = Path(folder) / "comparison.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
