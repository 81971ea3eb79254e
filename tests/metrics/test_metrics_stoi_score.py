"""STOI and eSTOI (utils/metrics/stoi_score.py) on real speech: the package's own values, cut to the true
lengths; identity scores 1, noise and delay score worse the stronger they are."""

import pystoi
import pytest
import torch
from helpers.metric_signals import delayed, noisy, pad_batch, read

from utils.metrics import STOI

CLEAN = read("84-121123-0000")  # 2 s


@pytest.mark.parametrize("extended", [False, True])
def test_stoi_equals_the_package_on_the_true_lengths(extended):
    refs = [CLEAN, read("84-121123-0021")[:24000]]
    hyps = [noisy(ref, 5) for ref in refs]
    metric = STOI(extended=extended)
    (hyp_batch, lens), (ref_batch, _) = pad_batch(hyps), pad_batch(refs)
    metric.append(["a", "b"], hyp_batch, ref_batch, lens)
    expected = [
        pystoi.stoi(r.double().numpy(), h.double().numpy(), 16000, extended=extended)
        for h, r in zip(hyps, refs, strict=True)
    ]
    assert metric.scores == pytest.approx(expected, rel=1e-12, abs=0)  # the last bit: summation order
    assert metric.label == ("eSTOI" if extended else "STOI")
    assert metric.summarize(metric.label) == pytest.approx(sum(expected) / 2)
    assert metric.model_id.startswith("pystoi 0.4.1")


@pytest.mark.parametrize("extended", [False, True])
def test_stoi_orders_noise_and_delay(extended):
    metric = STOI(extended=extended)
    hyps = [CLEAN, noisy(CLEAN, 20), noisy(CLEAN, 5), delayed(CLEAN, 2), delayed(CLEAN, 20)]
    for index, hyp in enumerate(hyps):
        metric.append([str(index)], hyp[None], CLEAN[None])
    identity, noise20, noise5, delay2, delay20 = metric.scores
    assert identity == pytest.approx(1.0) and identity > noise20 > noise5 and identity > delay2 > delay20
    assert torch.tensor(metric.scores).le(1.0 + 1e-9).all()
