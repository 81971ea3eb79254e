"""The command line's inputs and outputs: finding the files, naming their results, reading token files,
and the final report."""

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "EXIT_ALL_FAILED",
    "EXIT_SOME_FAILED",
    "EXIT_USAGE",
    "TOKEN_SUFFIX",
    "Item",
    "Report",
    "UsageError",
    "collect",
    "exit_status",
    "load_tokens",
    "plural",
    "progress",
]

TOKEN_SUFFIX = ".toks.pt"

# Exit statuses of the command line (and of export_codec.py and evaluate_codec.py): 0 when every input was
# processed
EXIT_ALL_FAILED = 1  # no input could be processed (or nothing was found)
EXIT_USAGE = 2  # the command line itself is wrong (nothing was done)
EXIT_SOME_FAILED = 3  # some inputs were processed, others failed (listed at the end)


def exit_status(done: int, failed: int) -> int:
    """0 when nothing failed, :data:`EXIT_SOME_FAILED` when some inputs failed and others were processed,
    :data:`EXIT_ALL_FAILED` when none was processed."""
    if done == 0:
        return EXIT_ALL_FAILED
    return EXIT_SOME_FAILED if failed else 0


class UsageError(Exception):
    """A problem with the command line itself (exit status 2)."""


@dataclass
class Item:
    """One input file and where its result goes."""

    path: Path
    output: Path
    key: tuple = ()  # batching key: files are sorted by it (their length)
    meta: dict = field(default_factory=dict)


@dataclass
class Report:
    """What happened to the files, for the final summary."""

    done: int = 0
    seconds: float = 0.0
    failed: list[tuple[Path, str]] = field(default_factory=list)

    def fail(self, path: Path, error: BaseException | str) -> None:
        reason = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        self.failed.append((path, " ".join(str(reason).split())))

    def succeed(self, item: Item) -> None:
        self.done += 1
        self.seconds += item.meta["num_samples"] / item.meta["sample_rate"]

    def summary(self, command: str, elapsed: float, extra: Sequence[str] = ()) -> list[str]:
        """The closing lines: files and audio processed, the throughput, ``extra``, the skipped files."""
        lines = [
            f"{command}: {plural(self.done, 'file')} processed ({self.seconds:.1f} s of audio in "
            f"{elapsed:.1f} s), {len(self.failed)} skipped"
        ]
        if self.done and elapsed > 0:
            lines.append(
                f"throughput: {self.done / elapsed:.2f} files/s, "
                f"{self.seconds / elapsed:.1f} audio-hours/hour"
            )
        lines.extend(extra)
        if self.failed:
            lines.append(f"Skipped {plural(len(self.failed), 'file')}:")
            lines.extend(f"  {path}: {reason}" for path, reason in self.failed)
        return lines


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def progress(total: int, description: str):
    """A tqdm bar counting files."""
    from tqdm import tqdm

    return tqdm(total=total, desc=description, unit="file", dynamic_ncols=True)


def _output_name(path: Path, suffixes: Sequence[str], new_suffix: str) -> str:
    name = path.name
    for suffix in suffixes:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)] + new_suffix
    return path.stem + new_suffix


def _folder_files(folder: Path, output: Path, suffixes: Sequence[str], what: str) -> list[Path]:
    """Files below ``folder`` with one of ``suffixes``, except earlier results in an output folder inside."""
    folder_resolved, output_resolved = folder.resolve(), output.resolve()
    inside = output_resolved != folder_resolved and output_resolved.is_relative_to(folder_resolved)
    found = sorted(
        file
        for file in folder.rglob("*")
        if file.is_file()
        and any(file.name.lower().endswith(suffix) for suffix in suffixes)
        and not (inside and file.resolve().is_relative_to(output_resolved))
    )
    if not found:
        print(f"warning: no {what} ({', '.join(suffixes)}) in {folder}", file=sys.stderr)
    return found


def _check_targets(items: list[Item]) -> None:
    """Two inputs never write the same output, and no output overwrites an input."""
    targets: dict[Path, Path] = {}
    for item in items:
        other = targets.setdefault(item.output.resolve(), item.path)
        if other != item.path:
            raise UsageError(f"{other} and {item.path} would both be written to {item.output}")
    inputs_resolved = {item.path.resolve() for item in items}
    for item in items:
        if item.output.resolve() in inputs_resolved:
            raise UsageError(f"{item.output} would overwrite an input file: choose another --output")


def collect(
    inputs: Sequence[str], output: Path, suffixes: Sequence[str], new_suffix: str, what: str
) -> list[Item]:
    """Files of ``inputs`` (files, or folders searched recursively for ``suffixes``) and their outputs
    in ``output``, mirroring the folder structure below each input folder."""
    items, seen = [], set()
    for name in inputs:
        path = Path(name)
        if path.is_dir():
            for file in _folder_files(path, output, suffixes, what):
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
    _check_targets(unique)
    return unique


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
