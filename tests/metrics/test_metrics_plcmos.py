"""PLCMOS (utils/metrics/plcmos.py) with the model shipped in speechmos, on real speech: speechmos's own
score given the same rater embeddings, the same score on every call, and clean speech best, then fewer
lost packets better than more, and a milder low-pass better than a stronger one."""

import numpy as np
import pytest
from helpers.metric_signals import low_passed, packets_lost, pad_batch, read

from utils.metrics import PLCMOS
from utils.metrics.plcmos import RATER_SEED, RATERS

CLEAN = read("84-121123-0000")  # 2 s


def test_speechmos_score_with_the_seeded_raters_and_padding_never_scored(monkeypatch):
    metric = PLCMOS()
    model = metric.load()
    raters = iter(np.random.default_rng(RATER_SEED).normal(size=(RATERS, 1, 64)))
    monkeypatch.setattr(np.random, "normal", lambda size: next(raters))  # speechmos draws one per round
    expected = model.get_mos(CLEAN.double().numpy())
    monkeypatch.undo()
    batch, lens = pad_batch([CLEAN, CLEAN[:16000]])
    metric.append(["a", "b"], batch, lens)
    metric.append(["a again"], CLEAN[None])
    assert metric.scores[0] == pytest.approx(expected, abs=1e-6) and metric.scores[2] == metric.scores[0]
    assert metric.scores[1] != metric.scores[0]  # the half-length item is scored on its own samples
    assert metric.model_id.startswith("speechmos 0.0.1.1 PLCMOS v2")


def test_clean_speech_scores_best_and_degradations_in_order():
    metric = PLCMOS()
    hyps = [CLEAN, packets_lost(CLEAN, 0.05), packets_lost(CLEAN, 0.2), low_passed(CLEAN, 4000)]
    hyps += [low_passed(CLEAN, 1000)]
    for index, hyp in enumerate(hyps):
        metric.append([str(index)], hyp[None])
    clean, lost5, lost20, lp4k, lp1k = metric.scores
    assert clean > lost5 > lost20 and clean > lp4k > lp1k
    assert all(1 <= score <= 5 for score in metric.scores)
