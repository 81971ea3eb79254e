#!/usr/bin/env python3
"""Export a trained FocalCodec in the official checkpoint format (``config.json`` + ``model.safetensors``,
and ``model.json`` for the upstream package's local loader).

    python export_codec.py --quantizer results/bsq/0 --decoder results/vocos/0 --output my_codec

``--quantizer`` is the output folder of ``train_quantizer.py`` (50, 25 or 12.5 Hz; the checkpoint with the
lowest validation loss by default, or one ``CKPT+*`` folder), ``--decoder`` that of ``train_decoder.py``
(the checkpoint with the highest epoch, or one ``CKPT+*`` folder / ``generator.ckpt``). The frozen encoder's
weights are those the quantizer run used (its ``encoder_checkpoint``, or the cached download of
``encoder_hub``) unless ``--encoder_checkpoint`` is given. The result loads with
``FocalCodec.from_pretrained("my_codec")`` and ``python -m focalcodec.cli`` here, and with
``FocalCodec.from_pretrained("my_codec/model")`` in the upstream ``focalcodec`` package (a local path is a
stem there). The folder can be pushed to the Hugging Face Hub as is.

See docs/export.md.
"""

import argparse
import logging
import sys
from pathlib import Path

from focalcodec.hub import CONFIG_FILE, UPSTREAM_CONFIG_FILE, WEIGHT_FILES
from utils.runs import codec_from_runs, read_run


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quantizer", required=True, help="quantizer-stage output folder (or a CKPT+ folder)"
    )
    parser.add_argument(
        "--decoder", required=True, help="decoder-stage output folder (or a CKPT+ folder / generator.ckpt)"
    )
    parser.add_argument(
        "--output", required=True, help="folder to write config.json, model.json and model.safetensors to"
    )
    parser.add_argument(
        "--quantizer_checkpoint",
        choices=("best", "latest"),
        default="best",
        help="quantizer checkpoint: lowest validation loss (default) or most recent",
    )
    parser.add_argument(
        "--encoder_checkpoint",
        default=None,
        help="frozen encoder weights (wavlm6.pt, a FocalCodec weight file or an official-format folder); "
        "default: the ones the quantizer run used",
    )
    parser.add_argument(
        "--allow_random_encoder",
        action="store_true",
        help="export a run trained with encoder_random_init: True (tests and smoke runs only)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace config.json/model.safetensors in an existing folder"
    )
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("speechbrain"):
            logging.getLogger(name).setLevel(logging.WARNING)
    output = Path(args.output)
    names = (CONFIG_FILE, UPSTREAM_CONFIG_FILE, *WEIGHT_FILES)
    existing = [output / name for name in names if (output / name).exists()]
    if existing and not args.overwrite:
        print(
            f"error: {output} already holds a checkpoint ({existing[0].name}); use --overwrite",
            file=sys.stderr,
        )
        return 2
    try:
        codec = codec_from_runs(
            args.quantizer,
            args.decoder,
            quantizer_checkpoint=args.quantizer_checkpoint,
            encoder_checkpoint=args.encoder_checkpoint,
            allow_random_encoder=args.allow_random_encoder,
        )
    except (OSError, ValueError, RuntimeError) as error:  # missing files, mismatches, unloadable weights
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.overwrite:
        for path in existing:
            path.unlink()
    codec.to_pretrained(output)

    rate = codec.token_rate
    bits = codec.quantizer.dim
    parameters = sum(parameter.numel() for parameter in codec.parameters())
    files = f"{CONFIG_FILE}, {UPSTREAM_CONFIG_FILE}, {WEIGHT_FILES[0]}"
    print(f"Exported to {output} ({files}): {parameters:,} parameters")
    print(
        f"Token rate {rate:g} Hz, {bits} bits per token ({codec.quantizer.codebook_size} codes): "
        f"{bits * rate:g} bps = {bits * rate / 1000:.2f} kbps"
    )
    print(f"Input {codec.sample_rate_input} Hz, output {codec.sample_rate_output} Hz")
    print(f'Load with: FocalCodec.from_pretrained("{output}") (upstream package: "{output / "model"}")')
    if read_run(args.quantizer).random_encoder:
        print("WARNING: the encoder of this codec is RANDOMLY INITIALISED (a smoke-run export)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
