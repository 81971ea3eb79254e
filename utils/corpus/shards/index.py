"""The shard index and finding shards: ``index.json`` beside the shards of a folder, and the list of shards
(with every utterance's duration) that a brace pattern or an index names.

``index.json``::

    {"format": 1, "plan": "<sha256 of the manifests and options>", "options": {...},
     "sets": {"train": {"shards": ["train-000000.tar", ...], "count": 1200, "seconds": 7012.3}, ...},
     "shards": {"train-000000.tar": {"count": 310, "seconds": 1801.2, "bytes": 256000000,
                                     "sha256": "...", "durations": [5.87, ...]}, ...}}

``durations`` are the seconds of the shard's utterances in their order in the tar: training plans each
epoch from them (which utterances a stage keeps, how many batches each process gets) without opening a
shard.
"""

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import NamedTuple

import braceexpand

from utils.corpus.shards.read import shard_samples

__all__ = [
    "FORMAT_VERSION",
    "INDEX_FILE",
    "SHARD_NAME",
    "Shard",
    "file_sha256",
    "read_index",
    "resolve_shards",
    "verify_shards",
]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
INDEX_FILE = "index.json"
SHARD_NAME = "{}-{:06d}.tar"  # set name, number


class Shard(NamedTuple):
    """A shard to read: its path (or URL) and the duration of each utterance, in tar order."""

    url: str
    durations: tuple[float, ...]


def file_sha256(path) -> str:
    """sha256 of a file's bytes (read by blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_index(path) -> dict:
    """The index (``ValueError`` for another format)."""
    index = json.loads(Path(path).read_text(encoding="utf-8"))
    if index.get("format") != FORMAT_VERSION:
        raise ValueError(
            f"{path} is not a shard index of format {FORMAT_VERSION} (python -m utils.corpus.shards)"
        )
    return index


def scan_shard(url: str) -> tuple[float, ...]:
    """The durations of a shard without an index entry, from its samples' ``.json`` (read through)."""
    durations = []
    for sample in shard_samples(url):
        try:
            durations.append(float(json.loads(sample["json"])["duration"]))
        except (KeyError, ValueError) as error:
            raise ValueError(
                f"{url}: sample {sample.get('__key__')} has no .json with a duration ({error}); write shards "
                "with python -m utils.corpus.shards (docs/training.md, 'Training at scale')"
            ) from None
    return tuple(durations)


def _from_index(index_file: Path, set_name: str) -> list[Shard]:
    index = read_index(index_file)
    if set_name not in index["sets"]:
        raise ValueError(f"{index_file} holds no {set_name} shards (sets: {', '.join(index['sets'])})")
    names = index["sets"][set_name]["shards"]
    return [Shard(str(index_file.parent / name), tuple(index["shards"][name]["durations"])) for name in names]


def _from_pattern(pattern: str) -> list[Shard]:
    indexes: dict[str, dict | None] = {}
    shards = []
    for url in braceexpand.braceexpand(pattern):
        folder = os.path.dirname(url)
        if folder not in indexes:
            index_file = Path(folder or ".") / INDEX_FILE
            indexes[folder] = read_index(index_file)["shards"] if index_file.is_file() else None
        known = (indexes[folder] or {}).get(os.path.basename(url))
        if known is None:
            if "://" not in url and not url.startswith("pipe:") and not os.path.isfile(url):
                raise FileNotFoundError(f"Shard not found: {url} (from the pattern {pattern!r})")
            logger.warning(f"{url} is not in an {INDEX_FILE} beside it: reading it through to count it")
        shards.append(Shard(url, tuple(known["durations"]) if known else scan_shard(url)))
    return shards


def resolve_shards(spec: str, set_name: str = "train") -> list[Shard]:
    """The shards ``spec`` names: an ``index.json`` (its ``set_name`` shards), or a brace pattern such as
    ``/data/shards/train-{000000..000511}.tar`` (durations from the ``index.json`` beside them, else read
    from the shards). ``FileNotFoundError``/``ValueError`` say what is missing."""
    spec = os.fspath(spec)
    if spec.endswith(".json"):
        if not os.path.isfile(spec):
            raise FileNotFoundError(f"Shard index not found: {spec}")
        shards = _from_index(Path(spec), set_name)
    else:
        shards = _from_pattern(spec)
    if not shards or not any(shard.durations for shard in shards):
        raise ValueError(f"No utterance in the shards of {spec!r}")
    return shards


def verify_shards(folder) -> list[str]:
    """Check every shard of a folder's index against it (sha256, size, utterance count): the problems."""
    folder = Path(folder)
    index, problems = read_index(folder / INDEX_FILE), []
    for name, info in index["shards"].items():
        path = folder / name
        if not path.is_file() or path.stat().st_size != info["bytes"]:
            problems.append(f"{name}: missing or not {info['bytes']} bytes")
            continue
        digest = file_sha256(path)
        if digest != info["sha256"]:
            problems.append(f"{name}: sha256 {digest} differs from the index's")
        elif sum(1 for _ in shard_samples(str(path))) != info["count"]:
            problems.append(f"{name}: not {info['count']} utterances")
    return problems
