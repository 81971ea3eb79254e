"""FocalCodec-Stream stage 2's Brain (``train_posemb.py``): a causal convolutional positional embedding
distilled from the full-context one of the frozen WavLM6 teacher, on the same input (the teacher's
positional-embedding input), with a masked MSE.
"""

from typing import ClassVar, NamedTuple

import speechbrain as sb
import torch

from utils.training.brain import CodecBrain
from utils.training.data import TrainItems


class DistillationOutput(NamedTuple):
    """Student and teacher outputs of a batch."""

    hyp: torch.Tensor  # (B, T, D) student positional embedding
    target: torch.Tensor  # (B, T, D) teacher positional embedding
    lens: torch.Tensor  # (B,) relative lengths


class PosembStage(CodecBrain):
    """Trains the causal positional embedding; the teacher stays frozen."""

    stage = "posemb"
    trained_parts: ClassVar[dict[str, str]] = {"posemb": "student_posemb"}
    # With the feature cache, training reads the teacher's positional-embedding input alone (no audio)
    train_items = TrainItems(audio=False)

    def compute_forward(self, batch, stage: sb.Stage) -> DistillationOutput:
        """Teacher positional-embedding input (cached or computed) -> both embeddings."""
        batch = batch.to(self.device)
        inputs, lens = self.features(batch, stage)[:2]
        with torch.no_grad():
            target = self.hparams.encoder.encoder.positional_embedding(inputs)[0]
        hyp = self.modules.student_posemb(inputs)[0]
        return DistillationOutput(hyp, target, lens)

    def compute_objectives(self, predictions: DistillationOutput, batch, stage: sb.Stage) -> torch.Tensor:
        """Masked MSE between the two embeddings."""
        return self.hparams.rec_loss(predictions.hyp, predictions.target, length=predictions.lens)
