"""PESQ (utils/metrics/pesq_score.py) on real speech: the package's own values, cut to the true lengths;
identity scores best, noise and low-pass score worse the stronger they are; PESQ's own time alignment
makes a delay nearly free; an utterance without speech is undefined and left out."""

import math

import pesq
import pytest
import torch
from helpers.metric_signals import delayed, low_passed, noisy, pad_batch, read

from utils.metrics import PESQ

CLEAN = read("84-121123-0000")  # 2 s


def scores(metric: PESQ, hyps: list[torch.Tensor]) -> list[float]:
    metric.clear()
    for index, hyp in enumerate(hyps):
        metric.append([str(index)], hyp[None], CLEAN[None])
    return list(metric.scores)


@pytest.mark.parametrize("mode", ["wb", "nb"])
def test_pesq_equals_the_package_on_the_true_lengths(mode):
    refs = [CLEAN, read("84-121123-0021")[:24000]]
    hyps = [noisy(ref, 15) for ref in refs]
    metric = PESQ(mode=mode)
    (hyp_batch, lens), (ref_batch, _) = pad_batch(hyps), pad_batch(refs)
    metric.append(["a", "b"], hyp_batch, ref_batch, lens)  # the padding is loud noise: it must not count
    expected = [
        pesq.pesq(16000, r.double().numpy(), h.double().numpy(), mode)
        for h, r in zip(hyps, refs, strict=True)
    ]
    assert metric.scores == expected
    assert metric.summarize() == {f"PESQ-{mode.upper()}": pytest.approx(sum(expected) / 2)}
    assert metric.model_id.startswith("pesq 0.0.4") and not metric.lower_better(metric.label)
    assert [row.value for row in metric.utterance_scores()] == expected


def test_pesq_orders_noise_and_low_pass_and_aligns_delays():
    wide, narrow = PESQ(mode="wb"), PESQ(mode="nb")
    hyps = [CLEAN, noisy(CLEAN, 20), noisy(CLEAN, 5), low_passed(CLEAN, 4000), low_passed(CLEAN, 1000)]
    identity, noise20, noise5, lp4k, lp1k, delay = scores(wide, [*hyps, delayed(CLEAN, 20)])
    assert identity > 4.6 and identity > noise20 > noise5 and identity > lp4k > lp1k
    assert delay == pytest.approx(identity, abs=0.05)  # PESQ finds the delay itself
    nb_identity, nb_lp4k, nb_lp1k = scores(narrow, [CLEAN, low_passed(CLEAN, 4000), low_passed(CLEAN, 1000)])
    # narrow band (to 3.4 kHz) does not hear a 4 kHz low-pass; wide band does
    assert nb_lp4k == pytest.approx(nb_identity, abs=0.01) and nb_identity > nb_lp1k


def test_an_utterance_without_speech_is_undefined_and_left_out(caplog):
    metric = PESQ()
    silence = torch.zeros_like(CLEAN)
    metric.append(["speech", "silence"], torch.stack([CLEAN, CLEAN]), torch.stack([CLEAN, silence]))
    assert metric.scores[0] > 4.6 and math.isnan(metric.scores[1])
    assert metric.summarize("PESQ-WB") == metric.scores[0]
    assert "PESQ-WB undefined for an utterance (NoUtterancesError" in caplog.text
