"""Signals for the metric tests (not a test module): real LibriSpeech clips, padded batches whose padding
is loud noise, synthetic tones, and degraded copies of a clip (noise, low-pass, delay, lost packets)."""

import math
from pathlib import Path

import scipy.signal
import soundfile as sf
import torch

# LibriSpeech dev-clean clips (SOURCES.md)
SPEECH = Path(__file__).resolve().parents[1] / "data" / "real-speech"


def read(name: str) -> torch.Tensor:
    audio, rate = sf.read(SPEECH / f"{name}.flac", dtype="float32")
    assert rate == 16000
    return torch.from_numpy(audio)


def pad_batch(items: list[torch.Tensor], garbage: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, N) batch and relative lengths; the padding is loud noise, so any padding that leaks shows."""
    length = max(item.shape[-1] for item in items)
    generator = torch.Generator().manual_seed(123)
    batch = (
        torch.rand(len(items), length, generator=generator) - 0.5
        if garbage
        else torch.zeros(len(items), length)
    )
    for i, item in enumerate(items):
        batch[i, : item.shape[-1]] = item
    lens = torch.tensor([item.shape[-1] / length for item in items])
    return batch, lens


def tone(seconds: float, freq: float, seed: int = 0) -> torch.Tensor:
    t = torch.arange(int(seconds * 16000)) / 16000
    noise = 0.01 * torch.randn(t.shape, generator=torch.Generator().manual_seed(seed))
    return 0.3 * torch.sin(2 * math.pi * freq * t) * (1 + 0.5 * torch.sin(2 * math.pi * 3 * t)) + noise


# Degraded copies of a (N,) 16 kHz clip, each worse the stronger it is


def noisy(clean: torch.Tensor, snr_db: float, seed: int = 0) -> torch.Tensor:
    """White noise added at ``snr_db``."""
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(seed))
    return clean + noise * clean.norm() / noise.norm() / 10 ** (snr_db / 20)


def low_passed(clean: torch.Tensor, cutoff_hz: float) -> torch.Tensor:
    """A 4th-order Butterworth low-pass at ``cutoff_hz`` (scipy; torchaudio's filters are slow here)."""
    sos = scipy.signal.butter(4, cutoff_hz, fs=16000, output="sos")
    return torch.from_numpy(scipy.signal.sosfilt(sos, clean.double().numpy())).float()


def delayed(clean: torch.Tensor, ms: float) -> torch.Tensor:
    """Shifted ``ms`` later (zeros in front), cut to the same length."""
    shift = int(16 * ms)
    return torch.cat([torch.zeros(shift), clean[:-shift]])


def packets_lost(clean: torch.Tensor, fraction: float, seed: int = 0) -> torch.Tensor:
    """About ``fraction`` of the 20 ms packets zeroed (length a multiple of 320 samples)."""
    packets = clean.reshape(-1, 320).clone()
    packets[torch.rand(packets.shape[0], generator=torch.Generator().manual_seed(seed)) < fraction] = 0
    return packets.reshape(-1)
