"""Bootstrap intervals (utils/evaluation/bootstrap.py) against known distributions: the interval of a
normal sample has the textbook width and covers the true mean about 95 % of the time; a weighted figure's
value is the ratio of sums (dWER); the paired difference finds a known sign that unpaired intervals miss,
and holds 0 between two draws of the same model; seeded: the same scores give the same interval."""

import math

import numpy as np
import pytest

from utils.evaluation import interval, intervals, paired_difference
from utils.metrics import UtteranceScore


def scores(values, label="M", weights=None) -> list[UtteranceScore]:
    weights = [1.0] * len(values) if weights is None else weights
    return [
        UtteranceScore(f"u{i}", label, float(v), float(w))
        for i, (v, w) in enumerate(zip(values, weights, strict=True))
    ]


def test_interval_of_a_normal_sample_has_the_textbook_width_and_is_seeded():
    values = np.random.default_rng(1).normal(1.0, 2.0, 400)
    spread = interval(scores(values))
    assert spread.value == pytest.approx(values.mean()) and spread.n == 400
    half_width = 1.96 * values.std(ddof=1) / math.sqrt(400)  # the normal approximation
    assert (spread.high - spread.low) / 2 == pytest.approx(half_width, rel=0.1)
    assert spread.low < spread.value < spread.high
    assert interval(scores(values)) == spread  # seeded


def test_intervals_cover_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(7)
    covered = 0
    for _ in range(200):
        spread = interval(scores(rng.normal(3.0, 1.0, 60)))
        covered += spread.low <= 3.0 <= spread.high
    assert 0.89 <= covered / 200 <= 0.99


def test_a_weighted_figure_is_the_ratio_of_sums_and_undefined_scores_are_left_out():
    edits, words = np.array([1, 0, 4, 2]), np.array([10, 5, 20, 8])
    rates = 100 * edits / words
    rows = scores([*rates, float("nan")], weights=[*words, 0])  # the last: an empty reference transcript
    spread = interval(rows)
    assert spread.value == pytest.approx(100 * edits.sum() / words.sum()) and spread.n == 4
    assert interval(scores([2.0])) == (2.0, *(pytest.approx(math.nan, nan_ok=True),) * 2, 1)
    assert interval([]).n == 0 and math.isnan(interval([]).value)
    both = intervals(scores([1.0, 2.0], "A") + scores([3.0, 5.0], "B"))
    assert list(both) == ["A", "B"] and both["B"].value == 4.0


def test_the_paired_difference_finds_a_known_sign_unpaired_intervals_miss():
    rng = np.random.default_rng(3)
    difficulty = rng.normal(3.0, 1.0, 40)  # utterances differ much more than the two models do
    model_a = difficulty + 0.1 + rng.normal(0, 0.05, 40)
    model_b = difficulty
    a, b = interval(scores(model_a)), interval(scores(model_b))
    assert a.low < b.high  # the two rows' intervals overlap: side by side they prove nothing
    difference = paired_difference(scores(model_a), scores(model_b))
    assert difference.n == 40 and difference.difference == pytest.approx(0.1, abs=0.03)
    assert 0 < difference.low < difference.high  # paired: A is higher
    reverse = paired_difference(scores(model_b), scores(model_a))
    assert reverse.high < 0 and reverse.difference == pytest.approx(-difference.difference)
    again = model_b + rng.normal(0, 0.05, 40)  # the same model drawn twice: the interval holds 0
    same = paired_difference(scores(again), scores(model_b))
    assert same.low < 0 < same.high


def test_the_paired_difference_uses_the_utterances_both_scored():
    a = scores([1.0, 2.0, 3.0, float("nan")])
    b = [*scores([0.0, 1.0]), UtteranceScore("other", "M", 9.0)]
    difference = paired_difference(a, b)
    assert difference.n == 2 and difference.difference == 1.0
    assert paired_difference(a, []).n == 0
