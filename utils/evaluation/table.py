"""The evaluation table: one row per model (the reference audio first), each figure with its 95 %
bootstrap confidence interval (:mod:`utils.evaluation.bootstrap`), as Markdown and CSV."""

import csv
import math
import os
from pathlib import Path

from utils.evaluation.bootstrap import CONFIDENCE, RESAMPLES, SEED, Interval, intervals
from utils.evaluation.scoring import ModelScores

__all__ = ["figure_columns", "format_figure", "write_table"]


def _format(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "—"
    return f"{value:.{digits}f}"


def format_figure(value: float | None, spread: Interval | None = None) -> str:
    """``"3.21 [3.10, 3.33]"`` (the value and its interval; the value alone when there is none)."""
    if spread is None or math.isnan(spread.low):
        return _format(value)
    return f"{_format(value)} [{_format(spread.low)}, {_format(spread.high)}]"


def figure_columns(rows: list[ModelScores]) -> list[str]:
    """Every figure label of the rows, in order of first appearance."""
    return list(dict.fromkeys(label for row in rows for label in row.figures))


def write_table(rows: list[ModelScores], folder: str | os.PathLike) -> tuple[Path, Path]:
    """``results.md`` (a Markdown table whose cells hold each figure with its interval, the model behind
    every figure and the unavailable metrics listed under it) and ``results.csv`` (the figures, then the
    bounds of their intervals, ``<figure> CI low`` and ``<figure> CI high``) in ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    columns = figure_columns(rows)
    spreads = {row.name: intervals(row.scores) for row in rows}
    header = ["model", "token rate (Hz)", "bitrate (kbps)", *columns]
    bounds = [f"{label} CI {end}" for label in columns for end in ("low", "high")]

    with open(folder / "results.csv", "w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(header + bounds)
        for row in rows:
            values = [row.figures.get(label) for label in columns]
            limits = [spreads[row.name].get(label) for label in columns]
            ends = [getattr(limit, end, None) for limit in limits for end in ("low", "high")]
            writer.writerow([row.name, row.token_rate, row.bitrate_kbps, *values, *ends])

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row.name, _format(row.token_rate, 1), _format(row.bitrate_kbps)]
        cells += [format_figure(row.figures.get(label), spreads[row.name].get(label)) for label in columns]
        lines.append("| " + " | ".join(cells) + " |")
    counts = sorted({spread.n for spread in spreads[rows[0].name].values()} if rows else set())
    lines += ["", explain_intervals(counts)]
    sources = {label: source for row in rows for label, source in row.sources.items()}
    lines += ["", "Figures and the models that produced them:", ""]
    lines += [f"- {label}: {sources[label]}" for label in columns if label in sources]
    unavailable = {f"{row.name}: {metric}": why for row in rows for metric, why in row.unavailable.items()}
    if unavailable:
        lines += ["", "Unavailable metrics:", ""] + [f"- {key} — {why}" for key, why in unavailable.items()]
    (folder / "results.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder / "results.md", folder / "results.csv"


def explain_intervals(counts: list[int]) -> str:
    """The sentence under the table that says what the brackets are."""
    over = f" over {'/'.join(map(str, counts))} utterances" if counts else ""
    return (
        f"Brackets: {100 * CONFIDENCE:.0f} % bootstrap confidence interval of the corpus figure{over} "
        f"(percentile, {RESAMPLES} resamples of the utterances, seed {SEED}); dWER/dCER are corpus rates. "
        "No bracket: a figure of the whole set (code usage, entropy) or fewer than two utterances."
    )
