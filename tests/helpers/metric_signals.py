"""Signals for the metric tests (not a test module): real LibriSpeech clips, padded batches whose padding
is loud noise, and synthetic tones."""

import math
from pathlib import Path

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
