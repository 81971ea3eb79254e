"""What int8 weights cost in quality, measured on real speech: the share of tokens equal to the float model's,
the distance between the two models' audio, and the DNSMOS of each.

* Input: the LibriSpeech dev-clean clips of ``tests/data/real-speech`` (29 s, CC BY 4.0), one after the other
  (the first 10 s in the benchmark).
* Mel distance: the mean absolute difference of the log-mel spectrograms (natural log of the power, floored
  at 1e-5; 80 mel bands, 1024-point FFT, 256-sample hop, at the codec's output rate) of the int8 audio and
  the float audio: 0 for identical audio, in nepers of power per band and frame.
* DNSMOS: P.835 overall quality (OVRL, 1-5) of each audio (``utils.metrics.dnsmos``, the speechmos models,
  offline), averaged over 9 s windows.
"""

from pathlib import Path

import numpy as np
import torch
import torchaudio

from focalcodec.audio import load_audio
from utils.metrics.dnsmos import DNSMOS

__all__ = ["REAL_SPEECH", "log_mel_distance", "quality_cost", "real_speech"]

REAL_SPEECH = Path(__file__).resolve().parent.parent / "tests" / "data" / "real-speech"


def real_speech(sample_rate: int, seconds: float | None = None) -> torch.Tensor:
    """(1, N) the real-speech clips one after the other (sorted by name) at ``sample_rate``, cut to
    ``seconds`` if given."""
    clips = [load_audio(path, sample_rate) for path in sorted(REAL_SPEECH.iterdir()) if path.suffix != ".md"]
    sig = torch.cat(clips)[None]
    return sig if seconds is None else sig[:, : round(seconds * sample_rate)]


def log_mel_distance(hyp: np.ndarray, ref: np.ndarray, sample_rate: int) -> float:
    """Mean |log-mel(hyp) - log-mel(ref)| of two (N,) signals (see the module docstring)."""
    mel = torchaudio.transforms.MelSpectrogram(sample_rate, n_fft=1024, hop_length=256, n_mels=80)
    length = min(len(hyp), len(ref))
    spectra = [
        mel(torch.as_tensor(x[:length], dtype=torch.float32)).clamp(min=1e-5).log() for x in (hyp, ref)
    ]
    return float((spectra[0] - spectra[1]).abs().mean())


def dnsmos_ovrl(sig: np.ndarray, sample_rate: int) -> float:
    metric = DNSMOS(sample_rate)
    metric.append(["utt"], torch.as_tensor(sig, dtype=torch.float32)[None])
    return float(metric.summarize("OVRL"))


def quality_cost(
    toks: np.ndarray, audio: np.ndarray, float_toks: np.ndarray, float_audio: np.ndarray, sample_rate: int
) -> dict:
    """The figures of an approximate model's stream against the float model's on the same input."""
    return {
        "tokens_equal": float(np.mean(toks == float_toks)),
        "mel_distance": log_mel_distance(audio, float_audio, sample_rate),
        "dnsmos_ovrl": dnsmos_ovrl(audio, sample_rate),
        "float_dnsmos_ovrl": dnsmos_ovrl(float_audio, sample_rate),
    }
