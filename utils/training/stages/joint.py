"""FocalCodec-Stream stage 5's Brain (``train_joint.py``): the quantizer stage's algorithm with a trained
causal encoder in front and the frozen full-context teacher's features as the target.
"""

from typing import ClassVar

import speechbrain as sb
import torch

from utils.training.data import TrainItems
from utils.training.stages.quantizer import QuantizerStage


class JointStage(QuantizerStage):
    """Trains encoder, compressor, quantizer and decompressor together; teacher and decoder stay frozen."""

    stage = "joint"
    trained_parts: ClassVar[dict[str, str]] = {
        "encoder": "student_encoder",
        "compressor": "compressor",
        "quantizer": "quantizer",
        "decompressor": "decompressor",
    }
    # Training items hold the audio (for the student) and, cached, the teacher's features
    train_items = TrainItems()

    def targets_and_inputs(self, batch, stage: sb.Stage) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The teacher's (B, T, D) features (cached or computed), the student's (B, T', D) features of the
        same (augmented) audio, T' = T + 1 or 2, and the (B,) relative lengths. The student runs through
        self.modules (its DDP wrapper when distributed: docs/deviations.md #26)."""
        feats, lens, sig = self.features(batch, stage)[:3]
        return feats, self.modules.student_encoder(sig)[0], lens
