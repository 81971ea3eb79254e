"""PLCMOS v2: non-intrusive quality (1-5) of speech after packet-loss concealment, from Microsoft's PLC
challenge (Diener et al., Interspeech 2023), with the ONNX model that ships in the ``speechmos`` wheel
(offline, like DNSMOS). ESPnet-Codec and VERSA report it for codecs.

The model scores a log-power spectrogram (512-point Hamming STFT, hop 256, at 16 kHz) once per simulated
rater embedding and averages: ``speechmos`` draws its 15 embeddings from NumPy's global random state, so
its scores vary from call to call. Here the same 15 embeddings (a generator seeded with 0) rate every
clip: a clip always gets the same score, whatever the order. Samples are clipped to [-1, 1] (the range
``speechmos`` requires).
"""

import numpy as np
import torch

from utils.metrics.common import LazyModel, UtteranceScores, import_package, package_id, prepare_items

__all__ = ["PLCMOS", "RATERS", "RATER_SEED"]

RATERS = 15  # speechmos's embed_rounds
RATER_SEED = 0


def _load_plcmos(label: str):
    module = import_package(label, "speechmos.plcmos", "speechmos==0.0.1.1 onnxruntime")
    return module.PLCMOS()


def plcmos_score(model, audio: np.ndarray) -> float:
    """The mean PLCMOS of a 1-D 16 kHz signal over :data:`RATERS` seeded rater embeddings (speechmos's
    ``get_mos`` with a seeded generator in place of ``np.random``)."""
    features = np.float32(model.stft_transform(audio))[np.newaxis, np.newaxis, ...]
    raters = np.random.default_rng(RATER_SEED).normal(size=(RATERS, 1, 64)).astype(np.float32)
    scores = [
        float(model.session.run(None, {"degraded_audio": features, "rater_embed": rater})[0].item())
        for rater in raters
    ]
    return sum(scores) / len(scores)


class PLCMOS(UtteranceScores):
    """Mean PLCMOS over utterances: ``{"PLCMOS": mean}``.

    Arguments
    ---------
    sample_rate : sampling rate of the signals passed to ``append`` (resampled to 16 kHz).
    """

    def __init__(self, sample_rate: int = 16000) -> None:
        self.sample_rate = sample_rate
        self.name = self.label = "PLCMOS"
        self.model_id = f"{package_id('speechmos')} PLCMOS v2 (ONNX, {RATERS} seeded raters)"
        self.loader = LazyModel(lambda: _load_plcmos(self.label), self.model_id)
        self.clear()

    def append(self, ids: list[str], sig: torch.Tensor, lens: torch.Tensor | None = None) -> None:
        """Score a batch: ``sig`` (B, N) at ``sample_rate``, ``lens`` (B,) relative lengths or None."""
        model = self.loader.get()
        for item in prepare_items(sig, lens, self.sample_rate):
            self.scores.append(plcmos_score(model, item.clamp(-1.0, 1.0).double().cpu().numpy()))
        self.ids.extend(ids)
