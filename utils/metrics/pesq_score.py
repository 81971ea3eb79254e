"""PESQ (ITU-T P.862): intrusive speech quality, computed by the ``pesq`` package (ludlows/python-pesq, the
ITU reference C code).

Both modes score the 16 kHz signals directly, as the package allows: **wide-band** (``"wb"``, P.862.2,
range about 1.04-4.64) and **narrow-band** (``"nb"``, P.862 with the P.862.1 MOS-LQO mapping, range about
1.02-4.55; the narrow-band figure codec papers quote, e.g. BigCodec's and X-Codec2's PESQ-NB). The output
and the reference are cut to their shared true length first. An utterance in which PESQ finds no speech
(the package's ``NoUtterancesError``, e.g. silence) or that is too short for it (``BufferTooShortError``)
is undefined (NaN): it is left out of the mean and of the intervals, and a warning says so.
"""

import logging

import numpy as np

from utils.metrics.common import METRIC_SAMPLE_RATE, LazyModel, PairScores, import_package, package_id

__all__ = ["PESQ"]

logger = logging.getLogger(__name__)

MODES = {"wb": "PESQ-WB", "nb": "PESQ-NB"}


def _pesq_function(label: str, mode: str):
    """``score(hyp, ref) -> PESQ`` (NaN when PESQ finds no utterance in them or they are too short)."""
    package = import_package(label, "pesq", "pesq==0.0.4")
    undefined = (package.NoUtterancesError, package.BufferTooShortError)

    def score(hyp: np.ndarray, ref: np.ndarray) -> float:
        try:
            return float(package.pesq(METRIC_SAMPLE_RATE, ref, hyp, mode))
        except undefined as error:
            logger.warning(f"{label} undefined for an utterance ({type(error).__name__}: {error}); left out")
            return float("nan")

    return score


class PESQ(PairScores):
    """Mean PESQ over utterances, ``{"PESQ-WB": mean}`` or ``{"PESQ-NB": mean}``.

    Arguments
    ---------
    sample_rate : sampling rate of the signals passed to ``append`` (resampled to 16 kHz).
    mode : ``"wb"`` (wide-band, P.862.2) or ``"nb"`` (narrow-band, P.862 + P.862.1).
    """

    def __init__(self, sample_rate: int = 16000, mode: str = "wb") -> None:
        if mode not in MODES:
            raise ValueError(f"PESQ mode must be one of {tuple(MODES)}, got {mode!r}")
        self.sample_rate, self.mode = sample_rate, mode
        self.name = self.label = MODES[mode]
        self.model_id = f"{package_id('pesq')} ({mode}, 16 kHz)"
        self.loader = LazyModel(lambda: _pesq_function(self.label, mode), self.model_id)
        self.clear()
