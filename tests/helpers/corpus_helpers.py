"""Helpers of the corpus-preparation tests (tests/corpus/)."""

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import soundfile as sf

__all__ = ["STAGES", "digest", "load", "manifest_args", "mtimes", "snapshot", "write_tone"]

STAGES = ("train", "valid", "test")


def manifest_args(out: Path) -> list[str]:
    """The three manifest paths under ``out``: ``train.json``, ``valid.json``, ``test.json``."""
    return [str(Path(out) / f"{stage}.json") for stage in STAGES]


def load(out: Path, stage: str) -> dict:
    """The manifest ``<out>/<stage>.json``."""
    return json.loads((Path(out) / f"{stage}.json").read_text(encoding="utf-8"))


def snapshot(root: Path) -> dict:
    """sha256, size and mtime of every file under ``root`` (and the list of files and folders)."""
    state = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            state[os.path.join(dirpath, name)] = "dir"
        for name in filenames:
            path = os.path.join(dirpath, name)
            if os.path.islink(path) and not os.path.exists(path):
                state[path] = ("broken link", os.readlink(path))
                continue
            st = os.stat(path)
            with open(path, "rb") as f:
                state[path] = (hashlib.sha256(f.read()).hexdigest(), st.st_size, st.st_mtime_ns)
    return state


def digest(root: Path) -> dict[str, str]:
    """``{path relative to root: sha256}`` of every file under ``root``."""
    root = Path(root)
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def mtimes(out: Path) -> dict[str, int]:
    """``{file name: mtime}`` of the files in ``out``."""
    return {p.name: p.stat().st_mtime_ns for p in Path(out).iterdir()}


def write_tone(path: Path, seconds: float = 1.5, rate: int = 16000, channels: int = 1, **write) -> Path:
    """A sine tone at ``rate`` (format from the suffix unless given in ``write``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(round(seconds * rate)) / rate
    tone = 0.3 * np.sin(2 * np.pi * 220 * t)
    data = np.stack([tone] * channels, axis=1) if channels > 1 else tone
    sf.write(str(path), data, rate, **write)
    return path
