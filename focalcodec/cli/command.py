"""The command line: arguments, then the offline or streaming run, then the summary."""

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from focalcodec.audio import AUDIO_SUFFIXES
from focalcodec.cli.batched import run_decode, run_encode
from focalcodec.cli.codec import PRECISIONS, Codec, load_codec
from focalcodec.cli.concurrent import run_concurrent
from focalcodec.cli.files import (
    EXIT_ALL_FAILED,
    EXIT_USAGE,
    TOKEN_SUFFIX,
    Report,
    UsageError,
    collect,
    exit_status,
    plural,
)
from focalcodec.cli.streaming import run_streaming
from focalcodec.cli.to_onnx import export_int8_stream, run_onnx

__all__ = ["main", "parse_args"]

HELPS = {
    "encode": "audio files/folders -> <name>.toks.pt token files",
    "decode": "token files/folders (*.toks.pt) -> <name>.wav at the codec's output rate",
    "resynth": "audio files/folders -> <name>.wav, encoded and decoded",
}


def _add_arguments(sub: argparse.ArgumentParser, command: str) -> None:
    sub.add_argument("inputs", nargs="+", help="files or folders (searched recursively)")
    sub.add_argument(
        "--model", required=True, help="official-format folder or Hub id, e.g. lucadellalib/focalcodec_50hz"
    )
    sub.add_argument("--output", required=True, help="output folder (mirrors the input folders)")
    sub.add_argument("--device", default="cpu", help="torch device: cpu (default), cuda, cuda:1, mps")
    batching = "files of identical token length" if command == "decode" else "files sorted by length, padded"
    if command != "decode":
        batching += "; with --streaming, files streamed at once (concurrent sessions)"
    sub.add_argument("--batch_size", type=int, default=1, help=f"{batching}, coded together (default 1)")
    sub.add_argument(
        "--precision",
        choices=tuple(PRECISIONS),
        default="float32",
        help="float32 (default; tokens independent of batching), or autocast to bfloat16 / float16 (CUDA)",
    )
    sub.add_argument(
        "--streaming",
        action="store_true",
        help="code each file chunk by chunk with carried state (causal models), timing every chunk",
    )
    sub.add_argument(
        "--realtime",
        action="store_true",
        help="with --streaming: code each chunk only once it would have arrived",
    )
    if command != "decode":
        sub.add_argument(
            "--int8",
            action="store_true",
            help="with --streaming: int8 weights on ONNX Runtime (an approximation; exported at start)",
        )
    if command != "decode":
        sub.add_argument(
            "--workers", type=int, default=2, help="threads reading audio ahead (default 2; 0: none)"
        )
    if command != "encode":
        sub.add_argument(
            "--subtype", default="PCM_16", help="WAV sample format: PCM_16 (default), PCM_24, FLOAT"
        )


def _add_onnx_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--model", required=True, help="official-format folder or Hub id, e.g. lucadellalib/focalcodec_50hz"
    )
    sub.add_argument("--output", required=True, help="the .onnx file to write (weights over 1 GiB: + .data)")
    sub.add_argument(
        "--streaming",
        action="store_true",
        help="export the streaming step of a causal model (states as inputs and outputs)",
    )
    sub.add_argument("--batch_size", type=int, help="a fixed batch size (default: a dynamic batch axis)")
    sub.add_argument(
        "--int8",
        action="store_true",
        help="int8 weights for the linear layers (ONNX Runtime dynamic quantization; reported, not checked)",
    )
    sub.add_argument(
        "--chunk_size",
        type=int,
        help="samples per call: streaming, a multiple of the model's chunk (default one chunk); offline, a "
        "fixed input length (default: a dynamic time axis)",
    )


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m focalcodec.cli",
        description="FocalCodec: encode audio to tokens, decode tokens to audio, or resynthesize.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for command, text in HELPS.items():
        _add_arguments(commands.add_parser(command, help=text, description=text), command)
    text = "a codec -> an ONNX file (offline or streaming), checked against PyTorch on ONNX Runtime"
    _add_onnx_arguments(commands.add_parser("onnx", help=text, description=text))
    args = parser.parse_args(argv)
    for option in ("batch_size", "chunk_size"):
        if getattr(args, option, None) is not None and getattr(args, option) < 1:
            parser.error(f"--{option} must be >= 1")
    if args.command == "onnx":
        return args
    if getattr(args, "workers", 0) < 0:
        parser.error("--workers must be >= 0")
    if args.realtime and not args.streaming:
        parser.error("--realtime paces a stream: add --streaming")
    if getattr(args, "int8", False) and not args.streaming:
        parser.error("--int8 runs the streaming step on ONNX Runtime: add --streaming")
    if getattr(args, "int8", False) and args.precision != "float32":
        parser.error("--int8 sets the weights' precision: leave --precision at float32")
    if args.streaming and args.batch_size > 1 and args.command == "decode":
        parser.error("decode --streaming codes one token file at a time: leave --batch_size at 1")
    return args


def _device(name: str) -> torch.device:
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise UsageError(f"--device {name}: {error}") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: CUDA is not available (use --device cpu)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError(f"--device {name}: MPS is not available (use --device cpu)")
    return device


def _setup(args: argparse.Namespace) -> tuple[list, Codec]:
    """The input files and the codec; :class:`UsageError` for anything the user must fix."""
    output = Path(args.output)
    if args.command == "decode":
        items = collect(args.inputs, output, (TOKEN_SUFFIX,), ".wav", "token files")
    else:
        new_suffix = TOKEN_SUFFIX if args.command == "encode" else ".wav"
        items = collect(args.inputs, output, AUDIO_SUFFIXES, new_suffix, "audio files")
    if not items:
        return items, None
    codec = load_codec(args.model, _device(args.device), args.precision)
    if args.streaming and not codec.causal:
        raise UsageError(
            f"--streaming needs a causal model (e.g. lucadellalib/focalcodec_50hz_2k_causal); {args.model} "
            "is not causal: its encoder attends to the whole file, so it cannot code chunk by chunk"
        )
    return items, codec


def _export_onnx(args: argparse.Namespace) -> int:
    """The ``onnx`` command."""
    try:
        codec = load_codec(args.model, torch.device("cpu"))
        print(f"Model {codec.describe()}")
        return run_onnx(codec, Path(args.output), args.streaming, args.batch_size, args.chunk_size, args.int8)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE


def _run_streaming(args: argparse.Namespace, codec: Codec, items: list, report: Report, subtype: str) -> list:
    """``--streaming``: one file at a time or ``--batch_size`` at once, by PyTorch or (``--int8``) ONNX
    Runtime; the summary lines."""
    with tempfile.TemporaryDirectory(prefix="focalcodec_int8_") as folder:
        onnx = export_int8_stream(codec, Path(folder)) if getattr(args, "int8", False) else None
        if args.batch_size > 1:
            latencies = run_concurrent(
                codec, items, args.command, report, args.realtime, subtype, args.batch_size, onnx
            )
            lines = [f"concurrent streams: up to {args.batch_size} at once, one batched step per chunk"]
            return lines + latencies.summary(args.realtime)
        return run_streaming(codec, items, args.command, report, args.realtime, subtype, onnx).summary(
            args.realtime
        )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "onnx":
        return _export_onnx(args)
    start = time.monotonic()
    try:
        items, codec = _setup(args)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    if not items:
        print("error: no input files found", file=sys.stderr)
        return EXIT_ALL_FAILED
    print(f"Model {codec.describe()}")
    print(f"{plural(len(items), 'input file')} -> {args.output}")

    report, subtype, lines = Report(), getattr(args, "subtype", "PCM_16"), []
    if args.streaming:
        lines = _run_streaming(args, codec, items, report, subtype)
    elif args.command == "decode":
        run_decode(codec, items, args.batch_size, report, subtype)
    else:
        resynth = args.command == "resynth"
        run_encode(codec, items, args.batch_size, args.workers, report, resynth, subtype)
        if codec.encoded_again:
            lines = [f"{plural(codec.encoded_again, 'file')} re-encoded alone (latents near a sign flip)"]
    for line in report.summary(args.command, time.monotonic() - start, lines):
        print(line)
    return exit_status(report.done, len(report.failed))
