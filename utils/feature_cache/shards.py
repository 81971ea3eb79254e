"""The feature cache in shard form, for a training set read from WebDataset shards (``train_shards``):
beside each audio shard a feature shard of the same samples in the same order, ``<key>.feats.npy`` the
(T, D) features of the utterance encoded alone (float16 or float32), as the cache stores them.

Keyed as the cache (encoder weights, class and config, sample rate, dtype, format), the audio shards (name,
utterances' seconds, size, modification time) standing for the manifest entries: any change gives another
folder, ``<feature_cache_folder>/<name>_shards-<key[:16]>``. Every process builds its share of the shards
(``i % world_size == rank``, each written atomically, so an interrupted build resumes at the shards that
are missing); rank 0 waits for all of them and writes ``index.json``, which the others wait for (no
collective call). The features come from the shards' own audio: the corpus need not be there.
"""

import io
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import webdataset as wds
from tqdm import tqdm

from focalcodec.files import atomic_write, atomic_write_json
from utils.corpus.shards import Shard, shard_samples
from utils.feature_cache.build import claim_folder, encode_function, rank_and_world_size, wait_until
from utils.feature_cache.key import ManifestEntry, cache_key
from utils.feature_cache.layout import DTYPES, INDEX_FILE, cache_folder
from utils.runs import encoder_fingerprint

__all__ = ["FEATURES_KEY", "build_feature_shards"]

logger = logging.getLogger(__name__)

FEATURES_KEY = "feats.npy"  # the member of a sample holding its features


def _entries(shards: Sequence[Shard]) -> list[ManifestEntry]:
    """The audio shards as the entries the key hashes."""
    entries = []
    for shard in shards:
        stat = os.stat(shard.url)
        name = os.path.basename(shard.url)
        entries.append(
            ManifestEntry(name, shard.url, float(sum(shard.durations)), stat.st_size, stat.st_mtime_ns)
        )
    return entries


def _write(target: Path, url: str, encode: Callable, load: Callable, dtype: str) -> None:
    """The feature shard of the audio shard ``url`` (atomically)."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as stream, wds.TarWriter(stream, encoder=False, mtime=0) as writer:
            for sample in shard_samples(url):
                buffer = io.BytesIO()
                np.save(buffer, encode(load(sample)).numpy().astype(DTYPES[dtype]))
                writer.write({"__key__": sample["__key__"], FEATURES_KEY: buffer.getvalue()})

    atomic_write(target / os.path.basename(url), write)


def build_feature_shards(
    encoder: torch.nn.Module,
    shards: Sequence[Shard],
    folder: str | os.PathLike,
    load: Callable[[dict], torch.Tensor],
    *,
    config: Mapping[str, Any],
    sample_rate: int,
    dtype: str,
    name: str = "train",
    device: str | torch.device = "cpu",
) -> list[str]:
    """The feature shards of ``shards`` (paths, in their order), built first where missing; call on every
    process.

    Arguments
    ---------
    encoder : the frozen module cached (weights loaded); ``encoder(sig (1, N))[0]`` gives (1, T, D).
    shards : the audio shards (``utils.corpus.shards.resolve_shards``: local files).
    folder : ``feature_cache_folder``.
    load : a raw sample -> its (N,) waveform at ``sample_rate`` (as training reads it).
    config, sample_rate, dtype : as :func:`~utils.feature_cache.build.build_feature_cache`'s, in the key.
    name : the set's name (``train``).
    device : where the encoder runs.
    """
    key, meta = cache_key(encoder_fingerprint(encoder), config, _entries(shards), sample_rate, dtype)
    target = cache_folder(folder, f"{name}_shards", key)
    names = [os.path.basename(shard.url) for shard in shards]
    if not (target / INDEX_FILE).is_file():
        rank, world_size = rank_and_world_size()
        claim_folder(target, key, meta, write_meta=rank == 0)
        todo = [i for i in range(rank, len(shards), world_size) if not (target / names[i]).is_file()]
        encode = encode_function(encoder, device)
        for i in tqdm(todo, unit="shard", desc=f"feature shards {name}"):
            _write(target, shards[i].url, encode, load, dtype)
        if rank == 0:
            for shard in names:
                wait_until((target / shard).is_file, f"the feature shard {shard}")
            atomic_write_json(target / INDEX_FILE, {"key": key, "dtype": dtype, "shards": names})
        else:
            wait_until((target / INDEX_FILE).is_file, f"the index of {target}")
    logger.info(f"Feature shards '{name}': {target} ({len(names)} shards)")
    return [str(target / shard) for shard in names]
