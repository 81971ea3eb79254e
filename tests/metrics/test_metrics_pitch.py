"""F0 RMSE, correlation and voicing F1 (utils/metrics/pitch.py) on real speech: identity is perfect, noise
and delay are worse the stronger they are, and a signal without voicing makes the figures undefined (left
out of the means)."""

import math

import pytest
import torch
from helpers.metric_signals import delayed, noisy, read

from utils.metrics import PitchMetrics

CLEAN = read("84-121123-0000")  # 2 s
LABELS = ("F0-RMSE", "F0-Corr", "F0-VUV-F1")


def test_identity_is_perfect_and_noise_and_delay_are_worse_in_order():
    metric = PitchMetrics()
    hyps = [CLEAN, delayed(CLEAN, 5), delayed(CLEAN, 40), noisy(CLEAN, 0)]
    for index, hyp in enumerate(hyps):
        metric.append([str(index)], hyp[None], CLEAN[None])
    identity, delay5, delay40, noise0 = metric.scores
    assert identity == {"RMSE": 0.0, "Corr": pytest.approx(1.0), "VUV-F1": 1.0}
    assert 0 < delay5["RMSE"] < delay40["RMSE"] and 1 > delay5["Corr"] > delay40["Corr"]
    assert 1 > delay5["VUV-F1"] > delay40["VUV-F1"]
    assert noise0["RMSE"] > 0 and noise0["Corr"] < 1 and noise0["VUV-F1"] < 1
    assert list(metric.summarize()) == list(LABELS)
    assert [metric.lower_better(label) for label in LABELS] == [True, False, False]


def test_without_voicing_the_figures_are_undefined_and_left_out():
    metric = PitchMetrics()
    silence = torch.zeros_like(CLEAN)
    metric.append(["speech", "unvoiced"], torch.stack([CLEAN, silence]), torch.stack([CLEAN, silence]))
    unvoiced = metric.scores[1]
    assert all(math.isnan(value) for value in unvoiced.values())  # no frame voiced in either signal
    assert metric.summarize() == {"F0-RMSE": 0.0, "F0-Corr": pytest.approx(1.0), "F0-VUV-F1": 1.0}
    rows = metric.utterance_scores()
    assert [(row.id, row.metric) for row in rows[:2]] == [("speech", "F0-RMSE"), ("unvoiced", "F0-RMSE")]
