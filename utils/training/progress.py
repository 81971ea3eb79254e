"""Decoder-stage progress at a glance, without network access.

The GAN losses are poor guides (the adversarial and discriminator terms rise while the decoder gets
better), and the audio-quality models of the test stage need downloads. So at every validation, and
optionally every ``every_steps`` training steps, the decoder resynthesizes a fixed set of validation
utterances (the first ``num_utterances`` in validation order: the ones whose audio is also written) and
two figures that move one way as it improves are logged:

* ``mel_distance``: mean L1 distance between the log-mel spectrograms of the resynthesis and of the input
  (the training's mel loss on whole utterances); falls towards 0;
* ``DNSMOS-OVRL``: DNSMOS P.835 overall quality of the resynthesis (the ``speechmos`` wheel ships the
  model); rises towards that of the input, at most 5.
"""

import logging
from collections.abc import Callable, Sequence

import torch
from speechbrain.dataio.batch import PaddedBatch

from utils.metrics import DNSMOS, MetricUnavailableError

__all__ = ["METRICS", "ProgressProbe"]

logger = logging.getLogger(__name__)

METRICS = ("mel_distance", "dnsmos")
Resynthesize = Callable[[PaddedBatch], tuple[torch.Tensor, torch.Tensor]]
"""A one-item batch -> its (1, N) resynthesis and (1, N) input waveform."""


class ProgressProbe:
    """Progress figures of a decoder on a fixed set of utterances.

    Arguments
    ---------
    mel_loss : ``(hyp, ref)`` -> mean log-mel L1 distance of (B, 1, N) waveforms (the training's mel loss).
    num_utterances : size of the fixed set (0 disables the probe).
    every_steps : also measure every this many training steps (0: only at validation).
    metrics : some of ``mel_distance`` and ``dnsmos``.
    sample_rate : rate of the waveforms.
    """

    def __init__(
        self,
        mel_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        num_utterances: int = 8,
        every_steps: int = 0,
        metrics: Sequence[str] = METRICS,
        sample_rate: int = 16000,
    ) -> None:
        unknown = sorted(set(metrics) - set(METRICS))
        if unknown:
            raise ValueError(f"unknown progress metrics {unknown}; known: {', '.join(METRICS)}")
        self.mel_loss = mel_loss
        self.num_utterances = num_utterances
        self.every_steps = every_steps
        self.dnsmos = DNSMOS(sample_rate) if "dnsmos" in metrics else None
        self.use_mel = "mel_distance" in metrics
        self.items: list[dict] = []

    def select(self, dataset: Sequence[dict]) -> None:
        """Keep the first ``num_utterances`` items of ``dataset`` (the validation set) as the fixed set."""
        self.items = [dataset[index] for index in range(min(self.num_utterances, len(dataset)))]

    def due(self, step: int) -> bool:
        """Whether training step ``step`` (1-based) is one to measure at."""
        return bool(self.items) and self.every_steps > 0 and step % self.every_steps == 0

    @torch.no_grad()
    def measure(self, resynthesize: Resynthesize) -> dict[str, float]:
        """Resynthesize the fixed set one utterance at a time and return the figures (empty without a set)."""
        if not self.items:
            return {}
        distances = []
        if self.dnsmos is not None:
            self.dnsmos.clear()
        for item in self.items:
            hyp, ref = resynthesize(PaddedBatch([item]))
            hyp, ref = hyp.float().cpu(), ref.float().cpu()
            if self.use_mel:
                distances.append(float(self.mel_loss(hyp[:, None], ref[:, None])))
            self._score_dnsmos(item["id"], hyp)
        figures = {"mel_distance": sum(distances) / len(distances)} if distances else {}
        if self.dnsmos is not None:
            figures["DNSMOS-OVRL"] = self.dnsmos.summarize("OVRL")
        return figures

    def _score_dnsmos(self, uttid: str, hyp: torch.Tensor) -> None:
        if self.dnsmos is None:
            return
        try:
            self.dnsmos.append([uttid], hyp)
        except MetricUnavailableError as error:
            logger.warning(f"Progress: DNSMOS unavailable ({error.reason}); logging the mel distance only")
            self.dnsmos = None
