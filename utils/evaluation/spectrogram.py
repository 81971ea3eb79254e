"""Mel spectrogram images for the listening report: PNGs drawn with matplotlib (``matplotlib.image.imsave``,
no figure), on the colour scale of the utterance's reference so that the images of one utterance compare
side by side."""

import importlib.util
import os
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio

__all__ = ["DYNAMIC_RANGE_DB", "can_draw", "log_mel", "write_mel_images"]

DYNAMIC_RANGE_DB = 80.0
MEL = {"n_fft": 1024, "hop_length": 160, "n_mels": 80}  # 10 ms columns at 16 kHz


def can_draw() -> bool:
    """Whether matplotlib is installed (without it the report has no spectrograms, and says so)."""
    return importlib.util.find_spec("matplotlib") is not None


def log_mel(path: str | os.PathLike) -> np.ndarray:
    """(80, frames) mel power spectrogram of a WAV file, in dB (torchaudio's, on librosa's Slaney mel scale:
    torchaudio is loaded already, librosa takes seconds to import at the end of every run)."""
    audio, rate = sf.read(path, dtype="float32", always_2d=True)
    mel = torchaudio.transforms.MelSpectrogram(rate, **MEL, mel_scale="slaney", norm="slaney")
    power = mel(torch.from_numpy(audio.mean(axis=1)))
    return (10 * torch.log10(power.clamp(min=1e-10))).numpy()


def write_mel_images(audios: dict[str, Path], folder: str | os.PathLike, stem: str) -> dict[str, Path]:
    """A PNG per audio file (``{label: wav}``, the reference first) in ``folder``, named ``<stem>_<n>.png``,
    all on the first one's scale (its peak down :data:`DYNAMIC_RANGE_DB`); ``{label: png}``."""
    from matplotlib import image

    Path(folder).mkdir(parents=True, exist_ok=True)
    images, peak = {}, None
    for index, (label, wav) in enumerate(audios.items()):
        mel = log_mel(wav)
        peak = float(mel.max()) if peak is None else peak
        images[label] = Path(folder) / f"{stem}_{index}.png"
        image.imsave(
            images[label], mel, vmin=peak - DYNAMIC_RANGE_DB, vmax=peak, cmap="magma", origin="lower"
        )
    return images
