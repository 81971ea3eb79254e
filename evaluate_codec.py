#!/usr/bin/env python3
"""Score codecs on a test set: the paper-style table with confidence intervals (Markdown + CSV), every
utterance's scores, paired comparisons and a listening report (docs/evaluation.md).

    python evaluate_codec.py --data results/bsq/0/save/test.json --output results/eval \\
        --model ours=results/bsq/0+results/vocos/0 --model released=lucadellalib/focalcodec_50hz

A model is ``NAME=SPEC``: SPEC is an official-format folder or Hugging Face Hub id, or
``QUANTIZER_RUN+DECODER_RUN`` (the output folders of the two training stages). ``--data`` is a manifest
written by the recipe (``save/test.json``) or a folder of audio files. Each row gives the token rate,
bitrate, UTMOS (or DNSMOS when UTMOS cannot be loaded: the column is then named so), dWER/dCER
(Whisper-small), speaker similarity, PESQ (wide and narrow band), STOI, eSTOI, mel and STFT distances, code
usage and normalised entropy, each with its 95 % bootstrap confidence interval; the first row scores
the input audio itself. A codec whose output rate differs from its input rate (FocalCodec-Stream: 16 kHz
in, 24 kHz out) is scored on its output resampled to the input rate. With ``--streaming`` every causal
model also gets a row scored chunk by chunk, as it streams (``NAME-streaming``). Every figure is computed
on the audio as a 16-bit WAV file holds it (clipped to [-1, 1]), and the first ``--num_saved_audios``
outputs of each row are written as ``<output>/audios/<row>/<id>.wav`` (the inputs, as scored, in
``audios/reference/``): what you hear is what was scored. Besides ``results.md``/``results.csv`` the
output folder gets ``scores.csv`` (every utterance's every figure), ``comparison.md`` (each pair of rows:
the paired difference of every figure with its interval) and ``report.html`` (table, players, mel
spectrograms, sortable scores; open it in a browser); ``--format versa``/``codec-superb`` adds the scores
in those toolkits' layouts.
"""

import argparse
import logging
import sys
from pathlib import Path

from focalcodec.codec import FocalCodec
from utils.evaluation import (
    FORMATS,
    QUALITY_ONLY,
    evaluate_codec,
    list_utterances,
    listening_audios,
    save_references,
    score_reference,
    write_outputs,
)
from utils.metrics import QualityMetrics
from utils.runs import codec_from_runs

DEFAULT_METRICS = "utmos,dwer,sim,pesq_wb,pesq_nb,stoi,estoi,mel_distance,stft_distance"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", required=True, help="test manifest (JSON) or folder of audio files")
    parser.add_argument("--model", action="append", required=True, metavar="NAME=SPEC", help="repeatable")
    parser.add_argument("--output", required=True, help="folder for the table, the scores and report.html")
    parser.add_argument("--max_utterances", type=int, default=None, help="score only the first N (sorted)")
    parser.add_argument("--metrics", default=DEFAULT_METRICS, help="comma-separated metric keys")
    parser.add_argument("--no_fallback", action="store_true", help="no DNSMOS/Resemblyzer replacements")
    parser.add_argument("--utmos_source", default="tarepan/SpeechMOS:v1.2.0")
    parser.add_argument("--whisper_source", default="openai/whisper-small")
    parser.add_argument("--sv_source", default="microsoft/wavlm-base-sv")
    parser.add_argument(
        "--language", default="en", help="Whisper's transcription language for dWER/dCER (zh, ja: dCER only)"
    )
    parser.add_argument(
        "--format",
        action="append",
        choices=list(FORMATS),
        help="also write the per-utterance scores in this toolkit's layout (repeatable)",
    )
    parser.add_argument(
        "--num_saved_audios",
        type=int,
        default=10,
        help="write the first N outputs of each model as <output>/audios/<model>/<id>.wav, as scored",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--streaming",
        action="store_true",
        help="also score every causal model chunk by chunk with carried state (row NAME-streaming)",
    )
    parser.add_argument(
        "--allow_random_encoder",
        action="store_true",
        help="accept encoder_random_init runs (tests)",
    )
    return parser.parse_args(argv)


def load_model(spec: str, allow_random_encoder: bool) -> FocalCodec:
    """An official-format folder/hub id, or ``QUANTIZER_RUN+DECODER_RUN``."""
    if "+" in spec:
        quantizer_run, decoder_run = spec.split("+", 1)
        return codec_from_runs(quantizer_run, decoder_run, allow_random_encoder=allow_random_encoder)
    return FocalCodec.from_pretrained(spec)


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s - %(message)s")
    args = parse_args(argv)
    models = []
    for item in args.model:
        name, sep, spec = item.partition("=")
        if not sep or not name or not spec:
            raise SystemExit(f"error: --model expects NAME=SPEC, got {item!r}")
        models.append((name, spec))
    utterances = list_utterances(args.data, args.max_utterances)

    def metrics(keys: list[str]) -> QualityMetrics:
        return QualityMetrics(
            metrics=keys,
            fallback=not args.no_fallback,
            utmos_source=args.utmos_source,
            whisper_source=args.whisper_source,
            sv_source=args.sv_source,
            whisper_language=args.language,
        )

    keys = [key.strip() for key in args.metrics.split(",") if key.strip()]
    rows = []
    quality = [key for key in keys if key in QUALITY_ONLY]
    if quality:
        rows.append(score_reference(utterances, metrics(quality)))
    suite = metrics(keys)
    audios = Path(args.output) / "audios"
    for name, spec in models:
        codec = load_model(spec, args.allow_random_encoder)
        runs = [(name, False)] + ([(f"{name}-streaming", True)] if args.streaming and codec.causal else [])
        for row_name, streaming in runs:
            saved = {"audio_folder": audios / row_name, "num_saved_audios": args.num_saved_audios}
            rows.append(evaluate_codec(row_name, codec, utterances, suite, args.device, streaming, **saved))
        if args.streaming and not codec.causal:
            logging.info(f"{name} is not causal: it cannot stream, so it has no streaming row")
    references = save_references(utterances[: args.num_saved_audios], audios / "reference")
    title = f"Evaluation of {', '.join(name for name, _ in models)} on {args.data}"
    files = write_outputs(rows, args.output, listening_audios(rows, references), title, args.format or [])
    print(files.table.read_text())
    print(f"Wrote {files.table} and {files.table_csv} ({len(utterances)} utterances), {files.scores},")
    print(f"{files.comparison} and the listening report {files.report}")
    for path in files.formats:
        print(f"Wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
