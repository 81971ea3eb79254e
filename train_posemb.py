#!/usr/bin/env python3
"""FocalCodec-Stream stage 2: a causal convolutional positional embedding distilled from the full-context
one of the frozen WavLM6 teacher.

    python train_posemb.py hparams/stream/conv_posemb.yaml --data_folder <LibriTTS>

Student and teacher see the same input, the teacher's positional-embedding input (its CNN front end and
projection: cached with ``--feature_cache True``); the student, a copy of the teacher's convolution made
causal (left context only), learns to give the teacher's output (masked MSE). The output folder is stage 3's
``--student_encoder_posemb_checkpoint``.

The Brain is :class:`PosembStage` (``utils/training/stages/posemb.py``); this script wires it up.

The five stages: docs/stream.md.
"""

import sys

from utils.training.recipe import setup_recipe, train_and_test
from utils.training.stages.posemb import PosembStage

PosembDistillation = PosembStage  # its name before the stages were named (kept for code that imports it)


def main(argv: list[str]) -> None:
    recipe = setup_recipe(argv, PosembStage.train_items)
    hparams = recipe.hparams
    # The student starts as the teacher's convolution (same shapes; only the padding differs)
    teacher = hparams["encoder"].encoder.positional_embedding
    hparams["student_posemb"].load_state_dict(teacher.state_dict(), strict=True)
    train_and_test(PosembStage, recipe, min_key="loss")


if __name__ == "__main__":
    main(sys.argv[1:])
