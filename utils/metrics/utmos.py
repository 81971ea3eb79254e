"""UTMOS: predicted naturalness MOS (1-5) of the UTMOS22 strong learner, as the original recipe.

The model is ``utmos22_strong`` of SpeechMOS (``torch.hub.load("tarepan/SpeechMOS:v1.2.0", ...)``),
called as ``model(wave (B, T), 16000) -> (B,)``. It needs GitHub for the code and the weights on first
use; offline, pass a local clone of SpeechMOS as ``source`` (its weight file must then be in the torch hub
checkpoint cache, or be given as ``checkpoint``). :class:`~utils.metrics.suite.QualityMetrics` falls back
to DNSMOS when UTMOS cannot be loaded.

Every item is cut to its true length first; items of equal length are scored together, so no padding is
ever seen by the model (docs/deviations.md #16).
"""

import torch

from utils.metrics.common import (
    METRIC_SAMPLE_RATE,
    LazyModel,
    UtteranceScores,
    group_by_length,
    load_torch_hub,
    prepare_items,
)

__all__ = ["UTMOS", "UTMOS_ENTRY", "UTMOS_SOURCE", "RefUTMOS"]

UTMOS_SOURCE = "tarepan/SpeechMOS:v1.2.0"
UTMOS_ENTRY = "utmos22_strong"


class UTMOS(UtteranceScores):
    """Mean UTMOS22-strong score over utterances, reported as ``{label: mean}``.

    Arguments
    ---------
    sample_rate : sampling rate of the signals passed to ``append`` (resampled to 16 kHz).
    source : a torch hub GitHub repo (``owner/name:ref``) or a local SpeechMOS clone (folder with hubconf.py).
    entry : the hub entry point.
    checkpoint : optional local state_dict file replacing the entry point's weight download.
    model : an already-built predictor (skips loading), e.g. for tests.
    share_with : another UTMOS metric whose model is reused (RefUTMOS shares the UTMOS model).
    label : the key of the figure in ``summarize``.
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        source: str = UTMOS_SOURCE,
        entry: str = UTMOS_ENTRY,
        checkpoint: str | None = None,
        model: torch.nn.Module | None = None,
        share_with: "UTMOS | None" = None,
        label: str = "UTMOS",
    ) -> None:
        self.sample_rate = sample_rate
        self.name = self.label = label
        if share_with is not None:
            self.loader = share_with.loader
        else:
            self.loader = LazyModel(
                lambda: load_torch_hub(label, source, entry, checkpoint),
                f"{source} {entry}" + (f" + {checkpoint}" if checkpoint else ""),
                model,
            )
        self.model_id = self.loader.model_id
        self.clear()

    @torch.no_grad()
    def append(self, ids: list[str], sig: torch.Tensor, lens: torch.Tensor | None = None) -> None:
        """Score a batch.

        Arguments
        ---------
        ids : utterance ids, one per item.
        sig : (B, N) signals at ``sample_rate``.
        lens : (B,) relative lengths, or None when nothing is padded.
        """
        items = prepare_items(sig, lens, self.sample_rate)
        model = self.loader.get(sig.device)
        if isinstance(model, torch.nn.Module):
            model.eval()
        scores = [0.0] * len(items)
        for group in group_by_length(items):
            batch = torch.stack([items[i] for i in group]).to(sig.device)
            for i, score in zip(group, model(batch, METRIC_SAMPLE_RATE).reshape(-1).tolist(), strict=True):
                scores[i] = score
        self.ids.extend(ids)
        self.scores.extend(scores)


class RefUTMOS(UTMOS):
    """UTMOS of the reference (input) audio: the same model, labelled ``RefUTMOS``."""

    def __init__(self, *args, label: str = "RefUTMOS", **kwargs) -> None:
        super().__init__(*args, label=label, **kwargs)
