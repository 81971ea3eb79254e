"""Mel and multi-resolution STFT distances (utils/metrics/spectral_distance.py) on real speech: identity
gives 0, noise, low-pass and delay give more the stronger they are, padding is never scored, an item too
short for the longest window is undefined."""

import math

import pytest
import torch
from helpers.metric_signals import delayed, low_passed, noisy, pad_batch, read

from utils.metrics import SpectralDistance

CLEAN = read("84-121123-0000")  # 2 s


@pytest.mark.parametrize("mel", [True, False])
def test_identity_is_zero_and_degradations_grow_in_order(mel):
    metric = SpectralDistance(mel=mel)
    hyps = [CLEAN, noisy(CLEAN, 20), noisy(CLEAN, 5), low_passed(CLEAN, 4000), low_passed(CLEAN, 1000)]
    hyps += [delayed(CLEAN, 2), delayed(CLEAN, 20)]
    for index, hyp in enumerate(hyps):
        metric.append([str(index)], hyp[None], CLEAN[None])
    identity, noise20, noise5, lp4k, lp1k, delay2, delay20 = metric.scores
    assert identity == 0.0 and 0 < noise20 < noise5 and 0 < lp4k < lp1k and 0 < delay2 < delay20
    assert metric.label == ("MelDist" if mel else "STFTDist") and metric.lower_better(metric.label)


def test_padding_is_not_scored_and_short_items_are_undefined():
    metric = SpectralDistance()
    short = CLEAN[:1000]  # not more than half the 2048-sample window
    hyps, refs = [noisy(CLEAN, 10), short], [CLEAN, short]
    (hyp_batch, lens), (ref_batch, _) = pad_batch(hyps), pad_batch(refs)
    metric.append(["a", "short"], hyp_batch, ref_batch, lens)
    alone = SpectralDistance()
    alone.append(["a"], hyps[0][None], CLEAN[None])
    assert metric.scores[0] == pytest.approx(alone.scores[0]) and math.isnan(metric.scores[1])
    assert metric.summarize("MelDist") == pytest.approx(alone.scores[0])  # the undefined item is left out
    assert [row.metric for row in metric.utterance_scores()] == ["MelDist", "MelDist"]
    assert torch.isnan(torch.tensor(metric.utterance_scores()[1].value))
