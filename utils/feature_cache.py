"""An optional on-disk cache of the frozen WavLM6 features, shared by both training stages.

The encoder is frozen, so its features of an utterance never change during training; recomputing them at
every step (as the original recipe does) costs about half of a quantizer step. With ``feature_cache: True``
a pass over each cached manifest (``feature_cache_stages``) stores the features once, and the datasets then
serve them as ``feats`` (see :func:`utils.data.add_cached_features`).

Semantics
---------
The cached features of an utterance are those of the utterance **encoded alone** (batch of one, no
padding): ``encoder(load_audio(wav)[None])[0][0]``, a (T, D) tensor with ``T`` the encoder's frame count for
that many samples, stored as ``float32`` (exact) or ``float16`` (default; rounded to ~3 significant digits,
half the disk). With a batch size of 1 this is exactly what the uncached path computes. In a padded batch
the uncached path differs slightly: the encoder runs on the padded batch and keeps
``ceil(T_padded * relative_length)`` frames (which can include a last frame that sees padding); the cached
features are the padding-free ones.

Key
---
A cache lives in ``<feature_cache_folder>/<stage>-<key[:16]>/`` where ``key`` is a sha256 over: the encoder
weights (every state_dict tensor's name, dtype, shape and bytes), its class and constructor config, the
sample rate, the storage dtype, the format version and the manifest entries used (utterance id, wav path,
duration, file size and modification time). Any change gives another folder, so a stale cache is never
read; ``meta.json`` holds the full key and is checked when the cache is opened.

Layout and resuming
-------------------
Utterances (sorted by id) are split into shards of about ``shard_bytes`` (256 MiB; the environment
variable ``FOCALCODEC_FEATURE_CACHE_SHARD_BYTES`` overrides it in the recipe). Shard ``i`` is written as
``shard-0000i.bin.partial`` (the raw rows of all its utterances, back to back), renamed to ``.bin`` when
complete, and then marked complete by ``shard-0000i.json`` (its utterances' row offsets and frame counts).
An interrupted build (crash, ``kill -9``) therefore resumes at the first shard without a marker: complete
shards are kept, a partial one is recomputed. ``index.json``, written last, marks the whole cache complete.
Under DDP every process builds the shards ``i % world_size == rank`` (no collective call, so no barrier
timeout however long the build), and all of them then wait for ``index.json``.

Reading is random access (``numpy.fromfile`` at an offset), with no file kept open, so it works in
DataLoader workers as is.
"""

import hashlib
import json
import logging
import os
import shutil
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from focalcodec.files import atomic_write_json

__all__ = [
    "FORMAT_VERSION",
    "FeatureCache",
    "FeatureCacheError",
    "ManifestEntry",
    "build_feature_cache",
    "cache_key",
    "check_feature_cache_options",
    "encoder_config",
    "encoder_fingerprint",
    "manifest_entries",
    "prepare_feature_caches",
]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
DTYPES = {"float16": np.float16, "float32": np.float32}
DEFAULT_SHARD_BYTES = 256 * 2**20
# Environment variable overriding the shard size of the recipe's caches (bytes; tests use tiny shards)
SHARD_BYTES_ENV = "FOCALCODEC_FEATURE_CACHE_SHARD_BYTES"
INDEX_FILE = "index.json"
META_FILE = "meta.json"
# hparams keys of the encoder that are not constructor arguments (where the weights come from is covered
# by hashing the weights themselves)
_NOT_ENCODER_CONFIG = ("encoder_checkpoint", "encoder_hub", "encoder_random_init")


class FeatureCacheError(RuntimeError):
    """A feature cache is unusable (incomplete, corrupted or of another key) or cannot be built."""


@dataclass(frozen=True)
class ManifestEntry:
    """What identifies one utterance's audio, and so its cached features."""

    uttid: str
    wav: str
    duration: float
    size: int
    mtime_ns: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.uttid,
            "wav": self.wav,
            "duration": self.duration,
            "size": self.size,
            "mtime_ns": self.mtime_ns,
        }


# --------------------------------------------------------------------------------------------------
# Options and keys


def check_feature_cache_options(hparams: Mapping[str, Any]) -> None:
    """Refuse settings that change the waveform before the encoder, which cached features cannot follow.

    Raises
    ------
    ValueError : ``feature_cache`` together with ``augment`` or a data-pipeline ``segment_size`` crop, or
        an unknown ``feature_cache_dtype`` / ``feature_cache_stages`` entry.
    """
    if not hparams.get("feature_cache", False):
        return
    if hparams.get("augment", False):
        raise ValueError(
            "feature_cache: True cannot be combined with augment: True. Waveform augmentation changes the "
            "encoder input at every step, so the encoder features cannot be cached. Turn one of them off "
            "(--augment False, or --feature_cache False to compute the features on the fly)."
        )
    if hparams.get("segment_size") is not None:
        raise ValueError(
            "feature_cache: True cannot be combined with segment_size (a random waveform crop before the "
            "encoder): the cache holds whole-utterance features. Use --segment_size null, or "
            "--feature_cache False."
        )
    dtype = hparams.get("feature_cache_dtype", "float16")
    if dtype not in DTYPES:
        raise ValueError(f"feature_cache_dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    stages = hparams.get("feature_cache_stages", ["train"])
    unknown = [stage for stage in stages if stage not in ("train", "valid", "test")]
    if unknown:
        raise ValueError(f"feature_cache_stages may hold train, valid and test, got {unknown}")


def encoder_config(hparams: Mapping[str, Any]) -> dict[str, Any]:
    """The encoder's constructor settings from the YAML: every ``encoder_*`` key except where its weights
    come from (the weights themselves are hashed)."""
    return {
        key: hparams[key]
        for key in sorted(hparams)
        if key.startswith("encoder_") and key not in _NOT_ENCODER_CONFIG
    }


def encoder_fingerprint(encoder: torch.nn.Module) -> str:
    """sha256 over the encoder's class and every state_dict tensor (name, dtype, shape, raw bytes)."""
    digest = hashlib.sha256(f"{type(encoder).__module__}.{type(encoder).__qualname__}".encode())
    for name, tensor in sorted(encoder.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def manifest_entries(data: Mapping[str, Mapping[str, Any]], ids: Iterable[str] | None = None) -> list:
    """One :class:`ManifestEntry` per utterance, sorted by id.

    Arguments
    ---------
    data : ``{uttid: {"wav": path, "duration": seconds, ...}}``, e.g. a DynamicItemDataset's ``data``.
    ids : the utterances to keep (e.g. the dataset's ``data_ids`` after filtering); all by default.
    """
    entries = []
    for uttid in sorted(data if ids is None else ids):
        wav = str(data[uttid]["wav"])
        stat = os.stat(wav)
        entries.append(
            ManifestEntry(uttid, wav, float(data[uttid]["duration"]), stat.st_size, stat.st_mtime_ns)
        )
    return entries


def cache_key(
    encoder_sha256: str,
    config: Mapping[str, Any],
    entries: Sequence[ManifestEntry],
    sample_rate: int,
    dtype: str,
) -> tuple[str, dict[str, Any]]:
    """The cache key and the description it hashes (stored as ``meta.json``)."""
    entries_digest = hashlib.sha256(
        json.dumps([entry.as_dict() for entry in entries], sort_keys=True).encode()
    ).hexdigest()
    meta = {
        "format": FORMAT_VERSION,
        "encoder_sha256": encoder_sha256,
        "encoder_config": json.loads(json.dumps(dict(config), sort_keys=True, default=str)),
        "sample_rate": int(sample_rate),
        "dtype": dtype,
        "num_utterances": len(entries),
        "entries_sha256": entries_digest,
    }
    key = hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()
    return key, meta


# --------------------------------------------------------------------------------------------------
# Reading


class FeatureCache:
    """Read-only access to a complete cache folder: ``cache[uttid]`` -> (T, D) float32 features.

    Arguments
    ---------
    folder : a cache folder (``<feature_cache_folder>/<stage>-<key16>``) with its ``index.json``.
    key : the expected full key; a folder of another key raises :class:`FeatureCacheError`.
    """

    def __init__(self, folder: str | os.PathLike, key: str | None = None) -> None:
        self.folder = Path(folder)
        index_file = self.folder / INDEX_FILE
        if not index_file.is_file():
            raise FeatureCacheError(f"{self.folder} is not a complete feature cache (no {INDEX_FILE})")
        index = json.loads(index_file.read_text())
        if key is not None and index["key"] != key:
            raise FeatureCacheError(f"{self.folder} holds the cache of key {index['key']}, not {key}")
        self.key = index["key"]
        self.dim = int(index["dim"])
        self.dtype = index["dtype"]
        self._np_dtype = np.dtype(DTYPES[self.dtype])
        self._shards = [self.folder / name for name in index["shards"]]
        self._entries: dict[str, list[int]] = index["entries"]  # uttid -> [shard, row offset, frames]

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, uttid: object) -> bool:
        return uttid in self._entries

    def num_frames(self, uttid: str) -> int:
        """Number of feature frames stored for ``uttid``."""
        return self._entries[uttid][2]

    def __getitem__(self, uttid: str) -> torch.Tensor:
        """(T, D) float32 features of ``uttid`` (a fresh tensor)."""
        try:
            shard, offset, frames = self._entries[uttid]
        except KeyError:
            raise KeyError(f"utterance {uttid!r} is not in the feature cache {self.folder}") from None
        data = np.fromfile(
            self._shards[shard],
            dtype=self._np_dtype,
            count=frames * self.dim,
            offset=offset * self.dim * self._np_dtype.itemsize,
        )
        if data.size != frames * self.dim:
            raise FeatureCacheError(f"{self._shards[shard]} is truncated (reading {uttid!r})")
        return torch.from_numpy(data.reshape(frames, self.dim).astype(np.float32, copy=False))


# --------------------------------------------------------------------------------------------------
# Building


def _estimated_frames(duration: float, sample_rate: int, hop: int) -> int:
    """Frames the encoder yields for ``duration`` seconds (WavLM: 400-sample receptive field)."""
    samples = round(duration * sample_rate)
    return max(1, (samples - 400) // hop + 1)


def _assign_shards(
    entries: Sequence[ManifestEntry], bytes_per_frame: int, sample_rate: int, hop: int, shard_bytes: int
) -> list[list[ManifestEntry]]:
    """Consecutive entries in shards of about ``shard_bytes`` (estimated; deterministic for a key)."""
    shards: list[list[ManifestEntry]] = [[]]
    size = 0
    for entry in entries:
        if shards[-1] and size >= shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(entry)
        size += _estimated_frames(entry.duration, sample_rate, hop) * bytes_per_frame
    return shards


def _prefetch(items: Sequence, load: Callable, depth: int = 4) -> Iterator:
    """``load(item)`` for each item, computed up to ``depth`` items ahead in a background thread."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending: deque = deque()
        remaining = iter(items)
        for item in remaining:
            pending.append(pool.submit(load, item))
            if len(pending) >= depth:
                break
        while pending:
            result = pending.popleft().result()
            following = next(remaining, None)
            if following is not None:
                pending.append(pool.submit(load, following))
            yield result


def _shard_done(folder: Path, shard: int, dim: int | None, itemsize: int) -> dict | None:
    """The marker of a complete shard (None when the shard must be (re)built)."""
    marker = folder / f"shard-{shard:05d}.json"
    data = folder / f"shard-{shard:05d}.bin"
    if not marker.is_file() or not data.is_file():
        return None
    try:
        info = json.loads(marker.read_text())
    except ValueError:  # a marker damaged by a crash: rebuild the shard
        return None
    if data.stat().st_size != info["rows"] * info["dim"] * itemsize or (
        dim is not None and info["dim"] != dim
    ):
        return None
    return info


def _build_shard(
    folder: Path,
    shard: int,
    entries: Sequence[ManifestEntry],
    encode: Callable[[torch.Tensor], torch.Tensor],
    load: Callable[[str], torch.Tensor],
    np_dtype: np.dtype,
    progress,
) -> dict:
    """Encode every utterance of one shard into ``shard-XXXXX.bin`` and write its marker."""
    data_file = folder / f"shard-{shard:05d}.bin"
    partial = data_file.with_name(data_file.name + ".partial")
    index: dict[str, list[int]] = {}
    rows, dim = 0, None
    with open(partial, "wb") as stream:
        for entry, sig in zip(entries, _prefetch(entries, lambda e: load(e.wav)), strict=True):
            feats = encode(sig)
            if dim is None:
                dim = feats.shape[1]
            stream.write(np.ascontiguousarray(feats.numpy().astype(np_dtype, copy=False)).tobytes())
            index[entry.uttid] = [rows, feats.shape[0]]
            rows += feats.shape[0]
            progress.update(1)
        stream.flush()
        os.fsync(stream.fileno())
    os.replace(partial, data_file)
    info = {"rows": rows, "dim": dim, "entries": index}
    atomic_write_json(folder / f"shard-{shard:05d}.json", info)
    return info


def _wait_for(path: Path, what: str, poll_seconds: float = 2.0) -> None:
    """Wait (without any collective call) until ``path`` exists; log now and then."""
    start = last_log = time.monotonic()
    while not path.exists():
        if time.monotonic() - last_log > 300:
            logger.info(f"still waiting for {what} ({(time.monotonic() - start) / 60:.0f} min)")
            last_log = time.monotonic()
        time.sleep(poll_seconds)


def _format_bytes(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000:
            return f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"


def _format_duration(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds:.1f} s"


def _rank_and_world_size() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def build_feature_cache(
    encoder: torch.nn.Module,
    entries: Sequence[ManifestEntry],
    folder: str | os.PathLike,
    load: Callable[[str], torch.Tensor],
    *,
    config: Mapping[str, Any],
    sample_rate: int,
    dtype: str = "float16",
    name: str = "train",
    device: str | torch.device = "cpu",
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    encoder_sha256: str | None = None,
    progress: bool = True,
) -> FeatureCache:
    """Open the cache of these entries, building (or finishing) it first when needed.

    Every process of a DDP group calls this: each builds its share of the shards, then all wait for the
    index written by rank 0 (see the module docstring). Without DDP the call builds everything.

    Arguments
    ---------
    encoder : the frozen encoder, weights loaded; ``encoder(sig (1, N))[0]`` gives (1, T, D) features.
    entries : the utterances (see :func:`manifest_entries`).
    folder : the root folder of caches (``feature_cache_folder``); this cache goes to
        ``<folder>/<name>-<key[:16]>``.
    load : ``wav path -> (N,) float32 waveform at sample_rate`` (e.g. ``utils.data.load_audio``).
    config : the encoder's constructor config (see :func:`encoder_config`), part of the key.
    sample_rate : the rate ``load`` returns, part of the key.
    dtype : ``float16`` or ``float32`` storage.
    name : cache name, e.g. the stage.
    device : where the encoder runs.
    shard_bytes : approximate size of a shard (the resume granularity).
    encoder_sha256 : :func:`encoder_fingerprint` of ``encoder`` if already computed.
    progress : show a tqdm progress bar.

    Returns
    -------
    The opened :class:`FeatureCache`.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if not entries:
        raise ValueError(f"feature cache '{name}': no utterances to cache")
    encoder_sha256 = encoder_sha256 or encoder_fingerprint(encoder)
    key, meta = cache_key(encoder_sha256, config, entries, sample_rate, dtype)
    root = Path(folder)
    cache_folder = root / f"{name}-{key[:16]}"
    index_file = cache_folder / INDEX_FILE
    if index_file.is_file():
        logger.info(f"Feature cache '{name}': using {cache_folder} ({len(entries)} utterances)")
        return FeatureCache(cache_folder, key)

    rank, world_size = _rank_and_world_size()
    cache_folder.mkdir(parents=True, exist_ok=True)
    meta_file = cache_folder / META_FILE
    if meta_file.is_file():
        if json.loads(meta_file.read_text()).get("key") != key:
            raise FeatureCacheError(f"{cache_folder} belongs to another key (16-hex prefix collision?)")
    elif rank == 0:
        atomic_write_json(meta_file, {"key": key, **meta})

    np_dtype = np.dtype(DTYPES[dtype])
    hop = int(getattr(encoder, "downsample_factor", 320))
    dim = _output_dim(encoder)
    bytes_per_frame = dim * np_dtype.itemsize
    shards = _assign_shards(entries, bytes_per_frame, sample_rate, hop, shard_bytes)
    mine = [i for i in range(len(shards)) if i % world_size == rank]
    todo = [i for i in mine if _shard_done(cache_folder, i, dim, np_dtype.itemsize) is None]

    if rank == 0:
        seconds = sum(entry.duration for entry in entries)
        frames = sum(_estimated_frames(e.duration, sample_rate, hop) for e in entries)
        remaining_frames = sum(
            _estimated_frames(e.duration, sample_rate, hop)
            for i in range(len(shards))
            if _shard_done(cache_folder, i, dim, np_dtype.itemsize) is None
            for e in shards[i]
        )
        free = shutil.disk_usage(cache_folder).free
        size, remaining = frames * bytes_per_frame, remaining_frames * bytes_per_frame
        logger.info(
            f"Feature cache '{name}': {len(entries)} utterances, {_format_duration(seconds)} of audio -> "
            f"about {frames / 1e6:.3g} M frames x {dim} x {dtype} = {_format_bytes(size)} in "
            f"{len(shards)} shards, in {cache_folder} (still to compute: {_format_bytes(remaining)}; "
            f"free disk: {_format_bytes(free)})"
        )
        if remaining > free:
            raise FeatureCacheError(
                f"Not enough disk space for the feature cache in {cache_folder}: it needs about "
                f"{_format_bytes(remaining)}, {_format_bytes(free)} are free. "
                f"Point --feature_cache_folder elsewhere, or use --feature_cache_dtype float16."
            )
        stale = [p for p in root.glob(f"{name}-*") if p.is_dir() and p != cache_folder]
        if stale:
            logger.info(
                f"Feature cache '{name}': other (stale) caches are not used and may be deleted: "
                + ", ".join(str(p) for p in stale)
            )

    if todo:
        from tqdm import tqdm

        encoder = encoder.to(device).eval()

        @torch.inference_mode()
        def encode(sig: torch.Tensor) -> torch.Tensor:
            return encoder(sig[None].to(device))[0][0].float().cpu()

        total = sum(len(shards[i]) for i in todo)
        with tqdm(total=total, unit="utt", desc=f"feature cache {name}", disable=not progress) as bar:
            for i in todo:
                _build_shard(cache_folder, i, shards[i], encode, load, np_dtype, bar)

    if rank == 0:
        for i in range(len(shards)):
            _wait_for(cache_folder / f"shard-{i:05d}.json", f"shard {i} of the feature cache '{name}'")
        index_entries: dict[str, list[int]] = {}
        for i in range(len(shards)):
            info = _shard_done(cache_folder, i, dim, np_dtype.itemsize)
            if info is None:
                raise FeatureCacheError(f"shard {i} of {cache_folder} is incomplete after the build")
            for uttid, (offset, frames) in info["entries"].items():
                index_entries[uttid] = [i, offset, frames]
        index = {
            "key": key,
            "dim": dim,
            "dtype": dtype,
            "shards": [f"shard-{i:05d}.bin" for i in range(len(shards))],
            "entries": index_entries,
        }
        atomic_write_json(index_file, index)
        size = sum((cache_folder / name_).stat().st_size for name_ in index["shards"])
        logger.info(f"Feature cache '{name}': complete, {_format_bytes(size)} in {cache_folder}")
    else:
        _wait_for(index_file, f"the index of the feature cache '{name}'")
    return FeatureCache(cache_folder, key)


def _output_dim(encoder: torch.nn.Module) -> int:
    """Feature size of the encoder: WavLM's projection width, or measured on 1 s of silence."""
    projection = getattr(encoder, "feature_proj", None)
    if isinstance(projection, torch.nn.Linear):
        return projection.out_features
    device = next(encoder.parameters()).device
    with torch.inference_mode():
        return encoder(torch.zeros(1, 16000, device=device))[0].shape[-1]


# --------------------------------------------------------------------------------------------------
# Recipe glue


def prepare_feature_caches(
    hparams: Mapping[str, Any], datasets: Mapping[str, Any], device: str | torch.device
) -> dict[str, FeatureCache]:
    """Build (or reuse) the cache of every stage in ``feature_cache_stages``; call on every process.

    Arguments
    ---------
    hparams : the loaded YAML: ``encoder`` (weights loaded), ``encoder_*``, ``sample_rate``,
        ``feature_cache_folder``, ``feature_cache_dtype`` and ``feature_cache_stages``.
    datasets : stage -> DynamicItemDataset (after filtering: only the utterances used are cached).
    device : where the encoder runs while building.
    """
    from focalcodec.audio import load_audio

    check_feature_cache_options(hparams)
    encoder = hparams["encoder"]
    sample_rate = hparams["sample_rate"]
    digest = encoder_fingerprint(encoder)
    config = encoder_config(hparams)
    caches = {}
    for stage in hparams.get("feature_cache_stages", ["train"]):
        dataset = datasets[stage]
        caches[stage] = build_feature_cache(
            encoder,
            manifest_entries(dataset.data, dataset.data_ids),
            hparams["feature_cache_folder"],
            lambda path: load_audio(path, sample_rate),
            config=config,
            sample_rate=sample_rate,
            dtype=hparams.get("feature_cache_dtype", "float16"),
            name=stage,
            device=device,
            shard_bytes=int(os.environ.get(SHARD_BYTES_ENV, DEFAULT_SHARD_BYTES)),
            encoder_sha256=digest,
        )
    return caches
