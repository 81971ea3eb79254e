"""Resemblyzer similarity (utils/metrics/resemblyzer_similarity.py) on real LibriSpeech speech: the same
speaker beats a different one, padding is never scored."""

import pytest
from helpers.metric_signals import pad_batch, read

from utils.metrics import ResemblyzerSimilarity


@pytest.mark.slow
def test_resemblyzer_same_speaker_beats_different_speaker_and_respects_lengths():
    a, b, c = read("84-121123-0021"), read("84-121123-0023"), read("84-121123-0028")
    other = read("251-118436-0003")
    pairs = [(a, c), (b, c), (a, other), (b, other)]
    pairs = [(x[: min(len(x), len(y))], y[: min(len(x), len(y))]) for x, y in pairs]  # a pair shares lens
    hyp, lens = pad_batch([x for x, _ in pairs])
    ref, _ = pad_batch([y for _, y in pairs])
    metric = ResemblyzerSimilarity()
    metric.append(["84-84", "84-84'", "84-251", "84-251'"], hyp, ref, lens)
    same, different = metric.scores[:2], metric.scores[2:]
    assert min(same) > max(different) + 0.1
    single = ResemblyzerSimilarity()
    single.append(["84-84"], pairs[0][0][None], pairs[0][1][None])
    assert single.scores[0] == pytest.approx(same[0], abs=1e-5)
    assert set(metric.summarize()) == {"Sim-Resemblyzer"} and metric.num_scored == 4
