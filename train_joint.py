#!/usr/bin/env python3
"""FocalCodec-Stream stage 5: joint fine-tuning of the causal encoder, compressor, quantizer and decompressor
against the frozen full-context WavLM6 teacher.

    python train_joint.py hparams/stream/joint.yaml --data_folder <LibriTTS> \\
        --quantizer_checkpoint results/stream/bsq/0 [--decoder_checkpoint results/stream/wavenext/0]

The quantizer stage's algorithm (train_quantizer.py) with a trained encoder in front and the teacher's
features as the target: audio -> causal student encoder -> compressor -> BSQ -> decompressor (+ a new
lookahead refiner), masked MSE to the teacher's features (the 1-2 extra causal frames dropped) plus the
entropy loss. Everything starts from the stage-4 run (its encoder is the stage-3 student it was trained on).
Export: ``python export_codec.py --quantizer results/stream/joint/0 --decoder results/stream/wavenext/0``.
"""

import sys
from typing import ClassVar

import speechbrain as sb
import torch

from train_quantizer import Quantization
from utils.finetune import listening_decoder
from utils.recipe import setup_recipe, train_and_test
from utils.stream_chain import init_joint_from_codec, init_joint_stage


class Refinement(Quantization):
    """Trains encoder, compressor, quantizer and decompressor together; teacher and decoder stay frozen."""

    stage = "joint"
    trained_parts: ClassVar[dict[str, str]] = {
        "encoder": "student_encoder",
        "compressor": "compressor",
        "quantizer": "quantizer",
        "decompressor": "decompressor",
    }

    def targets_and_inputs(self, batch, stage: sb.Stage) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The teacher's (B, T, D) features (cached or computed), the student's (B, T', D) features of the
        same (augmented) audio, T' = T + 1 or 2, and the (B,) relative lengths. The student runs through
        self.modules (its DDP wrapper when distributed: the original bypassed it)."""
        feats, lens, sig = self.features(batch, stage)[:3]
        return feats, self.modules.student_encoder(sig)[0], lens


def main(argv: list[str]) -> None:
    recipe = setup_recipe(argv)  # training items: the audio (for the student), the teacher's features
    hparams, pretrained = recipe.hparams, recipe.pretrained
    # Listen through the stage-1 decoder, or the fine-tuned codec's, or none
    listening = listening_decoder(hparams, pretrained)
    # Start from the stage-4 run, or from a codec (init_from); this run's checkpoint still wins on resume
    if pretrained is not None:
        init_joint_from_codec(hparams, pretrained, listening)
    else:
        init_joint_stage(hparams)
    train_and_test(Refinement, recipe, min_key="loss")


if __name__ == "__main__":
    main(sys.argv[1:])
