"""Confidence intervals of corpus figures, by the bootstrap over utterances (``scipy.stats.bootstrap``).

A figure's corpus value is the weighted mean of its utterances' defined values (weights 1: the plain mean;
dWER/dCER: each utterance's rate weighted by its reference length, i.e. the corpus rate). Its interval
resamples the utterances with replacement :data:`RESAMPLES` times and takes the 2.5th and 97.5th
percentiles of the resampled values (percentile method, 95 %), drawn from a generator seeded with
:data:`SEED`: the same scores always give the same interval. A **paired** difference of two models
resamples the utterances both scored, keeping each utterance's two values together, so that what the
utterances share (their difficulty) cancels out. Fewer than two utterances give no interval (NaN).
"""

import math
from typing import NamedTuple

import numpy as np
from scipy import stats

from utils.metrics import UtteranceScore

__all__ = [
    "CONFIDENCE",
    "RESAMPLES",
    "SEED",
    "Difference",
    "Interval",
    "by_figure",
    "interval",
    "intervals",
    "paired_difference",
]

CONFIDENCE = 0.95
RESAMPLES = 2000
SEED = 0
NAN = float("nan")


class Interval(NamedTuple):
    """A figure's corpus value over ``n`` utterances and its confidence interval ``[low, high]``."""

    value: float
    low: float
    high: float
    n: int


class Difference(NamedTuple):
    """Model A's figure minus model B's over the ``n`` utterances both scored, with its paired interval."""

    difference: float
    low: float
    high: float
    n: int


def _weighted_mean(values: np.ndarray, weights: np.ndarray, axis: int = -1) -> np.ndarray:
    return (values * weights).sum(axis=axis) / weights.sum(axis=axis)


def _bootstrap(samples: tuple[np.ndarray, ...], statistic) -> tuple[float, float]:
    result = stats.bootstrap(
        samples,
        statistic,
        paired=True,
        vectorized=True,
        n_resamples=RESAMPLES,
        confidence_level=CONFIDENCE,
        method="percentile",
        rng=np.random.default_rng(SEED),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def _defined(scores: list[UtteranceScore]) -> dict[str, tuple[float, float]]:
    """``{id: (value, weight)}`` of the scores with a defined value and a positive weight."""
    return {s.id: (s.value, s.weight) for s in scores if not math.isnan(s.value) and s.weight > 0}


def interval(scores: list[UtteranceScore]) -> Interval:
    """The weighted mean of one figure's utterance scores and its bootstrap interval."""
    defined = np.array(list(_defined(scores).values()), dtype=np.float64).reshape(-1, 2)
    values, weights = defined[:, 0], defined[:, 1]
    if len(values) == 0:
        return Interval(NAN, NAN, NAN, 0)
    value = float(_weighted_mean(values, weights))
    if len(values) < 2:
        return Interval(value, NAN, NAN, 1)
    return Interval(value, *_bootstrap((values, weights), _weighted_mean), len(values))


def paired_difference(scores_a: list[UtteranceScore], scores_b: list[UtteranceScore]) -> Difference:
    """Figure of A minus figure of B (weighted means) over the utterances both scored, with the paired
    bootstrap interval."""
    a, b = _defined(scores_a), _defined(scores_b)
    both = [utt_id for utt_id in a if utt_id in b]
    arrays = [np.array([pairs[i][k] for i in both], dtype=np.float64) for pairs in (a, b) for k in (0, 1)]

    def difference(values_a, weights_a, values_b, weights_b, axis=-1):
        return _weighted_mean(values_a, weights_a, axis) - _weighted_mean(values_b, weights_b, axis)

    if not both:
        return Difference(NAN, NAN, NAN, 0)
    value = float(difference(*arrays))
    if len(both) < 2:
        return Difference(value, NAN, NAN, 1)
    return Difference(value, *_bootstrap(tuple(arrays), difference), len(both))


def by_figure(scores: list[UtteranceScore]) -> dict[str, list[UtteranceScore]]:
    """The scores grouped by figure label, in order of first appearance."""
    groups: dict[str, list[UtteranceScore]] = {}
    for score in scores:
        groups.setdefault(score.metric, []).append(score)
    return groups


def intervals(scores: list[UtteranceScore]) -> dict[str, Interval]:
    """``{figure: Interval}`` for every figure among ``scores``."""
    return {label: interval(group) for label, group in by_figure(scores).items()}
