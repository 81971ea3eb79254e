"""Audio as training reads it from a prepared corpus."""

import torch

from focalcodec.audio import as_written

__all__ = ["as_prepared"]


def as_prepared(sig: torch.Tensor, pcm16: bool) -> torch.Tensor:
    """A loaded (N,) waveform as training reads it: with ``pcm16`` (the YAML's ``pcm16_audio``) rounded to
    16 bit as a 16-bit WAV holds it (:func:`focalcodec.audio.as_written`, libsndfile's rounding, in memory:
    the original mode, docs/deviations.md #1), else unchanged."""
    return as_written(sig).sig if pcm16 else sig
