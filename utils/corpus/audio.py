"""Audio as training reads it from a prepared corpus."""

import torch

from focalcodec.audio import as_written

__all__ = ["as_prepared"]


def as_prepared(sig: torch.Tensor, pcm16: bool) -> torch.Tensor:
    """A loaded (N,) waveform as training reads it: with ``pcm16`` (the YAML's ``pcm16_audio``) rounded to
    16 bit as the original recipe's prepared copies hold it (it trained on 16-bit WAVs its preparation had
    resampled and written: :func:`focalcodec.audio.as_written`, libsndfile's rounding, in memory), else
    unchanged."""
    return as_written(sig).sig if pcm16 else sig
