"""Codebook usage and normalised code entropy over a whole evaluation set (the paper reports both)."""

import math

import torch
from speechbrain.utils.metric_stats import MetricStats

__all__ = ["CodeUsage", "valid_frame_mask"]


def valid_frame_mask(lens: torch.Tensor | None, batch_size: int, num_frames: int) -> torch.Tensor:
    """(B, T) bool mask of the frames inside each item's relative length (SpeechBrain's convention:
    frame ``t`` is valid when ``t < lens * T``)."""
    if lens is None:
        return torch.ones(batch_size, num_frames, dtype=torch.bool)
    frames = torch.arange(num_frames, device=lens.device)
    return frames[None, :] < (lens[:, None] * num_frames - 1e-6)


class CodeUsage(MetricStats):
    """Token histogram accumulated over every ``append`` until ``clear``.

    * ``usage``: percentage of the ``codebook_size`` codes used at least once;
    * ``entropy``: entropy of the token distribution divided by ``log(codebook_size)``, in percent
      (100 = all codes equally likely).

    Padded frames (outside the relative lengths) are not counted.
    """

    def __init__(self, codebook_size: int) -> None:
        self.codebook_size = codebook_size
        self.clear()

    def clear(self) -> None:
        """Forget all counts."""
        self.ids: list[str] = []
        self.counts = torch.zeros(self.codebook_size, dtype=torch.long)

    @property
    def num_scored(self) -> int:
        """The number of utterances counted since the last ``clear``."""
        return len(self.ids)

    def append(self, ids: list[str], toks: torch.Tensor, lens: torch.Tensor | None = None) -> None:
        """Count the tokens of a batch.

        Arguments
        ---------
        ids : utterance ids, one per item.
        toks : (B, T) integer tokens in ``[0, codebook_size)``.
        lens : (B,) relative lengths, or None when nothing is padded.
        """
        mask = valid_frame_mask(lens, *toks.shape).to(toks.device)
        valid = toks[mask].long().cpu()
        self.counts += torch.bincount(valid, minlength=self.codebook_size)
        self.ids.extend(ids)

    def summarize(self, field: str | None = None) -> dict[str, float] | float:
        """``{"usage": %, "entropy": %}``, or one of them when ``field`` is given."""
        total = self.counts.sum().item()
        if total == 0:
            stats = {"usage": 0.0, "entropy": 0.0}
        else:
            probs = self.counts[self.counts > 0].double() / total
            entropy = -(probs * probs.log()).sum().item()
            stats = {
                "usage": 100.0 * (self.counts > 0).sum().item() / self.codebook_size,
                "entropy": 100.0 * entropy / math.log(self.codebook_size),
            }
        return stats if field is None else stats[field]
