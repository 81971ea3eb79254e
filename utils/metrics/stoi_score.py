"""STOI and extended STOI: intrusive intelligibility (0-1), computed by ``pystoi`` (the reference Python port
of Taal et al.'s MATLAB code).

``pystoi`` resamples both signals to 10 kHz, drops the frames of the reference more than 40 dB below its
loudest, and correlates 384 ms envelopes of one-third-octave bands: **STOI** (Taal et al., 2011) with
clipping, **eSTOI** (Jensen & Taal, 2016) without clipping and over spectral as well as temporal
envelopes (more sensitive to modulated noise). The output and the reference are cut to their shared true
length first.
"""

import numpy as np

from utils.metrics.common import METRIC_SAMPLE_RATE, LazyModel, PairScores, import_package, package_id

__all__ = ["STOI"]


def _stoi_function(label: str, extended: bool):
    package = import_package(label, "pystoi", "pystoi==0.4.1")

    def score(hyp: np.ndarray, ref: np.ndarray) -> float:
        return float(package.stoi(ref, hyp, METRIC_SAMPLE_RATE, extended=extended))

    return score


class STOI(PairScores):
    """Mean STOI (or eSTOI) over utterances: ``{"STOI": mean}`` or ``{"eSTOI": mean}``.

    Arguments
    ---------
    sample_rate : sampling rate of the signals passed to ``append`` (resampled to 16 kHz, then by
        ``pystoi`` to 10 kHz).
    extended : eSTOI instead of STOI.
    """

    def __init__(self, sample_rate: int = 16000, extended: bool = False) -> None:
        self.sample_rate, self.extended = sample_rate, extended
        self.name = self.label = "eSTOI" if extended else "STOI"
        self.model_id = f"{package_id('pystoi')} ({'extended' if extended else 'classic'})"
        self.loader = LazyModel(lambda: _stoi_function(self.label, extended), self.model_id)
        self.clear()
