"""F0 (pitch) fidelity of the output against its reference: RMSE and correlation of the F0 where both are
voiced, and the F1 score of the output's voicing decisions, the pitch figures Vocos validates with (there
through ``torchcrepe``, which needs its model weights; here without any).

The F0 track and the voiced/unvoiced decision of each signal come from probabilistic YIN
(``librosa.pyin``, Mauch & Dixon 2014): 50-550 Hz, 64 ms frames (1024 samples at 16 kHz), 10 ms hop. We
chose it over ``torchaudio.functional.detect_pitch_frequency`` because it decides voicing (which the F1
needs) and over Praat (Codec-SUPERB's ``parselmouth``) because ``librosa`` is already a dependency. The
output is sample-aligned with its reference (cut to their shared true length), so frames are compared
one to one (Codec-SUPERB aligns by DTW, which would hide a delay).

Per utterance, over the frames voiced in both (``F0-RMSE`` and ``F0-Corr``) or all frames (``F0-VUV-F1``):

* ``F0-RMSE``: root mean square of ``1200 log2(f0_out / f0_ref)``, in **cents** (lower is better);
* ``F0-Corr``: Pearson correlation of ``log2 f0`` of output and reference (higher is better; the same as
  Codec-SUPERB's correlation of cents);
* ``F0-VUV-F1``: F1 of the output's voiced frames against the reference's (higher is better).

A figure is undefined (NaN: left out of the mean and of the intervals) when no frame is voiced in both
(RMSE), fewer than two are or one track is constant (correlation), or neither signal has a voiced frame
(F1). ``librosa.pyin`` compiles itself on its first call (a few seconds) and then takes about a quarter of
the audio's duration on one CPU core.
"""

import numpy as np

from utils.metrics.common import METRIC_SAMPLE_RATE, LazyModel, PairScores, import_package, package_id

__all__ = ["PYIN_SETTINGS", "PitchMetrics", "pitch_scores"]

PYIN_SETTINGS = {"fmin": 50.0, "fmax": 550.0, "frame_length": 1024, "hop_length": 160}
NAN = float("nan")


def _track(librosa, sig: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """F0 in Hz (NaN where unvoiced) and the voiced flags, one per frame."""
    f0, voiced, _ = librosa.pyin(sig, sr=METRIC_SAMPLE_RATE, **PYIN_SETTINGS)
    return f0, voiced


def pitch_scores(librosa, hyp: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """``{"RMSE": cents, "Corr": Pearson r, "VUV-F1": F1}`` of two 1-D 16 kHz signals of equal length."""
    (f0_hyp, voiced_hyp), (f0_ref, voiced_ref) = _track(librosa, hyp), _track(librosa, ref)
    both = voiced_hyp & voiced_ref
    cents_hyp, cents_ref = 1200 * np.log2(f0_hyp[both]), 1200 * np.log2(f0_ref[both])
    rmse = float(np.sqrt(np.mean((cents_hyp - cents_ref) ** 2))) if both.any() else NAN
    defined = both.sum() >= 2 and cents_hyp.std() > 0 and cents_ref.std() > 0
    corr = float(np.corrcoef(cents_hyp, cents_ref)[0, 1]) if defined else NAN
    true_pos = both.sum()
    wrong = (voiced_hyp & ~voiced_ref).sum() + (~voiced_hyp & voiced_ref).sum()
    f1 = float(2 * true_pos / (2 * true_pos + wrong)) if true_pos + wrong else NAN
    return {"RMSE": rmse, "Corr": corr, "VUV-F1": f1}


class PitchMetrics(PairScores):
    """Mean ``F0-RMSE`` (cents), ``F0-Corr`` and ``F0-VUV-F1`` over utterances (module docstring).

    Arguments
    ---------
    sample_rate : sampling rate of the signals passed to ``append`` (resampled to 16 kHz).
    """

    fields = ("RMSE", "Corr", "VUV-F1")

    def __init__(self, sample_rate: int = 16000) -> None:
        self.sample_rate = sample_rate
        self.name = self.label = "F0"
        self.model_id = f"{package_id('librosa')} pyin, 50-550 Hz, 10 ms hop"
        self.loader = LazyModel(self._load, self.model_id)
        self.clear()

    def _load(self):
        librosa = import_package(self.label, "librosa", "librosa")
        return lambda hyp, ref: pitch_scores(librosa, hyp, ref)

    def lower_better(self, label: str) -> bool:
        """Only the RMSE is better lower."""
        return label == f"{self.label}-RMSE"
