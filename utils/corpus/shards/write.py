"""Writing the WebDataset shards of prepared manifests: the plan (which utterance goes to which shard), the
shards (in parallel, each complete or absent), and the index that marks the whole folder complete.

Resuming: a shard is written under a temporary name and renamed when complete, then recorded by a marker
in ``.shards-pending/`` (its count, durations, size and sha256, and the plan's digest). A second run with
the same manifests (same files, sizes and modification times) and options keeps the shards that have a
marker and writes the rest; one with anything changed starts the folder afresh. ``index.json``, written
last and atomically, marks the folder complete (a third run does nothing).
"""

import hashlib
import io
import json
import logging
import os
import random
import re
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import webdataset as wds
from tqdm import tqdm

from focalcodec.audio import resample
from focalcodec.files import atomic_write, atomic_write_json, format_bytes
from utils.corpus.audio import read_ranges
from utils.corpus.manifest import ManifestEntry
from utils.corpus.shards.index import FORMAT_VERSION, INDEX_FILE, SHARD_NAME, file_sha256, read_index

__all__ = ["AUDIO_FORMATS", "ShardOptions", "ShardPlan", "plan_shards", "write_shards"]

logger = logging.getLogger(__name__)

PENDING_FOLDER = ".shards-pending"
AUDIO_FORMATS = ("stored", "flac", "wav")
STORED_SUFFIXES = ("wav", "flac", "ogg", "mp3")
# Planning re-encoded audio: estimated bytes per 16-bit sample (FLAC keeps about 60 % of speech's PCM)
_BYTES_PER_SAMPLE = {"flac": 1.2, "wav": 2.0}
_SUBTYPES = {"flac": ("FLAC", "PCM_16"), "wav": ("WAV", "PCM_16")}


@dataclass(frozen=True)
class ShardOptions:
    """How shards are written.

    shard_mb : target size of a shard in MB (10^6 bytes); a shard closes before the utterance that would
        pass it (estimated from the file sizes, or from durations for re-encoded audio).
    max_count : at most this many utterances per shard (``None``: no limit).
    audio_format : ``stored`` (the file's bytes as they are; a Libri-Light piece or a resampled file is
        encoded as FLAC), ``flac`` or ``wav`` (16-bit, mono).
    sample_rate : resample to this rate (``None``: the file's own).
    seed : the utterances are shuffled with it before being cut into shards.
    """

    shard_mb: float = 256.0
    max_count: int | None = None
    audio_format: str = "stored"
    sample_rate: int | None = None
    seed: int = 0

    def check(self) -> None:
        """``ValueError`` naming a bad option."""
        if self.audio_format not in AUDIO_FORMATS:
            raise ValueError(
                f"audio_format must be one of {', '.join(AUDIO_FORMATS)}, not {self.audio_format!r}"
            )
        if not self.shard_mb > 0:
            raise ValueError(f"shard_mb must be a positive number of MB, got {self.shard_mb!r}")
        if self.max_count is not None and self.max_count < 1:
            raise ValueError(f"max_count must be at least 1 (or null), got {self.max_count!r}")
        if self.sample_rate is not None and self.sample_rate < 1:
            raise ValueError(f"sample_rate must be a positive rate in Hz (or null), got {self.sample_rate!r}")


@dataclass(frozen=True)
class ShardPlan:
    """One shard to write: its file name (``<set>-NNNNNN.tar``), set, number and utterances in order."""

    name: str
    set_name: str
    number: int
    entries: tuple[ManifestEntry, ...]


def _stored(entry: ManifestEntry, options: ShardOptions) -> bool:
    """Whether the file's own bytes go into the shard."""
    suffix = Path(entry.wav).suffix.lower().lstrip(".")
    same_rate = options.sample_rate in (None, entry.sample_rate)
    return options.audio_format == "stored" and not entry.segments and same_rate and suffix in STORED_SUFFIXES


def _estimated_bytes(entry: ManifestEntry, options: ShardOptions) -> float:
    if _stored(entry, options):
        return os.path.getsize(entry.wav)
    encoding = "flac" if options.audio_format == "stored" else options.audio_format
    rate = options.sample_rate or entry.sample_rate
    return entry.duration * rate * _BYTES_PER_SAMPLE[encoding]


def _chunks(entries: list[ManifestEntry], options: ShardOptions) -> list[list[ManifestEntry]]:
    """Consecutive runs of ``entries`` of about ``shard_mb`` each (at most ``max_count``)."""
    target, chunks, size = options.shard_mb * 1e6, [[]], 0.0
    for entry in entries:
        estimate = _estimated_bytes(entry, options)
        full = options.max_count is not None and len(chunks[-1]) >= options.max_count
        if chunks[-1] and (full or size + estimate > target):
            chunks.append([])
            size = 0.0
        chunks[-1].append(entry)
        size += estimate
    return [chunk for chunk in chunks if chunk]


def plan_shards(manifests: dict[str, list[ManifestEntry]], options: ShardOptions) -> list[ShardPlan]:
    """Every set's utterances shuffled (``options.seed``) and cut into consecutive shards of about
    ``shard_mb`` (at most ``max_count`` utterances), numbered from 0 in each set."""
    options.check()
    plans = []
    for set_name, entries in manifests.items():
        order = sorted(entries, key=lambda entry: entry.uttid)
        random.Random(options.seed).shuffle(order)
        for number, chunk in enumerate(_chunks(order, options)):
            plans.append(ShardPlan(SHARD_NAME.format(set_name, number), set_name, number, tuple(chunk)))
    return plans


def plan_digest(plans: list[ShardPlan], options: ShardOptions) -> str:
    """sha256 of the options and of every planned utterance (entry, file size and modification time)."""
    digest = hashlib.sha256(json.dumps(asdict(options), sort_keys=True).encode())
    for plan in plans:
        for entry in plan.entries:
            stat = os.stat(entry.wav)
            record = [plan.name, asdict(entry), stat.st_size, stat.st_mtime_ns]
            digest.update(json.dumps(record, sort_keys=True).encode())
    return digest.hexdigest()


def encode_audio(entry: ManifestEntry, options: ShardOptions) -> tuple[str, bytes, int]:
    """``(extension, bytes, sample rate)`` of an utterance as a shard stores it (:class:`ShardOptions`)."""
    if _stored(entry, options):
        return Path(entry.wav).suffix.lower().lstrip("."), Path(entry.wav).read_bytes(), entry.sample_rate
    data, rate = read_ranges(entry.wav, entry.segments or [[0, round(entry.duration * entry.sample_rate)]])
    sig = torch.from_numpy(data.mean(axis=1))
    if options.sample_rate is not None:
        sig, rate = resample(sig, rate, options.sample_rate), options.sample_rate
    encoding = "flac" if options.audio_format == "stored" else options.audio_format
    buffer = io.BytesIO()
    file_format, subtype = _SUBTYPES[encoding]
    sf.write(buffer, np.clip(sig.numpy(), -1.0, 1.0), rate, format=file_format, subtype=subtype)
    return encoding, buffer.getvalue(), rate


def _write_shard(folder: Path, plan: ShardPlan, options: ShardOptions, digest: str) -> dict:
    """Write one shard (atomically), then its marker; returns what the index says of it."""
    durations = [round(entry.duration, 6) for entry in plan.entries]

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as stream, wds.TarWriter(stream, encoder=False, mtime=0) as writer:
            for position, (entry, duration) in enumerate(zip(plan.entries, durations, strict=True)):
                extension, audio, rate = encode_audio(entry, options)
                meta = {"id": entry.uttid, "spk_id": entry.spk_id, "label": entry.label}
                meta.update(duration=duration, sample_rate=rate)
                key = f"{plan.number:06d}_{position:06d}"
                writer.write({"__key__": key, extension: audio, "json": json.dumps(meta).encode()})

    path = atomic_write(folder / plan.name, write)
    info = {"set": plan.set_name, "count": len(durations), "seconds": round(sum(durations), 3)}
    info.update(bytes=path.stat().st_size, sha256=file_sha256(path), durations=durations)
    atomic_write_json(folder / PENDING_FOLDER / f"{plan.name}.json", {**info, "plan": digest})
    return info


def _done(folder: Path, plan: ShardPlan, digest: str) -> dict | None:
    """What the marker of a complete shard of this plan says, else ``None``."""
    try:
        info = json.loads((folder / PENDING_FOLDER / f"{plan.name}.json").read_text())
        if info.pop("plan") == digest and (folder / plan.name).stat().st_size == info["bytes"]:
            return info
    except (OSError, ValueError, KeyError):
        pass
    return None


def _start_afresh(folder: Path, digest: str) -> None:
    """Remove the shards, markers and index of another plan (only files named as this module names them)."""
    pending = folder / PENDING_FOLDER
    plan_file = pending / "plan.json"
    if plan_file.is_file() and json.loads(plan_file.read_text()).get("plan") == digest:
        return
    shutil.rmtree(pending, ignore_errors=True)
    for path in folder.iterdir():
        if re.fullmatch(r"[\w.-]+-\d{6}\.tar", path.name) or path.name == INDEX_FILE:
            path.unlink()
    atomic_write_json(plan_file, {"plan": digest})


def _write_all(folder: Path, todo: list[ShardPlan], options: ShardOptions, digest: str, workers: int):
    """Write the shards of ``todo`` (``workers`` processes); yield ``(name, info)`` as each completes."""
    if workers <= 1:
        for plan in todo:
            yield plan.name, _write_shard(folder, plan, options, digest)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = {plan.name: pool.submit(_write_shard, folder, plan, options, digest) for plan in todo}
        for name, future in futures.items():
            yield name, future.result()


def _index(plans: list[ShardPlan], infos: dict[str, dict], options: ShardOptions, digest: str) -> dict:
    sets: dict[str, dict] = {}
    for plan in plans:
        entry = sets.setdefault(plan.set_name, {"shards": [], "count": 0, "seconds": 0.0})
        entry["shards"].append(plan.name)
        entry["count"] += infos[plan.name]["count"]
        entry["seconds"] = round(entry["seconds"] + infos[plan.name]["seconds"], 3)
    shards = {plan.name: {k: v for k, v in infos[plan.name].items() if k != "set"} for plan in plans}
    return {
        "format": FORMAT_VERSION,
        "plan": digest,
        "options": asdict(options),
        "sets": sets,
        "shards": shards,
    }


def write_shards(
    manifests: dict[str, list[ManifestEntry]], folder, options: ShardOptions, workers: int = 1
) -> dict:
    """Write the shards of every set of ``manifests`` (``{set name: entries}``) into ``folder`` and its
    ``index.json`` (see :mod:`utils.corpus.shards.index`); returns the index. Resumes an interrupted run,
    does nothing when the folder already holds these shards (see the module docstring). The audio files
    are only read."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    plans = plan_shards(manifests, options)
    digest = plan_digest(plans, options)
    index = read_index(folder / INDEX_FILE) if (folder / INDEX_FILE).is_file() else None
    if index is not None and index.get("plan") == digest:
        logger.info(f"Shards already written with the same manifests and options: {folder}")
        return index
    _start_afresh(folder, digest)
    infos = {plan.name: info for plan in plans if (info := _done(folder, plan, digest)) is not None}
    todo = [plan for plan in plans if plan.name not in infos]
    total = sum(len(plan.entries) for plan in plans)
    logger.info(f"Writing {len(todo)} of {len(plans)} shards ({total} utterances) to {folder}")
    for name, info in tqdm(_write_all(folder, todo, options, digest, workers), total=len(todo), unit="shard"):
        infos[name] = info
    index = _index(plans, infos, options, digest)
    atomic_write_json(folder / INDEX_FILE, index)
    shutil.rmtree(folder / PENDING_FOLDER, ignore_errors=True)
    size = format_bytes(sum(info["bytes"] for info in infos.values()))
    logger.info(f"{len(plans)} shards ({size}) and {INDEX_FILE} written to {folder}")
    return index
