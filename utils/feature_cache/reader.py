"""Reading a complete feature cache: whole utterances or ranges of their frames, from memory-mapped shards
(mapped on first use in each process and never pickled, so a :class:`FeatureCache` can be used in
DataLoader workers as is, forked or spawned)."""

import json
import os
from pathlib import Path

import numpy as np
import torch

from utils.feature_cache.layout import DTYPES, INDEX_FILE, FeatureCacheError

__all__ = ["FeatureCache"]


class FeatureCache:
    """Read-only access to a complete cache folder: ``cache[uttid]`` -> (T, D) float32 features.

    Arguments
    ---------
    folder : a cache folder (``<feature_cache_folder>/<stage>-<key16>``) with its ``index.json``.
    key : the expected full key; a folder of another key raises :class:`FeatureCacheError`.

    Attributes
    ----------
    folder, key : as given (``key``: read from the index when not given).
    dim : D, the feature size.
    dtype : the storage dtype name (``float16`` or ``float32``).
    """

    def __init__(self, folder: str | os.PathLike, key: str | None = None) -> None:
        self.folder = Path(folder)
        index_file = self.folder / INDEX_FILE
        if not index_file.is_file():
            raise FeatureCacheError(f"{self.folder} is not a complete feature cache (no {INDEX_FILE})")
        index = json.loads(index_file.read_text())
        if key is not None and index["key"] != key:
            raise FeatureCacheError(f"{self.folder} holds the cache of key {index['key']}, not {key}")
        self.key: str = index["key"]
        self.dim = int(index["dim"])
        self.dtype: str = index["dtype"]
        self._np_dtype = np.dtype(DTYPES[self.dtype])
        self._shards = [self.folder / name for name in index["shards"]]
        self._entries: dict[str, list[int]] = index["entries"]  # uttid -> [shard, first row, frames]
        self._maps: dict[int, np.ndarray] = {}  # shard number -> (rows, D) read-only memory map

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_maps": {}}  # a worker maps the shards itself

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, uttid: object) -> bool:
        return uttid in self._entries

    def _entry(self, uttid: str) -> list[int]:
        """``[shard, first row, frames]`` of ``uttid``; a clear ``KeyError`` when it is not cached."""
        try:
            return self._entries[uttid]
        except KeyError:
            raise KeyError(f"utterance {uttid!r} is not in the feature cache {self.folder}") from None

    def num_frames(self, uttid: str) -> int:
        """T, the number of feature frames stored for ``uttid``."""
        return self._entry(uttid)[2]

    def __getitem__(self, uttid: str) -> torch.Tensor:
        """(T, D) float32 features of ``uttid`` (a fresh tensor)."""
        shard, row, frames = self._entry(uttid)
        return self._read(shard, row, frames, uttid)

    def frames(self, uttid: str, start: int, count: int) -> torch.Tensor:
        """(count, D) float32 features: frames ``start .. start + count - 1`` of ``uttid``, read alone.

        Equal to ``cache[uttid][start : start + count]`` without reading the rest of the utterance.

        Raises
        ------
        IndexError : the range does not lie within the utterance's T frames.
        """
        shard, row, frames = self._entry(uttid)
        if start < 0 or count < 0 or start + count > frames:
            raise IndexError(
                f"frames {start}..{start + count} (start {start}, count {count}) are out of the "
                f"{frames} frames of {uttid!r} in the feature cache {self.folder}"
            )
        return self._read(shard, row + start, count, uttid)

    def _read(self, shard: int, row: int, count: int, uttid: str) -> torch.Tensor:
        """(count, D) float32 rows ``row ..`` of shard number ``shard`` (``uttid`` names errors)."""
        if shard not in self._maps:
            path = self._shards[shard]
            rows = path.stat().st_size // (self.dim * self._np_dtype.itemsize)
            if rows == 0:  # nothing to map (numpy refuses empty files)
                raise FeatureCacheError(f"{path} is truncated (reading {uttid!r})")
            self._maps[shard] = np.memmap(path, dtype=self._np_dtype, mode="r", shape=(rows, self.dim))
        data = self._maps[shard][row : row + count]
        if data.shape[0] != count:
            raise FeatureCacheError(f"{self._shards[shard]} is truncated (reading {uttid!r})")
        return torch.from_numpy(data.astype(np.float32))
