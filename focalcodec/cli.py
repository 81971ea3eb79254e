"""Command-line FocalCodec: audio files -> token files -> audio.

    python -m focalcodec.cli encode speech/ --model lucadellalib/focalcodec_50hz --output tokens/
    python -m focalcodec.cli decode tokens/ --model lucadellalib/focalcodec_50hz --output decoded/
    python -m focalcodec.cli resynth speech/ --model my_codec --output resynthesized/ --device cuda

Inputs are files or folders (searched recursively); the output folder mirrors the input folders. Audio of
any sample rate and channel count is read with soundfile, averaged to mono and resampled to the codec's
input rate (both stated on the console). ``encode`` writes ``<name>.toks.pt``, a ``torch.save``d dict:

* ``toks``: (T,) int64 tokens in ``[0, codebook_size)``;
* ``sample_rate``, ``num_samples``, ``channels``: the original file's rate, length and channel count;
* ``token_rate`` (Hz), ``codebook_size``, ``model`` (the ``--model`` argument) and ``config`` (the codec's
  ``to_config()``).

``decode`` writes ``<name>.wav`` at the codec's output rate with the original duration; ``resynth`` does
both at once (same result as ``encode`` then ``decode``). Unreadable files are skipped and listed at the
end; the exit status is 0 if at least one file was processed, 1 if none, 2 for usage errors.

``--batch_size`` only puts files of identical length together (padding would change the features of a
non-causal encoder), and a file whose latents come within ``SIGN_MARGIN`` of a sign flip is encoded again
on its own: tokens never depend on batching.
"""

import argparse
import math
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from focalcodec.audio import AUDIO_SUFFIXES, audio_info, read_audio, resample, write_wav
from focalcodec.files import atomic_write
from focalcodec.hub import looks_like_hub_id

__all__ = ["TOKEN_SUFFIX", "load_tokens", "main"]

TOKEN_SUFFIX = ".toks.pt"
SIGN_MARGIN = 1e-5
"""Batched latents closer than this to 0 are recomputed alone (batched and single-file results differ
by float rounding, orders of magnitude less)."""


class UsageError(Exception):
    """A problem with the command line itself (exit status 2)."""


# --------------------------------------------------------------------------------------------------
# Inputs and outputs


@dataclass
class Item:
    """One input file and where its result goes."""

    path: Path
    output: Path
    key: tuple = ()  # files with equal keys can share a batch
    meta: dict = field(default_factory=dict)


def _output_name(path: Path, suffixes: Sequence[str], new_suffix: str) -> str:
    name = path.name
    for suffix in suffixes:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)] + new_suffix
    return path.stem + new_suffix


def collect(
    inputs: Sequence[str], output: Path, suffixes: Sequence[str], new_suffix: str, what: str
) -> list[Item]:
    """Files of ``inputs`` (files, or folders searched recursively for ``suffixes``) and their outputs
    in ``output``, mirroring the folder structure below each input folder."""
    items, seen = [], set()
    output_resolved = output.resolve()
    for name in inputs:
        path = Path(name)
        if path.is_dir():
            # an output folder inside the input folder: its files are earlier results, not inputs
            inside = output_resolved != path.resolve() and output_resolved.is_relative_to(path.resolve())
            found = sorted(
                file
                for file in path.rglob("*")
                if file.is_file()
                and any(file.name.lower().endswith(suffix) for suffix in suffixes)
                and not (inside and file.resolve().is_relative_to(output_resolved))
            )
            if not found:
                print(f"warning: no {what} ({', '.join(suffixes)}) in {path}", file=sys.stderr)
            for file in found:
                relative = file.relative_to(path)
                items.append(Item(file, output / relative.parent / _output_name(file, suffixes, new_suffix)))
        elif path.is_file():
            items.append(Item(path, output / _output_name(path, suffixes, new_suffix)))
        else:
            raise UsageError(f"input not found: {path}")
    unique = []
    for item in items:  # a file named twice (e.g. alone and in its folder) is processed once
        if item.path.resolve() not in seen:
            seen.add(item.path.resolve())
            unique.append(item)
    items = unique
    targets: dict[Path, Path] = {}
    for item in items:
        other = targets.setdefault(item.output.resolve(), item.path)
        if other != item.path:
            raise UsageError(f"{other} and {item.path} would both be written to {item.output}")
    inputs_resolved = {item.path.resolve() for item in items}
    for item in items:
        if item.output.resolve() in inputs_resolved:
            raise UsageError(f"{item.output} would overwrite an input file: choose another --output")
    return items


def load_tokens(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check a token file written by ``encode``."""
    data = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(data, dict) or "toks" not in data:
        raise ValueError("not a FocalCodec token file (no 'toks' entry)")
    toks = data["toks"]
    if not isinstance(toks, torch.Tensor) or toks.ndim != 1 or toks.numel() == 0 or toks.is_floating_point():
        raise ValueError("'toks' must be a non-empty 1-D integer tensor")
    for key in ("sample_rate", "num_samples"):
        if not isinstance(data.get(key), int) or data[key] < 1:
            raise ValueError(f"'{key}' must be a positive integer")
    return data


# --------------------------------------------------------------------------------------------------
# The work


@dataclass
class Report:
    """What happened to the files, for the final summary."""

    done: int = 0
    seconds: float = 0.0
    failed: list[tuple[Path, str]] = field(default_factory=list)

    def fail(self, path: Path, error: BaseException | str) -> None:
        reason = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        self.failed.append((path, " ".join(str(reason).split())))


def _batches(items: list[Item], batch_size: int) -> list[list[Item]]:
    """Consecutive runs of equal keys (items sorted by key), at most ``batch_size`` long."""
    batches: list[list[Item]] = []
    for item in sorted(items, key=lambda item: item.key):
        if batches and batches[-1][0].key == item.key and len(batches[-1]) < batch_size:
            batches[-1].append(item)
        else:
            batches.append([item])
    return batches


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


class Codec:
    """The loaded model and the operations of the three commands."""

    def __init__(self, model_name: str, device: torch.device) -> None:
        from focalcodec.codec import FocalCodec

        self.name = model_name
        self.device = device
        self.model = FocalCodec.from_pretrained(model_name).eval().to(device)
        self.input_rate = self.model.sample_rate_input
        self.output_rate = self.model.sample_rate_output
        self.config = self.model.to_config()
        self.codebook_size = self.model.quantizer.codebook_size
        self.token_rate = self.model.token_rate

    def describe(self) -> str:
        return (
            f"{self.name}: {self.token_rate:g} Hz tokens, {self.model.quantizer.dim} bits "
            f"({self.model.quantizer.dim * self.token_rate / 1000:.2f} kbps), input {self.input_rate} Hz, "
            f"output {self.output_rate} Hz, on {self.device}"
        )

    # ---------------------------------------------------------------------------------------------- audio

    def probe_audio(self, items: list[Item], report: Report) -> list[Item]:
        """Read the headers; unreadable or empty files are reported. States resampling and downmixing."""
        readable = []
        for item in items:
            try:
                info = audio_info(item.path)
            except Exception as error:  # soundfile raises several types for bad files
                report.fail(item.path, error)
                continue
            item.meta = {
                "sample_rate": info.sample_rate,
                "channels": info.channels,
                "num_samples": info.num_samples,
            }
            item.key = (info.seconds, info.sample_rate, info.num_samples)
            readable.append(item)
        rates = Counter(item.meta["sample_rate"] for item in readable)
        for rate, count in sorted(rates.items()):
            if rate != self.input_rate:
                print(f"{_plural(count, 'file')} at {rate} Hz resampled to {self.input_rate} Hz")
        channels = Counter(item.meta["channels"] for item in readable)
        for count_channels, count in sorted(channels.items()):
            if count_channels > 1:
                kind = "stereo" if count_channels == 2 else f"{count_channels}-channel"
                print(f"{_plural(count, kind + ' file')} downmixed to mono (channel average)")
        return readable

    def read_audio(self, item: Item) -> torch.Tensor:
        """(N,) mono float32 waveform at the codec's input rate (the item's meta: what was actually read)."""
        sig, info = read_audio(item.path)
        item.meta.update(sample_rate=info.sample_rate, num_samples=info.num_samples, channels=info.channels)
        return resample(sig, info.sample_rate, self.input_rate)

    def output_length(self, meta: dict) -> int:
        """Samples at the output rate spanning the original duration."""
        return max(1, round(meta["num_samples"] * self.output_rate / meta["sample_rate"]))

    # ---------------------------------------------------------------------------------------------- model

    @torch.inference_mode()
    def encode(self, sigs: list[torch.Tensor]) -> list[torch.Tensor]:
        """Equal-length waveforms -> (T,) tokens each, identical to encoding every file alone."""
        batch = torch.stack(sigs).to(self.device)
        lats = self.model.sig_to_lats(batch)
        toks = list(self.model.lats_to_toks(lats).cpu())
        if len(sigs) > 1:
            for index in range(len(sigs)):
                if lats[index].abs().min() < SIGN_MARGIN:  # a sign could depend on rounding: redo alone
                    toks[index] = self.encode(sigs[index : index + 1])[0]
        return toks

    @torch.inference_mode()
    def decode(self, toks: list[torch.Tensor], output_length: int) -> list[torch.Tensor]:
        """Equal-length token sequences -> waveforms of ``output_length`` samples."""
        batch = torch.stack(toks).to(self.device)
        return list(self.model.toks_to_sig(batch, output_length=output_length).cpu())

    def token_record(self, toks: torch.Tensor, meta: dict) -> dict[str, Any]:
        return {
            "toks": toks.long().clone(),  # not a view: torch.save would store the whole batch
            "sample_rate": int(meta["sample_rate"]),
            "num_samples": int(meta["num_samples"]),
            "channels": int(meta["channels"]),
            "token_rate": float(self.token_rate),
            "codebook_size": int(self.codebook_size),
            "model": self.name,
            "config": self.config,
        }


def _progress(total: int, description: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=description, unit="file", dynamic_ncols=True)


def _read_batch(
    codec: Codec, batch: list[Item], report: Report, bar
) -> list[tuple[list[Item], list[torch.Tensor]]]:
    """Read a batch's audio; unreadable files are reported. Returns groups of equal signal and output
    lengths (a batch holds files of identical rate and length by their headers, so normally one group)."""
    groups: dict[tuple[int, int], tuple[list[Item], list[torch.Tensor]]] = {}
    for item in batch:
        try:
            sig = codec.read_audio(item)
        except Exception as error:  # a header can be fine and the data truncated or corrupt
            report.fail(item.path, error)
            bar.update(1)
            continue
        items, sigs = groups.setdefault((sig.shape[-1], codec.output_length(item.meta)), ([], []))
        items.append(item)
        sigs.append(sig)
    return list(groups.values())


def run_encode(
    codec: Codec, items: list[Item], batch_size: int, report: Report, resynth: bool, subtype: str
) -> None:
    """``encode`` (token files) or ``resynth`` (wavs) of audio files."""
    items = codec.probe_audio(items, report)
    with _progress(len(items), "resynth" if resynth else "encode") as bar:
        for batch in _batches(items, batch_size):
            for group, sigs in _read_batch(codec, batch, report, bar):
                try:
                    toks = codec.encode(sigs)
                    if resynth:
                        outputs = codec.decode(toks, codec.output_length(group[0].meta))
                except Exception as error:  # e.g. out of memory: report these files, go on
                    for item in group:
                        report.fail(item.path, error)
                    bar.update(len(group))
                    continue
                for index, item in enumerate(group):
                    try:
                        if resynth:
                            write_wav(item.output, outputs[index], codec.output_rate, subtype)
                        else:
                            record = codec.token_record(toks[index], item.meta)
                            atomic_write(item.output, lambda tmp, record=record: torch.save(record, tmp))
                        report.done += 1
                        report.seconds += item.meta["num_samples"] / item.meta["sample_rate"]
                    except Exception as error:
                        report.fail(item.path, error)
                    bar.update(1)


def run_decode(codec: Codec, items: list[Item], batch_size: int, report: Report, subtype: str):
    readable, other_config = [], 0
    for item in items:
        try:
            data = load_tokens(item.path)
            if data.get("codebook_size", codec.codebook_size) != codec.codebook_size:
                raise ValueError(
                    f"encoded with {data['codebook_size']} codes, the model has {codec.codebook_size}"
                )
            if "token_rate" in data and not math.isclose(data["token_rate"], codec.token_rate):
                raise ValueError(f"{data['token_rate']:g} Hz tokens, the model makes {codec.token_rate:g} Hz")
            if int(data["toks"].min()) < 0 or int(data["toks"].max()) >= codec.codebook_size:
                raise ValueError(f"tokens outside [0, {codec.codebook_size})")
        except Exception as error:  # torch.load raises many types for corrupt files
            report.fail(item.path, error)
            continue
        other_config += "config" in data and data["config"] != codec.config
        item.meta = {key: data[key] for key in ("sample_rate", "num_samples")}
        item.key = (data["toks"].numel(), codec.output_length(item.meta))
        readable.append(item)
    if other_config:
        print(f"warning: {_plural(other_config, 'token file')} were encoded with another model configuration")
    with _progress(len(readable), "decode") as bar:
        for batch in _batches(readable, batch_size):
            try:
                toks = [load_tokens(item.path)["toks"] for item in batch]
                sigs = codec.decode(toks, batch[0].key[1])
            except Exception as error:
                for item in batch:
                    report.fail(item.path, error)
                bar.update(len(batch))
                continue
            for item, sig in zip(batch, sigs, strict=True):
                try:
                    write_wav(item.output, sig, codec.output_rate, subtype)
                    report.done += 1
                    report.seconds += item.meta["num_samples"] / item.meta["sample_rate"]
                except Exception as error:
                    report.fail(item.path, error)
                bar.update(1)


# --------------------------------------------------------------------------------------------------
# Command line


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


def load_codec(model: str, device: torch.device) -> Codec:
    if device.type == "cuda":  # TF32 would make results depend on batching beyond SIGN_MARGIN
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    if not Path(model).exists() and not looks_like_hub_id(model):
        raise UsageError(f"--model {model}: no such folder (expected config.json + model.safetensors)")
    try:
        return Codec(model, device)
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as error:
        raise UsageError(f"--model {model}: cannot load the codec: {error}") from error


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m focalcodec.cli",
        description="FocalCodec: encode audio to tokens, decode tokens to audio, or resynthesize.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    helps = {
        "encode": "audio files/folders -> <name>.toks.pt token files",
        "decode": "token files/folders (*.toks.pt) -> <name>.wav at the codec's output rate",
        "resynth": "audio files/folders -> <name>.wav, encoded and decoded",
    }
    for command, text in helps.items():
        sub = commands.add_parser(command, help=text, description=text)
        sub.add_argument("inputs", nargs="+", help="files or folders (searched recursively)")
        sub.add_argument(
            "--model",
            required=True,
            help="official-format folder or Hub id, e.g. lucadellalib/focalcodec_50hz",
        )
        sub.add_argument("--output", required=True, help="output folder (mirrors the input folders)")
        sub.add_argument("--device", default="cpu", help="torch device: cpu (default), cuda, cuda:1, mps")
        sub.add_argument(
            "--batch_size",
            type=int,
            default=1,
            help="files of identical length processed together (default 1)",
        )
        if command != "encode":
            sub.add_argument(
                "--subtype", default="PCM_16", help="WAV sample format: PCM_16 (default), PCM_24, FLOAT"
            )
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error("--batch_size must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    output = Path(args.output)
    start = time.monotonic()
    try:
        if args.command == "decode":
            items = collect(args.inputs, output, (TOKEN_SUFFIX,), ".wav", "token files")
        else:
            new_suffix = TOKEN_SUFFIX if args.command == "encode" else ".wav"
            items = collect(args.inputs, output, AUDIO_SUFFIXES, new_suffix, "audio files")
        if not items:
            print("error: no input files found", file=sys.stderr)
            return 1
        codec = load_codec(args.model, _device(args.device))
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"Model {codec.describe()}")
    print(f"{_plural(len(items), 'input file')} -> {output}")

    report = Report()
    if args.command == "decode":
        run_decode(codec, items, args.batch_size, report, args.subtype)
    else:
        subtype = getattr(args, "subtype", "PCM_16")
        run_encode(codec, items, args.batch_size, report, args.command == "resynth", subtype)

    elapsed = time.monotonic() - start
    print(
        f"{args.command}: {_plural(report.done, 'file')} processed ({report.seconds:.1f} s of audio "
        f"in {elapsed:.1f} s), {len(report.failed)} skipped"
    )
    if report.failed:
        print(f"Skipped {_plural(len(report.failed), 'file')}:")
        for path, reason in report.failed:
            print(f"  {path}: {reason}")
    return 0 if report.done > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
