#!/usr/bin/env python3
"""FocalCodec-Stream stage 3: a causal WavLM6 distilled layer by layer from the frozen full-context WavLM6.

    python train_encoder.py hparams/stream/wavlm.yaml --data_folder <LibriTTS> \\
        --student_encoder_posemb_checkpoint results/stream/conv_posemb/0

The student starts as the teacher with the stage-2 causal positional embedding; its positional and relative
position embeddings stay frozen. Each of its transformer layers learns the teacher's layer output on the same
audio (causal frames paired by index with the teacher's, the 1-2 extra causal frames at the end dropped),
weighted by ``distill_weights`` (deeper layers weigh more). The output folder is stage 4's
``--encoder_checkpoint``.

The Brain is :class:`EncoderStage` (``utils/training/stages/encoder.py``); this script wires it up.

The five stages: docs/stream.md.
"""

import sys

from utils.runs import init_student_encoder
from utils.training.recipe import setup_recipe, train_and_test
from utils.training.stages.encoder import EncoderStage

EncoderDistillation = EncoderStage  # its name before the stages were named (kept for code that imports it)


def main(argv: list[str]) -> None:
    recipe = setup_recipe(argv, EncoderStage.train_items)
    hparams = recipe.hparams
    student, teacher = hparams["student_encoder"], hparams["encoder"]
    init_student_encoder(student, teacher, hparams["student_encoder_posemb_checkpoint"])
    train_and_test(EncoderStage, recipe, min_key="loss")


if __name__ == "__main__":
    main(sys.argv[1:])
