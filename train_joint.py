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

The Brain is :class:`JointStage` (``utils/training/stages/joint.py``); this script wires it up.

The five stages: docs/stream.md.
"""

import sys

from utils.runs import init_joint_from_codec, init_joint_stage, listening_decoder
from utils.training.recipe import setup_recipe, train_and_test
from utils.training.stages.joint import JointStage

Refinement = JointStage  # its name before the stages were named (kept for code that imports it)


def main(argv: list[str]) -> None:
    recipe = setup_recipe(argv, JointStage.train_items)
    hparams, pretrained = recipe.hparams, recipe.pretrained
    # Listen through the stage-1 decoder, or the fine-tuned codec's, or none
    listening = listening_decoder(hparams, pretrained)
    # Start from the stage-4 run, or from a codec (init_from); this run's checkpoint still wins on resume
    if pretrained is not None:
        init_joint_from_codec(hparams, pretrained, listening)
    else:
        init_joint_stage(hparams)
    train_and_test(JointStage, recipe, min_key="loss")


if __name__ == "__main__":
    main(sys.argv[1:])
