"""Corpus tokenization with ``python -m focalcodec.cli encode``: files/s and audio-hours/hour at batch 1
against batch N, on LibriTTS-like files, with the tokens of both compared.

The corpus: 24 kHz wavs (LibriTTS's rate, so every file is resampled) of lengths spread evenly over 2-12 s
(LibriTTS's bulk; mean 7 s), of noise shaped like speech (speed does not depend on the content). The codec
is the benchmark's full-size one (``benchmarks/codec_speed.py``), saved in the official format and loaded
by the command as a user's would be. Each setting runs the real command in-process (reading threads,
sorting, padding, the sign-margin re-encodes and writing included) after one warm-up run of the first
files; on CUDA, batch N also runs in bfloat16 (``--precision bfloat16``).
"""

import contextlib
import io
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from benchmarks.codec_speed import codec_config
from focalcodec import cli
from focalcodec.codec import FocalCodec

__all__ = ["tokenization_section"]

RATE = 24000


def make_corpus(folder: Path, count: int, min_seconds: float, max_seconds: float) -> float:
    """``count`` wavs, lengths spread evenly from ``min_seconds`` to ``max_seconds``; their total seconds."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    total = 0.0
    for index, seconds in enumerate(np.linspace(min_seconds, max_seconds, count)):
        samples = round(seconds * RATE)
        envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * np.arange(samples) / RATE) ** 2
        sf.write(folder / f"utt{index:03d}.wav", (0.1 * envelope * rng.standard_normal(samples)), RATE)
        total += samples / RATE
    return total


def _encode(inputs: list[Path], model: Path, output: Path, device: str, options: list[str]) -> float:
    """Wall seconds of one ``encode`` command (its console output swallowed)."""
    argv = ["encode", *map(str, inputs), "--model", str(model), "--output", str(output), "--device", device]
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        status = cli.main([*argv, *options])
    seconds = time.perf_counter() - start
    if status != 0:
        raise RuntimeError(f"encode {options} failed with status {status}")
    return seconds


def _same_tokens(first: Path, second: Path) -> float:
    """Fraction of token positions equal in the two output folders (1.0: identical)."""
    equal = total = 0
    for path in sorted(first.glob("*.toks.pt")):
        a = torch.load(path, weights_only=True)["toks"]
        b = torch.load(second / path.name, weights_only=True)["toks"]
        equal += int((a == b).sum()) if a.shape == b.shape else 0
        total += a.numel()
    return equal / total


def tokenization_section(args, work: Path) -> dict:
    """Files/s and audio-hours/hour of ``encode`` at batch 1 and batch N (8; 3 with ``--quick``)."""
    count, batch_size = (6, 3) if args.quick else (32, 8)
    low, high = (1.0, 3.0) if args.quick else (2.0, 12.0)
    audio_seconds = make_corpus(work / "corpus", count, low, high)
    torch.manual_seed(0)
    model = FocalCodec(**codec_config(args.quick)).to_pretrained(work / "codec")
    settings = {"batch_1": ["--batch_size", "1"], f"batch_{batch_size}": ["--batch_size", str(batch_size)]}
    if args.device.startswith("cuda"):
        settings[f"batch_{batch_size}_bf16"] = ["--batch_size", str(batch_size), "--precision", "bfloat16"]
    corpus = work / "corpus"
    _encode(sorted(corpus.iterdir())[:2], model, work / "warm-up", args.device, ["--batch_size", "2"])
    result: dict = {"files": count, "audio_seconds": audio_seconds, "batch_size": batch_size, "runs": {}}
    for name, options in settings.items():
        seconds = _encode([corpus], model, work / name, args.device, options)
        result["runs"][name] = {
            "seconds": seconds,
            "files_per_second": count / seconds,
            "audio_hours_per_hour": audio_seconds / seconds,
            "same_tokens_as_batch_1": _same_tokens(work / "batch_1", work / name),
        }
        print(f"  encode {name}: {seconds:.1f} s, {count / seconds:.2f} files/s", flush=True)
    batched, single = result["runs"][f"batch_{batch_size}"], result["runs"]["batch_1"]
    result["speedup"] = batched["files_per_second"] / single["files_per_second"]
    return result
