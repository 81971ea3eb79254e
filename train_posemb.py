#!/usr/bin/env python3
"""FocalCodec-Stream stage 2: a causal convolutional positional embedding distilled from the full-context
one of the frozen WavLM6 teacher.

    python train_posemb.py hparams/stream/conv_posemb.yaml --data_folder <LibriTTS>

Student and teacher see the same input, the teacher's positional-embedding input (its CNN front end and
projection: cached with ``--feature_cache True``); the student, a copy of the teacher's convolution made
causal (left context only), learns to give the teacher's output (masked MSE). The output folder is stage 3's
``--student_encoder_posemb_checkpoint``.
"""

import sys
from typing import ClassVar, NamedTuple

import speechbrain as sb
import torch

from utils.brain import CodecBrain
from utils.recipe import TrainItems, setup_recipe, train_and_test


class DistillationOutput(NamedTuple):
    """Student and teacher outputs of a batch."""

    hyp: torch.Tensor  # (B, T, D) student positional embedding
    target: torch.Tensor  # (B, T, D) teacher positional embedding
    lens: torch.Tensor  # (B,) relative lengths


class PosembDistillation(CodecBrain):
    """Trains the causal positional embedding; the teacher stays frozen."""

    stage = "posemb"
    trained_parts: ClassVar[dict[str, str]] = {"posemb": "student_posemb"}

    def compute_forward(self, batch, stage: sb.Stage) -> DistillationOutput:
        """Teacher positional-embedding input (cached or computed) -> both embeddings."""
        batch = batch.to(self.device)
        inputs, lens = self.features(batch, stage)[:2]
        with torch.no_grad():
            target = self.hparams.encoder.encoder.positional_embedding(inputs)[0]
        hyp = self.modules.student_posemb(inputs)[0]
        return DistillationOutput(hyp, target, lens)

    def compute_objectives(self, predictions: DistillationOutput, batch, stage: sb.Stage) -> torch.Tensor:
        """Masked MSE between the two embeddings (the original objective)."""
        return self.hparams.rec_loss(predictions.hyp, predictions.target, length=predictions.lens)


# With the feature cache, training reads the teacher's positional-embedding input alone (no audio)
TRAIN_ITEMS = TrainItems(audio=False)


def main(argv: list[str]) -> None:
    recipe = setup_recipe(argv, TRAIN_ITEMS)
    hparams = recipe.hparams
    # The student starts as the teacher's convolution (same shapes; only the padding differs)
    teacher = hparams["encoder"].encoder.positional_embedding
    hparams["student_posemb"].load_state_dict(teacher.state_dict(), strict=True)
    train_and_test(PosembDistillation, recipe, min_key="loss")


if __name__ == "__main__":
    main(sys.argv[1:])
