"""Audio as training reads it from a prepared corpus: a whole file, or the pieces of a file that a manifest
entry names by offset (Libri-Light's cut utterances, :mod:`utils.corpus.librilight`)."""

import os
from collections.abc import Sequence

import numpy as np
import soundfile as sf
import torch

from focalcodec.audio import as_written, load_audio, resample

__all__ = ["as_prepared", "load_utterance", "read_ranges"]

# A manifest entry's ``segments``: [start, stop) sample ranges at the file's own rate, joined in order
Segments = Sequence[Sequence[int]]


def as_prepared(sig: torch.Tensor, pcm16: bool) -> torch.Tensor:
    """A loaded (N,) waveform as training reads it: with ``pcm16`` (the YAML's ``pcm16_audio``) rounded to
    16 bit as a 16-bit WAV holds it (:func:`focalcodec.audio.as_written`, libsndfile's rounding, in memory:
    the original mode, docs/deviations.md #1), else unchanged."""
    return as_written(sig).sig if pcm16 else sig


def read_ranges(path: str | os.PathLike, segments: Segments) -> tuple[np.ndarray, int]:
    """The sample ranges ``segments`` of a file joined, at the file's own rate: ((N, C) float32, rate).
    Only those samples are read (one seek per range)."""
    with sf.SoundFile(os.fspath(path)) as file:
        parts = []
        for start, stop in segments:
            file.seek(int(start))
            parts.append(file.read(int(stop) - int(start), dtype="float32", always_2d=True))
        return np.concatenate(parts), file.samplerate


def load_utterance(
    wav: str | os.PathLike, sample_rate: int, segments: Segments | None = None
) -> torch.Tensor:
    """A manifest entry's audio as a mono (N,) float32 waveform at ``sample_rate``: the whole file, or,
    with ``segments``, its ranges joined (the silences between them left out) and then resampled, as a
    copy cut from the file would read."""
    if not segments:
        return load_audio(wav, sample_rate)
    data, rate = read_ranges(wav, segments)
    return resample(torch.from_numpy(data.mean(axis=1)), rate, sample_rate)
