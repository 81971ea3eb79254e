"""Decoder progress figures: on a fixed set the mel distance falls and DNSMOS rises as the output improves."""

import pytest
import soundfile as sf
import torch
from helpers.recipe_runner import ROOT, signal_dataset
from speechbrain.lobes.models.HifiGAN import L1SpecLoss

from utils.training.progress import ProgressProbe

CLIPS = ["84-121123-0007.wav", "84-121123-0000.flac"]


def speech() -> list[torch.Tensor]:
    return [
        torch.from_numpy(sf.read(ROOT / "tests" / "data" / "real-speech" / n, dtype="float32")[0])
        for n in CLIPS
    ]


def mel_loss() -> L1SpecLoss:
    return L1SpecLoss(sample_rate=16000, hop_length=320, win_length=1024, n_mel_channels=80, n_fft=1024,
                      n_stft=513, mel_fmin=0, mel_fmax=8000, mel_normalized=False, power=1.0,
                      dynamic_range_compression=True)  # fmt: skip


def noisy(snr_db: float):
    """A stand-in decoder: the input plus white noise at ``snr_db`` (a better decoder: a higher SNR)."""

    def resynthesize(batch):
        sig = batch.sig[0]
        noise = torch.randn(sig.shape, generator=torch.Generator().manual_seed(0))
        return sig + noise * sig.norm() / noise.norm() / 10 ** (snr_db / 20), sig

    return resynthesize


def test_figures_move_one_way_as_the_output_improves():
    probe = ProgressProbe(mel_loss(), num_utterances=2)
    probe.select(signal_dataset([*speech(), torch.zeros(16000)]))
    assert [item["id"] for item in probe.items] == ["utt0", "utt1"]  # the first two, in dataset order
    figures = [probe.measure(noisy(snr)) for snr in (0, 10, 30)]
    assert all(set(f) == {"mel_distance", "DNSMOS-OVRL"} for f in figures)
    distances = [f["mel_distance"] for f in figures]
    scores = [f["DNSMOS-OVRL"] for f in figures]
    assert distances[0] > distances[1] > distances[2] > 0
    assert scores[0] < scores[1] < scores[2] <= 5
    perfect = probe.measure(lambda batch: (batch.sig[0], batch.sig[0]))
    assert perfect["mel_distance"] == pytest.approx(0.0, abs=1e-6)


def test_when_it_measures_and_what():
    probe = ProgressProbe(mel_loss(), num_utterances=4, every_steps=3, metrics=["mel_distance"])
    assert not probe.due(3) and probe.measure(noisy(10)) == {}  # no fixed set selected yet
    probe.select(signal_dataset(speech()))
    assert len(probe.items) == 2  # fewer utterances than asked: all of them
    assert [step for step in range(1, 10) if probe.due(step)] == [3, 6, 9]
    assert set(probe.measure(noisy(10))) == {"mel_distance"}
    assert not ProgressProbe(mel_loss(), every_steps=0).due(3)
    with pytest.raises(ValueError, match="unknown progress metrics"):
        ProgressProbe(mel_loss(), metrics=["utmos"])
