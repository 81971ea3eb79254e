#!/usr/bin/env python3
"""FocalCodec decoder stage: a Vocos vocoder trained adversarially on frozen WavLM6 features.

    python train_decoder.py hparams/vocos.yaml --data_folder <LibriTTS>

Each step crops 22 feature frames (0.44 s) per utterance, updates the HiFi-GAN discriminators (hinge
loss), then the generator (hinge adversarial + 54 x feature matching + 45 x mel L1) through the updated
discriminators. Valid and test resynthesize whole utterances.

The Brain is :class:`DecoderStage` (``utils/training/stages/decoder.py``); this script wires it up.

Training: docs/training.md (FocalCodec-Stream stage 1: docs/stream.md).
"""

import sys

from utils.runs import init_from_pretrained
from utils.training.recipe import setup_recipe, train_and_test
from utils.training.stages.decoder import DecoderStage

Resynthesis = DecoderStage  # its name before the stages were named (kept for code that imports it)


def main(argv: list[str]) -> None:
    recipe = setup_recipe(argv, DecoderStage.train_items)
    hparams = recipe.hparams
    if recipe.pretrained is not None:  # fine-tuning (this run's checkpoint still wins on resume)
        init_from_pretrained(recipe.pretrained, hparams=hparams, generator=hparams["generator"])
    hparams["progress"].select(recipe.datasets["valid"])
    train_and_test(DecoderStage, recipe, max_key="epoch")


if __name__ == "__main__":
    main(sys.argv[1:])
