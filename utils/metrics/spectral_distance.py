"""Spectral distances between the output and its reference, as Codec-SUPERB defines them (its ``mel`` and
``stft`` figures: DAC's multi-scale mel and STFT losses, through ``descript-audiotools``).

At 16 kHz, for each resolution (window ``W`` = 2048 and 512 samples, hop ``W/4``, periodic Hann window,
centred frames with reflect padding) the magnitude STFT ``|X|`` of the reference and ``|Y|`` of the output
(**mel distance**: projected on ``librosa.filters.mel`` banks of 150 and 80 bands, Slaney scale and norm,
0 Hz to Nyquist) give ``mean |log10 max(X, 1e-5)^2 - log10 max(Y, 1e-5)^2| + mean |X - Y|``; the distance
is the sum over the two resolutions. 0 for identical signals, lower is better. The output and the
reference are cut to their shared true length first; an utterance shorter than half the longest window
(1024 samples) is undefined (NaN). ``librosa`` computes the STFTs (``librosa.stft``, the same frames and
window as audiotools' ``torch.stft``, in float64) and the mel banks (``librosa.filters.mel``, which
audiotools calls); audiotools itself is not a dependency.
"""

from functools import lru_cache, partial

import numpy as np

from utils.metrics.common import METRIC_SAMPLE_RATE, LazyModel, PairScores, package_id

__all__ = ["MEL_RESOLUTIONS", "STFT_RESOLUTIONS", "SpectralDistance", "spectral_distance"]

MEL_RESOLUTIONS = ((2048, 150), (512, 80))  # (window, mel bands)
STFT_RESOLUTIONS = ((2048, None), (512, None))  # linear-frequency magnitudes
CLAMP = 1e-5


@lru_cache(maxsize=8)
def _mel_basis(window: int, n_mels: int) -> np.ndarray:
    import librosa

    return librosa.filters.mel(sr=METRIC_SAMPLE_RATE, n_fft=window, n_mels=n_mels, dtype=np.float64)


def _magnitudes(sig: np.ndarray, window: int, n_mels: int | None) -> np.ndarray:
    """(F, T) STFT magnitudes of a 1-D signal (F mel bands when ``n_mels``)."""
    import librosa

    spectrum = librosa.stft(sig, n_fft=window, hop_length=window // 4, window="hann", pad_mode="reflect")
    magnitude = np.abs(spectrum)
    return magnitude if n_mels is None else _mel_basis(window, n_mels) @ magnitude


def spectral_distance(hyp: np.ndarray, ref: np.ndarray, resolutions=MEL_RESOLUTIONS) -> float:
    """The Codec-SUPERB distance (module docstring) between two 1-D 16 kHz signals of equal length."""
    if hyp.shape[-1] <= max(window for window, _ in resolutions) // 2:
        return float("nan")
    total = 0.0
    for window, n_mels in resolutions:
        x, y = _magnitudes(ref, window, n_mels), _magnitudes(hyp, window, n_mels)
        log_x, log_y = (np.log10(np.maximum(m, CLAMP) ** 2) for m in (x, y))
        total += float(np.abs(log_x - log_y).mean() + np.abs(x - y).mean())
    return total


class SpectralDistance(PairScores):
    """Mean mel distance (``{"MelDist": mean}``) or multi-resolution STFT distance (``{"STFTDist": mean}``)
    over utterances, lower is better (module docstring).

    Arguments
    ---------
    sample_rate : sampling rate of the signals passed to ``append`` (resampled to 16 kHz).
    mel : the mel distance (else the linear STFT distance).
    """

    lower_is_better = True

    def __init__(self, sample_rate: int = 16000, mel: bool = True) -> None:
        self.sample_rate, self.mel = sample_rate, mel
        self.name = self.label = "MelDist" if mel else "STFTDist"
        resolutions = MEL_RESOLUTIONS if mel else STFT_RESOLUTIONS
        kind = "mel 150/80 bands" if mel else "STFT"
        self.model_id = f"Codec-SUPERB {kind}, windows 2048/512 ({package_id('librosa')})"
        score = partial(spectral_distance, resolutions=resolutions)
        self.loader = LazyModel(lambda: score, self.model_id, score)
        self.clear()
