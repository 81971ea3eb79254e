"""DNSMOS (P.835): non-intrusive speech quality (1-5) from Microsoft's DNS challenge models.

The ONNX models ship inside the ``speechmos`` wheel (``speechmos==0.0.1.1``, which needs ``onnxruntime``
and ``librosa``), so this metric works offline. The FocalCodec paper reports DNSMOS for its noisy
evaluation sets; here it is also the offline fallback of UTMOS. Its figures are always labelled
``DNSMOS-*`` (never ``UTMOS``): the two scales are not comparable.

Per utterance the model gives OVRL (overall), SIG (speech signal) and BAK (background) on the P.835
scale. Like the reference implementation, clips shorter than 9.01 s are repeated until they are long
enough and longer clips are scored on 9.01 s windows with a 1 s hop, then averaged.
"""

from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch

from utils.metrics.common import (
    METRIC_SAMPLE_RATE,
    LazyModel,
    MetricUnavailableError,
    UtteranceScores,
    prepare_items,
)

__all__ = ["DNSMOS"]

FIELDS = {"OVRL": "ovrl_mos", "SIG": "sig_mos", "BAK": "bak_mos"}


def _load_dnsmos(label: str, personalized: bool):
    try:
        from speechmos import dnsmos
    except Exception as error:  # not installed, or onnxruntime/librosa missing
        raise MetricUnavailableError(
            label,
            "speechmos",
            f"{type(error).__name__}: {error} (pip install speechmos==0.0.1.1 onnxruntime)",
        ) from error
    folder = Path(dnsmos.__file__).parent
    primary = folder / ("pdnsmos_models" if personalized else "dnsmos_models") / "sig_bak_ovr.onnx"
    try:
        model = dnsmos.DNSMOS(str(primary), str(folder / "dnsmos_models" / "model_v8.onnx"))
    except Exception as error:
        raise MetricUnavailableError(label, "speechmos", f"{type(error).__name__}: {error}") from error
    model.version = version("speechmos")
    return model


class DNSMOS(UtteranceScores):
    """Mean DNSMOS over utterances: ``{"<label>-OVRL", "<label>-SIG", "<label>-BAK"}``.

    Arguments
    ---------
    sample_rate : sampling rate of the signals passed to ``append`` (resampled to 16 kHz).
    label : prefix of the reported keys (``"DNSMOS"``; ``"RefDNSMOS"`` for the reference audio).
    personalized : use the personalised DNSMOS model (suppresses interfering talkers) instead.
    share_with : another DNSMOS metric whose (ONNX) model is reused.

    Samples outside [-1, 1] are clipped (the model is defined on that range). Each of ``scores`` is a
    ``{"OVRL", "SIG", "BAK"}`` dict.
    """

    fields = tuple(FIELDS)

    def __init__(
        self,
        sample_rate: int = 16000,
        label: str = "DNSMOS",
        personalized: bool = False,
        share_with: "DNSMOS | None" = None,
    ) -> None:
        self.sample_rate = sample_rate
        self.name = self.label = label
        self.personalized = personalized
        if share_with is not None:
            self.loader = share_with.loader
        else:
            kind = "personalized DNSMOS" if personalized else "DNSMOS P.835 + P.808"
            self.loader = LazyModel(lambda: _load_dnsmos(label, personalized), f"speechmos {kind} (ONNX)")
        self.model_id = self.loader.model_id
        self.clear()

    def append(self, ids: list[str], sig: torch.Tensor, lens: torch.Tensor | None = None) -> None:
        """Score a batch: ``sig`` (B, N) at ``sample_rate``, ``lens`` (B,) relative lengths or None."""
        items = prepare_items(sig, lens, self.sample_rate)
        model = self.loader.get()
        for item in items:
            audio = item.clamp(-1.0, 1.0).cpu().numpy().astype(np.float32)
            result = model(audio, METRIC_SAMPLE_RATE, self.personalized)
            self.scores.append({name: float(result[key]) for name, key in FIELDS.items()})
        self.ids.extend(ids)
