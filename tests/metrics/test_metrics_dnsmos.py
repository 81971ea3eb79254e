"""DNSMOS (utils/metrics/dnsmos.py): its figures, means and per-utterance stats with a stand-in model, and
on real LibriSpeech speech with the real one: clean beats noisy, padding is never scored."""

import io

import pytest
import torch
from helpers.metric_signals import pad_batch, read

from utils.metrics import DNSMOS
from utils.metrics.common import LazyModel


class FakeDNSMOS:
    """The speechmos model's call signature; OVRL is the clip's duration in seconds, SIG its peak."""

    def __init__(self) -> None:
        self.lengths: list[int] = []

    def __call__(self, audio, sample_rate: int, personalized: bool) -> dict[str, float]:
        self.lengths.append(len(audio))
        return {"ovrl_mos": len(audio) / sample_rate, "sig_mos": float(abs(audio).max()), "bak_mos": 3.0}


def test_dnsmos_fields_means_shared_model_and_stats():
    metric = DNSMOS()
    assert metric.num_scored == 0 and metric.summarize("OVRL") != metric.summarize("OVRL")  # NaN
    metric.loader = LazyModel(lambda: None, "fake DNSMOS", FakeDNSMOS())
    metric.model_id = metric.loader.model_id
    ref = DNSMOS(label="RefDNSMOS", share_with=metric)
    assert ref.loader is metric.loader and ref.model_id == "fake DNSMOS"
    batch, lens = pad_batch([torch.full((16000,), 0.5), torch.full((8000,), 2.0)])
    metric.append(["a", "b"], batch, lens)
    assert metric.loader.model.lengths == [16000, 8000]  # cut to the true lengths
    assert metric.num_scored == 2 and ref.num_scored == 0
    assert metric.summarize() == pytest.approx({"DNSMOS-OVRL": 0.75, "DNSMOS-SIG": 0.75, "DNSMOS-BAK": 3.0})
    assert metric.summarize("SIG") == metric.summarize("DNSMOS-SIG") == pytest.approx(0.75)  # clipped to 1
    stream = io.StringIO()
    metric.write_stats(stream)
    assert stream.getvalue().splitlines() == [
        "DNSMOS (fake DNSMOS): DNSMOS-OVRL 0.7500, DNSMOS-SIG 0.7500, DNSMOS-BAK 3.0000",
        "a OVRL=1.0000 SIG=0.5000 BAK=3.0000",
        "b OVRL=0.5000 SIG=1.0000 BAK=3.0000",
    ]


@pytest.mark.slow
def test_dnsmos_clean_speech_beats_noisy_and_respects_lengths():
    names = ["84-121123-0021", "84-121123-0023", "84-121123-0028"]  # 4.7-4.8 s: one window each
    clean = [read(name) for name in names]
    generator = torch.Generator().manual_seed(0)
    noisy = []
    for c in clean:  # white noise at 5 dB SNR
        noise = torch.randn(c.shape, generator=generator)
        noisy.append(c + noise * c.norm() / noise.norm() / 10 ** (5 / 20))
    metric = DNSMOS()
    padded, lens = pad_batch(clean)
    metric.append(names, padded, lens)
    clean_stats = metric.summarize()
    clean_scores = list(metric.scores)
    assert metric.num_scored == 3
    metric.clear()
    assert metric.num_scored == 0
    for name, c in zip(names, clean, strict=True):
        metric.append([name], c[None])
    for single, batched in zip(metric.scores, clean_scores, strict=True):  # padded batch == unpadded items
        assert single == pytest.approx(batched)
    metric.clear()
    metric.append(names, *pad_batch(noisy))
    noisy_stats = metric.summarize()
    assert set(clean_stats) == {"DNSMOS-OVRL", "DNSMOS-SIG", "DNSMOS-BAK"}
    assert clean_stats["DNSMOS-OVRL"] > noisy_stats["DNSMOS-OVRL"] + 0.5
    assert clean_stats["DNSMOS-BAK"] > noisy_stats["DNSMOS-BAK"]
    assert all(1.0 <= v <= 5.0 for v in (*clean_stats.values(), *noisy_stats.values()))
