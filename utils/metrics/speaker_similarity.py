"""Speaker similarity: cosine of WavLM-base-SV x-vectors of hypothesis and reference, as the original.

The model is ``microsoft/wavlm-base-sv`` through ``transformers.AutoModelForAudioXVector`` (a local
``save_pretrained`` folder can replace the hub id). As in the original recipe the raw 16 kHz waveform is
the input (the hub feature extractor is not applied), very short items are replicate-padded on the
right, and the figure is the mean cosine over utterances on a **0-1 scale** (the paper's tables show it
×100).

Items shorter than 5200 samples (0.325 s) are padded to 5200 (two TDNN frames), the shortest length with
a finite embedding: at 4880, the shortest input the x-vector TDNN accepts, a single frame's (unbiased)
standard deviation in the statistics pooling is NaN (docs/deviations.md #16).

Items are cut to their true length first and only items of equal length are batched together, so
padding never reaches the model (and no attention mask is needed). Masking alone would not be enough:
WavLM-base normalises its first convolution over time (group norm), which an attention mask does not
shield from padding.
:class:`~utils.metrics.suite.QualityMetrics` falls back to Resemblyzer (``Sim-Resemblyzer``) when this
model cannot be loaded.
"""

import torch
import torch.nn.functional as F

from utils.metrics.common import (
    LazyModel,
    UtteranceScores,
    group_by_length,
    load_hf_pretrained,
    paired_items,
)

__all__ = ["MIN_SAMPLES", "SV_SOURCE", "SpeakerSimilarity"]

SV_SOURCE = "microsoft/wavlm-base-sv"
MIN_SAMPLES = 5200  # 4880 gives one TDNN frame and a NaN std (see the module docstring)


def _load_xvector(label: str, source: str, cache_dir: str | None):
    from transformers import AutoModelForAudioXVector

    kwargs = {"cache_dir": cache_dir} if cache_dir else {}
    return load_hf_pretrained(label, AutoModelForAudioXVector.from_pretrained, source, **kwargs).eval()


def replicate_pad(item: torch.Tensor, length: int = MIN_SAMPLES) -> torch.Tensor:
    """Right-pad a 1-D signal to ``length`` by repeating its last sample (no-op when long enough)."""
    if item.shape[-1] >= length:
        return item
    return F.pad(item[None, None], (0, length - item.shape[-1]), mode="replicate")[0, 0]


class SpeakerSimilarity(UtteranceScores):
    """Mean cosine similarity (0-1 scale; the paper reports ×100) of x-vectors, hyp vs ref.

    Arguments
    ---------
    sample_rate : sampling rate of the signals passed to ``append`` (resampled to 16 kHz).
    source : hub id or local ``save_pretrained`` folder of an ``AutoModelForAudioXVector`` model.
    cache_dir : Hugging Face cache folder (default: the usual HF cache).
    model : an already-built x-vector model (skips loading).
    label : the key of the figure in ``summarize``.
    """

    score_kind = "cosine, 0-1"

    def __init__(
        self,
        sample_rate: int = 16000,
        source: str = SV_SOURCE,
        cache_dir: str | None = None,
        model: torch.nn.Module | None = None,
        label: str = "Sim",
    ) -> None:
        self.sample_rate = sample_rate
        self.name = self.label = label
        self.loader = LazyModel(lambda: _load_xvector(label, source, cache_dir), source, model)
        self.model_id = source
        self.clear()

    @torch.no_grad()
    def embed(self, items: list[torch.Tensor], device: torch.device | str = "cpu") -> torch.Tensor:
        """(len(items), D) x-vectors of 16 kHz 1-D signals (each replicate-padded to MIN_SAMPLES)."""
        model = self.load(device).eval()
        items = [replicate_pad(item) for item in items]
        embeddings: list[torch.Tensor | None] = [None] * len(items)
        for group in group_by_length(items):
            batch = torch.stack([items[i] for i in group]).to(device)  # no padding: no attention mask needed
            output = model(input_values=batch).embeddings
            for i, embedding in zip(group, output, strict=True):
                embeddings[i] = embedding
        return torch.stack(embeddings)

    def append(
        self, ids: list[str], hyp: torch.Tensor, ref: torch.Tensor, lens: torch.Tensor | None = None
    ) -> None:
        """Score a batch: ``hyp``/``ref`` (B, N) at ``sample_rate``; ``lens`` (B,) relative or None."""
        items = paired_items(hyp, ref, lens, self.sample_rate)
        embeddings = self.embed(items, hyp.device)
        hyp_emb, ref_emb = embeddings[: len(ids)], embeddings[len(ids) :]
        self.scores.extend(F.cosine_similarity(hyp_emb, ref_emb, dim=-1).tolist())
        self.ids.extend(ids)
