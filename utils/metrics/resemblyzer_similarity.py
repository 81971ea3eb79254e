"""Offline speaker similarity: cosine of Resemblyzer (GE2E LSTM, 256-d) speaker embeddings.

``resemblyzer==0.1.4`` ships its weights in the wheel, so this works without a model hub. It is the
fallback of the WavLM-SV similarity and is always labelled ``Sim-Resemblyzer``: its cosines are on a
different scale (embeddings are non-negative, so cosines lie in [0, 1]; on the LibriSpeech clips in
shared/data, different utterances of speaker 84 score 0.83-0.94 and speaker 84 against 251 scores
0.45-0.60; white noise at 20 dB SNR already pulls an utterance against itself down to about 0.76), never
comparable with the paper's ``Sim``.

Install: ``pip install --no-deps resemblyzer==0.1.4 webrtcvad-wheels==2.0.14.post1`` (its declared
``webrtcvad`` dependency does not build/import here; ``webrtcvad-wheels`` provides the same module).

Each item is cut to its true length, then Resemblyzer's own preprocessing applies (volume raised to
-30 dBFS when quieter, long silences removed by a VAD; the untrimmed audio is used when the VAD keeps
nothing or the audio is silent), and the utterance embedding is the normalised mean of 1.6 s partial
embeddings.
"""

import numpy as np
import torch

from utils.metrics.common import LazyModel, MetricUnavailableError, UtteranceScores, check_pair, prepare_items

__all__ = ["ResemblyzerSimilarity"]

MIN_VAD_SAMPLES = 1600  # below 0.1 s of kept speech, the VAD-trimmed audio is not used


def _load_resemblyzer(label: str):
    try:
        from resemblyzer import VoiceEncoder
    except Exception as error:
        raise MetricUnavailableError(
            label,
            "resemblyzer",
            f"{type(error).__name__}: {error} (pip install --no-deps resemblyzer==0.1.4 "
            "webrtcvad-wheels==2.0.14.post1)",
        ) from error
    return VoiceEncoder("cpu", verbose=False).eval()


class ResemblyzerSimilarity(UtteranceScores):
    """Mean cosine similarity of Resemblyzer embeddings, hyp vs ref: ``{"Sim-Resemblyzer": mean}``.

    Arguments
    ---------
    sample_rate : sampling rate of the signals passed to ``append`` (resampled to 16 kHz).
    label : the key of the figure in ``summarize``.
    """

    score_kind = "cosine"

    def __init__(self, sample_rate: int = 16000, label: str = "Sim-Resemblyzer") -> None:
        self.sample_rate = sample_rate
        self.name = self.label = label
        self.loader = LazyModel(
            lambda: _load_resemblyzer(label), "resemblyzer 0.1.4 VoiceEncoder (pretrained.pt)"
        )
        self.model_id = self.loader.model_id
        self.clear()

    def load(self, device: torch.device | str = "cpu"):
        """Load the encoder now (otherwise on the first ``append``); it always runs on the CPU."""
        return self.loader.get("cpu")

    def embed(self, item: torch.Tensor) -> np.ndarray:
        """(256,) unit-norm embedding of a 16 kHz 1-D signal."""
        from resemblyzer import preprocess_wav

        encoder = self.load()
        wav = item.clamp(-1.0, 1.0).cpu().numpy().astype(np.float32)
        with np.errstate(all="ignore"):  # silent input: its volume normalisation divides by zero
            trimmed = preprocess_wav(wav)
        if trimmed.shape[0] < MIN_VAD_SAMPLES or not np.isfinite(trimmed).all():
            trimmed = wav
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # a small LSTM: one thread is as fast, and far faster on a busy machine
        try:
            return encoder.embed_utterance(trimmed.astype(np.float32))
        finally:
            torch.set_num_threads(threads)

    def append(
        self, ids: list[str], hyp: torch.Tensor, ref: torch.Tensor, lens: torch.Tensor | None = None
    ) -> None:
        """Score a batch: ``hyp``/``ref`` (B, N) at ``sample_rate``; ``lens`` (B,) relative or None."""
        check_pair(hyp, ref)
        self.load()
        hyps = prepare_items(hyp, lens, self.sample_rate)
        refs = prepare_items(ref, lens, self.sample_rate)
        for hyp_item, ref_item in zip(hyps, refs, strict=True):
            a, b = self.embed(hyp_item), self.embed(ref_item)
            self.scores.append(float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b))))
        self.ids.extend(ids)
