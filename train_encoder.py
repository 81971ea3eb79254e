#!/usr/bin/env python3
"""FocalCodec-Stream stage 3: a causal WavLM6 distilled layer by layer from the frozen full-context WavLM6.

    python train_encoder.py hparams/stream/wavlm.yaml --data_folder <LibriTTS> \\
        --student_encoder_posemb_checkpoint results/stream/conv_posemb/0

The student starts as the teacher with the stage-2 causal positional embedding; its positional and relative
position embeddings stay frozen. Each of its transformer layers learns the teacher's layer output on the same
audio (causal frames paired by index with the teacher's, the 1-2 extra causal frames at the end dropped),
weighted by ``distill_weights`` (deeper layers weigh more). The output folder is stage 4's
``--encoder_checkpoint``.
"""

import sys
from typing import ClassVar, NamedTuple

import speechbrain as sb
import torch

from utils.brain import CodecBrain
from utils.distillation import layer_outputs, layer_weighted_mse
from utils.recipe import setup_recipe, train_and_test
from utils.stream_chain import init_student_encoder


class LayerOutputs(NamedTuple):
    """Student and teacher layer outputs of a batch (frames paired by index)."""

    hyp: torch.Tensor  # (B, T, L, D) student layer outputs, cut to the teacher's frames
    target: torch.Tensor  # (B, T, L, D) teacher layer outputs
    lens: torch.Tensor  # (B,) relative lengths


class EncoderDistillation(CodecBrain):
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


def main(argv: list[str]) -> None:
    recipe = setup_recipe(argv)  # training items: the audio (for the student), the teacher's outputs
    hparams = recipe.hparams
    student, teacher = hparams["student_encoder"], hparams["encoder"]
    init_student_encoder(student, teacher, hparams["student_encoder_posemb_checkpoint"])
    train_and_test(EncoderDistillation, recipe, min_key="loss")


if __name__ == "__main__":
    main(sys.argv[1:])
