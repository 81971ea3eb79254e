#!/usr/bin/env python3
"""FocalCodec quantizer stage: compressor -> binary spherical quantizer -> decompressor on frozen
WavLM6 features.

    python train_quantizer.py hparams/bsq.yaml --data_folder <LibriTTS>
    python train_quantizer.py hparams/bsq.yaml --data_folder <LibriTTS> --decoder_checkpoint results/vocos/0

The loss is the feature MSE (padding masked) plus the quantizer's entropy loss. With
``--decoder_checkpoint`` (the decoder stage's output) valid/test also write resynthesized audio.

The Brain is :class:`QuantizerStage` (``utils/training/stages/quantizer.py``); this script wires it up.

Training: docs/training.md (FocalCodec-Stream stage 4: docs/stream.md).
"""

import sys

from utils.runs import init_from_pretrained, listening_decoder
from utils.training.recipe import setup_recipe, train_and_test
from utils.training.stages.quantizer import QuantizerStage

Quantization = QuantizerStage  # its name before the stages were named (kept for code that imports it)


def main(argv: list[str]) -> None:
    recipe = setup_recipe(argv, QuantizerStage.train_items)
    hparams, pretrained = recipe.hparams, recipe.pretrained
    # Listen through the decoder stage's decoder, or the fine-tuned codec's, or none
    listening = listening_decoder(hparams, pretrained)
    if pretrained is not None:  # fine-tuning (this run's checkpoint still wins on resume)
        trained = {key: hparams[key] for key in QuantizerStage.trained_parts.values()}
        init_from_pretrained(pretrained, hparams=hparams, **trained, **listening)
    train_and_test(QuantizerStage, recipe, min_key="loss")


if __name__ == "__main__":
    main(sys.argv[1:])
