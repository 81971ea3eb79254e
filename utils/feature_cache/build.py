"""Building a feature cache: the plan (key, folder, shards), the disk check, the shards (each process its
share under DDP, without collective calls) and the index that marks the cache complete."""

import functools
import json
import logging
import os
import shutil
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from focalcodec.files import atomic_write, atomic_write_json, format_bytes
from utils.feature_cache.key import ManifestEntry, cache_key
from utils.feature_cache.layout import (
    DEFAULT_DTYPE,
    DTYPES,
    INDEX_FILE,
    META_FILE,
    FeatureCacheError,
    FrameGeometry,
    assign_shards,
    cache_folder,
    marker_file,
    other_caches,
    shard_file,
)
from utils.feature_cache.reader import FeatureCache
from utils.runs import encoder_fingerprint

__all__ = [
    "DEFAULT_SHARD_BYTES",
    "BuildPlan",
    "build_feature_cache",
    "claim_folder",
    "encode_function",
    "plan_build",
    "rank_and_world_size",
    "wait_until",
]

logger = logging.getLogger(__name__)

DEFAULT_SHARD_BYTES = 256 * 2**20
# How often a process waiting for the others' shards (or the index) looks, and logs that it still waits
POLL_SECONDS = 2.0
LOG_WAIT_SECONDS = 300.0

Item = TypeVar("Item")
Loaded = TypeVar("Loaded")


@dataclass(frozen=True)
class BuildPlan:
    """One cache to build: where it goes and which utterances each shard holds.

    Attributes
    ----------
    folder : the cache folder (:func:`~utils.feature_cache.layout.cache_folder`).
    name : the cache name (e.g. the stage), for messages.
    dtype : the storage dtype name.
    dim : D, the encoder's feature size.
    shards : the utterances of each shard, in order.
    estimated_frames : (num_shards,) estimated frames of each shard.
    """

    folder: Path
    name: str
    dtype: str
    dim: int
    shards: list[list[ManifestEntry]]
    estimated_frames: list[int]

    @property
    def np_dtype(self) -> np.dtype:
        """The storage dtype."""
        return np.dtype(DTYPES[self.dtype])

    @property
    def frame_bytes(self) -> int:
        """Bytes of one stored frame."""
        return self.dim * self.np_dtype.itemsize

    def completed(self, shard: int) -> dict[str, Any] | None:
        """The marker of shard ``shard`` if the shard is complete and is the planned one, else None.

        A shard must be (re)built when its marker or data file is missing or damaged, its size does not
        match the marker, or it holds other utterances (a build interrupted under another shard size).
        """
        marker, data = marker_file(self.folder, shard), shard_file(self.folder, shard)
        if not marker.is_file() or not data.is_file():
            return None
        try:
            info = json.loads(marker.read_text())
        except ValueError:  # a marker damaged by a crash: rebuild the shard
            return None
        planned = sorted(entry.uttid for entry in self.shards[shard])
        if (
            not isinstance(info, dict)
            or not isinstance(info.get("rows"), int)
            or info.get("dim") != self.dim
            or sorted(info.get("entries", {})) != planned
            or data.stat().st_size != info["rows"] * self.frame_bytes
        ):
            return None
        return info


def plan_build(
    encoder: torch.nn.Module,
    entries: Sequence[ManifestEntry],
    folder: Path,
    name: str,
    dtype: str,
    sample_rate: int,
    shard_bytes: int,
) -> BuildPlan:
    """Split ``entries`` into shards of about ``shard_bytes``, from the encoder's frame geometry and
    feature size (deterministic: every process and every resumed run gets the same plan)."""
    dim = _output_dim(encoder)
    geometry = FrameGeometry.of_encoder(encoder)
    frames = [geometry.frames(entry.duration, sample_rate) for entry in entries]
    ranges = assign_shards(frames, dim * np.dtype(DTYPES[dtype]).itemsize, shard_bytes)
    return BuildPlan(
        folder=folder,
        name=name,
        dtype=dtype,
        dim=dim,
        shards=[[entries[i] for i in positions] for positions in ranges],
        estimated_frames=[sum(frames[i] for i in positions) for positions in ranges],
    )


def _output_dim(encoder: torch.nn.Module) -> int:
    """D, the encoder's feature size: WavLM's projection width, or measured on 1 s of silence."""
    projection = getattr(encoder, "feature_proj", None)
    if isinstance(projection, torch.nn.Linear):
        return projection.out_features
    device = next(encoder.parameters()).device
    with torch.inference_mode():
        return encoder(torch.zeros(1, 16000, device=device))[0].shape[-1]


def claim_folder(folder: Path, key: str, meta: Mapping[str, Any], write_meta: bool) -> None:
    """Create the cache folder; write ``meta.json`` (rank 0) or check that an existing one is ``key``'s."""
    folder.mkdir(parents=True, exist_ok=True)
    meta_file = folder / META_FILE
    if meta_file.is_file():
        if json.loads(meta_file.read_text()).get("key") != key:
            raise FeatureCacheError(f"{folder} belongs to another key (16-hex prefix collision?)")
    elif write_meta:
        atomic_write_json(meta_file, {"key": key, **meta})


def _check_disk_space(plan: BuildPlan, num_seconds: float) -> None:
    """Log the cache's size and what is left to compute; raise :class:`FeatureCacheError` when the rest
    (estimated) does not fit on the disk."""
    total = sum(plan.estimated_frames)
    remaining = sum(f for i, f in enumerate(plan.estimated_frames) if plan.completed(i) is None)
    free = shutil.disk_usage(plan.folder).free
    num_utterances = sum(len(shard) for shard in plan.shards)
    logger.info(
        f"Feature cache '{plan.name}': {num_utterances} utterances, {_format_duration(num_seconds)} of "
        f"audio -> about {total / 1e6:.3g} M frames x {plan.dim} x {plan.dtype} = "
        f"{format_bytes(total * plan.frame_bytes)} in {len(plan.shards)} shards, in {plan.folder} "
        f"(still to compute: {format_bytes(remaining * plan.frame_bytes)}; free disk: {format_bytes(free)})"
    )
    if remaining * plan.frame_bytes > free:
        hint = " or use --feature_cache_dtype float16" if plan.dtype != "float16" else ""
        raise FeatureCacheError(
            f"Not enough disk space for the feature cache in {plan.folder}: it needs about "
            f"{format_bytes(remaining * plan.frame_bytes)}, {format_bytes(free)} are free. "
            f"Point --feature_cache_folder elsewhere{hint}."
        )


def _log_stale_caches(root: Path, name: str, key: str) -> None:
    """Name the caches of ``name`` with other keys: never read again, they may be deleted."""
    stale = other_caches(root, name, key)
    if stale:
        logger.info(
            f"Feature cache '{name}': other (stale) caches are not used and may be deleted: "
            + ", ".join(str(path) for path in stale)
        )


def _prefetch(items: Sequence[Item], load: Callable[[Item], Loaded], depth: int = 4) -> Iterator[Loaded]:
    """``load(item)`` for each item in order, computed up to ``depth`` items ahead in a background thread."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending: deque = deque(pool.submit(load, item) for item in items[:depth])
        for following in items[depth:]:
            result = pending.popleft().result()
            pending.append(pool.submit(load, following))
            yield result
        while pending:
            yield pending.popleft().result()


def _write_shard(
    plan: BuildPlan,
    shard: int,
    encode: Callable[[torch.Tensor], torch.Tensor],
    load: Callable[[ManifestEntry], torch.Tensor],
    progress: Any,
) -> dict[str, Any]:
    """Encode every utterance of shard ``shard`` into its data file, then write its marker.

    ``encode``: (N,) waveform -> (T, D) float32 CPU features; ``progress``: a tqdm bar (one step per
    utterance). The data file appears complete or not at all; the marker comes after it.
    """
    entries = plan.shards[shard]
    index: dict[str, list[int]] = {}

    def write(path: Path) -> None:
        rows = 0
        with open(path, "wb") as stream:
            for entry, sig in zip(entries, _prefetch(entries, load), strict=True):
                feats = encode(sig)
                if feats.ndim != 2 or feats.shape[1] != plan.dim:
                    raise FeatureCacheError(
                        f"the encoder gave features of shape {tuple(feats.shape)} for {entry.uttid!r}, "
                        f"expected (frames, {plan.dim})"
                    )
                stream.write(np.ascontiguousarray(feats.numpy().astype(plan.np_dtype, copy=False)).tobytes())
                index[entry.uttid] = [rows, feats.shape[0]]
                rows += feats.shape[0]
                progress.update(1)
            stream.flush()
            os.fsync(stream.fileno())

    atomic_write(shard_file(plan.folder, shard), write)
    info = {"rows": sum(frames for _, frames in index.values()), "dim": plan.dim, "entries": index}
    atomic_write_json(marker_file(plan.folder, shard), info)
    return info


def encode_function(
    encoder: torch.nn.Module, device: str | torch.device
) -> Callable[[torch.Tensor], torch.Tensor]:
    """(N,) waveform -> (T, D) float32 CPU features of the utterance encoded alone, on ``device``."""
    encoder = encoder.to(device).eval()

    @torch.inference_mode()
    def encode(sig: torch.Tensor) -> torch.Tensor:
        return encoder(sig[None].to(device))[0][0].float().cpu()

    return encode


def _build_shards(
    plan: BuildPlan,
    shards: Sequence[int],
    encoder: torch.nn.Module,
    load: Callable[[ManifestEntry], torch.Tensor],
    device: str | torch.device,
    progress: bool,
) -> None:
    """Build the given shards of the plan, one after the other, with one progress bar."""
    from tqdm import tqdm

    encode = encode_function(encoder, device)
    total = sum(len(plan.shards[shard]) for shard in shards)
    with tqdm(total=total, unit="utt", desc=f"feature cache {plan.name}", disable=not progress) as bar:
        for shard in shards:
            _write_shard(plan, shard, encode, load, bar)


def wait_until(ready: Callable[[], Any], what: str) -> None:
    """Poll ``ready()`` until it is truthy (no collective call, so no timeout); log now and then."""
    start = last_log = time.monotonic()
    while not ready():
        if time.monotonic() - last_log > LOG_WAIT_SECONDS:
            logger.info(f"still waiting for {what} ({(time.monotonic() - start) / 60:.0f} min)")
            last_log = time.monotonic()
        time.sleep(POLL_SECONDS)


def _write_index(plan: BuildPlan, key: str, wait: bool) -> None:
    """Merge the shard markers into ``index.json``, marking the cache complete (rank 0 only).

    With ``wait`` (DDP), first wait until every shard built by the other processes is complete.
    """
    entries: dict[str, list[int]] = {}
    for shard in range(len(plan.shards)):
        if wait:
            wait_until(
                functools.partial(plan.completed, shard), f"shard {shard} of the feature cache '{plan.name}'"
            )
        info = plan.completed(shard)
        if info is None:
            raise FeatureCacheError(f"shard {shard} of {plan.folder} is incomplete after the build")
        for uttid, (row, frames) in info["entries"].items():
            entries[uttid] = [shard, row, frames]
    names = [shard_file(plan.folder, shard).name for shard in range(len(plan.shards))]
    index = {"key": key, "dim": plan.dim, "dtype": plan.dtype, "shards": names, "entries": entries}
    atomic_write_json(plan.folder / INDEX_FILE, index)
    size = sum((plan.folder / name).stat().st_size for name in names)
    logger.info(f"Feature cache '{plan.name}': complete, {format_bytes(size)} in {plan.folder}")


def _complete(plan: BuildPlan, key: str, rank: int, world_size: int) -> None:
    """After this process's shards: rank 0 writes the index (waiting for the other ranks' shards), the
    other ranks wait for it."""
    if rank == 0:
        _write_index(plan, key, wait=world_size > 1)
    else:
        wait_until((plan.folder / INDEX_FILE).exists, f"the index of the feature cache '{plan.name}'")


def rank_and_world_size() -> tuple[int, int]:
    """This process's rank and the number of processes (0 and 1 without DDP)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _format_duration(seconds: float) -> str:
    """``seconds`` as text, in hours from one hour on."""
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds:.1f} s"


def build_feature_cache(
    encoder: torch.nn.Module,
    entries: Sequence[ManifestEntry],
    folder: str | os.PathLike,
    load: Callable[[ManifestEntry], torch.Tensor],
    *,
    config: Mapping[str, Any],
    sample_rate: int,
    dtype: str = DEFAULT_DTYPE,
    name: str = "train",
    device: str | torch.device = "cpu",
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    encoder_sha256: str | None = None,
    progress: bool = True,
) -> FeatureCache:
    """The opened :class:`~utils.feature_cache.reader.FeatureCache` of these entries, built (or finished)
    first when needed.

    Every process of a DDP group calls this: each builds the incomplete shards ``i % world_size == rank``,
    then rank 0 waits for the others' shards and writes the index, which the others wait for. Without DDP
    the call builds everything. See :mod:`utils.feature_cache`.

    Arguments
    ---------
    encoder : the frozen encoder, weights loaded; ``encoder(sig (1, N))[0]`` gives (1, T, D) features.
    entries : the utterances (see :func:`~utils.feature_cache.key.manifest_entries`).
    folder : the root folder of caches (``feature_cache_folder``); this one is ``<folder>/<name>-<key[:16]>``.
    load : an entry -> its (N,) float32 waveform at sample_rate (e.g. ``focalcodec.audio.load_audio`` of
        its ``wav``; ``utils.corpus.audio.load_utterance`` of a cut utterance).
    config : the encoder's constructor config (:func:`~utils.feature_cache.key.encoder_config`), in the key.
    sample_rate : the rate ``load`` returns, in the key.
    dtype : ``float16`` or ``float32`` storage.
    name : cache name, e.g. the stage.
    device : where the encoder runs.
    shard_bytes : approximate size of a shard (the resume granularity; not in the key).
    encoder_sha256 : :func:`~utils.feature_cache.key.encoder_fingerprint` of ``encoder`` if already known.
    progress : show a tqdm progress bar.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if not entries:
        raise ValueError(f"feature cache '{name}': no utterances to cache")
    entries = list(entries)
    key, meta = cache_key(encoder_sha256 or encoder_fingerprint(encoder), config, entries, sample_rate, dtype)
    target = cache_folder(folder, name, key)
    if (target / INDEX_FILE).is_file():
        logger.info(f"Feature cache '{name}': using {target} ({len(entries)} utterances)")
        return FeatureCache(target, key)

    rank, world_size = rank_and_world_size()
    claim_folder(target, key, meta, write_meta=rank == 0)
    plan = plan_build(encoder, entries, target, name, dtype, sample_rate, shard_bytes)
    if rank == 0:
        _check_disk_space(plan, sum(entry.duration for entry in entries))
        _log_stale_caches(Path(folder), name, key)
    todo = [shard for shard in range(rank, len(plan.shards), world_size) if plan.completed(shard) is None]
    if todo:
        _build_shards(plan, todo, encoder, load, device, progress)
    _complete(plan, key, rank, world_size)
    return FeatureCache(target, key)
