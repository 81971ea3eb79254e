"""Paired comparisons of table rows (utils/evaluation/compare.py): the verdict follows the interval and
the figure's direction (a lower error is better), only figures both rows scored per utterance are
compared, and comparison.md states each pair."""

import numpy as np

from utils.evaluation import ModelScores, compare, compare_all, write_comparisons
from utils.metrics import UtteranceScore


def row(name: str, figures: dict[str, np.ndarray], lower_better=()) -> ModelScores:
    scores = [
        UtteranceScore(f"u{i}", label, float(v))
        for label, values in figures.items()
        for i, v in enumerate(values)
    ]
    means = {label: float(values.mean()) for label, values in figures.items()}
    return ModelScores(
        name, figures=means, scores=scores, lower_better={label: label in lower_better for label in figures}
    )


def test_verdicts_follow_the_interval_and_the_direction(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.normal(3.0, 1.0, 30)
    better = base + 0.3 + rng.normal(0, 0.05, 30)  # higher PESQ: better; higher dWER: worse
    a = row(
        "a", {"PESQ": better, "dWER": better, "STOI": base + rng.normal(0, 0.05, 30)}, lower_better={"dWER"}
    )
    b = row("b", {"PESQ": base, "dWER": base, "STOI": base}, lower_better={"dWER"})
    verdicts = {c.figure: c.verdict for c in compare(a, b)}
    assert verdicts == {"PESQ": "a better", "dWER": "b better", "STOI": "no clear difference"}
    assert {c.figure: c.verdict for c in compare(b, a)} == {
        "PESQ": "a better",
        "dWER": "b better",
        "STOI": "no clear difference",
    }
    reference = row("reference", {"PESQ": base + 1})  # a figure of its own only: nothing else to compare
    assert [(c.a, c.b, c.figure) for c in compare_all([reference, a, b])] == [
        ("reference", "a", "PESQ"),
        ("reference", "b", "PESQ"),
        ("a", "b", "PESQ"),
        ("a", "b", "dWER"),
        ("a", "b", "STOI"),
    ]
    text = write_comparisons(compare(a, b), tmp_path).read_text()
    assert "## a vs b" in text and "| dWER | +0.3" in text and "| b better |" in text
    assert "nothing to compare" in write_comparisons([], tmp_path).read_text()
