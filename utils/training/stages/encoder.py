"""FocalCodec-Stream stage 3's Brain (``train_encoder.py``): a causal WavLM6 distilled layer by layer from the
frozen full-context WavLM6 (causal frames paired by index with the teacher's, the 1-2 extra causal frames
at the end dropped; layers weighted by ``distill_weights``).
"""

from typing import ClassVar, NamedTuple

import speechbrain as sb
import torch

from utils.training.brain import CodecBrain
from utils.training.distillation import layer_outputs, layer_weighted_mse


class LayerOutputs(NamedTuple):
    """Student and teacher layer outputs of a batch (frames paired by index)."""

    hyp: torch.Tensor  # (B, T, L, D) student layer outputs, cut to the teacher's frames
    target: torch.Tensor  # (B, T, L, D) teacher layer outputs
    lens: torch.Tensor  # (B,) relative lengths


class EncoderStage(CodecBrain):
    """Trains the causal student encoder; the teacher stays frozen."""

    stage = "encoder"
    trained_parts: ClassVar[dict[str, str]] = {"encoder": "student_encoder"}

    def compute_forward(self, batch, stage: sb.Stage) -> LayerOutputs:
        """Teacher layer outputs (cached or computed) and the student's on the same (augmented) audio."""
        batch = batch.to(self.device)
        target, lens, sig = self.features(batch, stage)[:3]
        target = target.unflatten(-1, (-1, self.hparams.encoder_dim))  # (B, T, L, D)
        # Called through self.modules (the DDP wrapper when distributed); the hooks sit on the layers inside
        hyp = layer_outputs(self.hparams.student_encoder, sig, forward=self.modules.student_encoder)
        return LayerOutputs(hyp[:, : target.shape[1]], target, lens)

    def compute_objectives(self, predictions: LayerOutputs, batch, stage: sb.Stage) -> torch.Tensor:
        """Layer-weighted masked MSE; each layer's distance is logged (``layer<i>_mse``)."""
        loss, layer_mse = layer_weighted_mse(*predictions, self.hparams.distill_weights)
        self.track(**{f"layer{i + 1}_mse": mse.detach() for i, mse in enumerate(layer_mse)})
        return loss
