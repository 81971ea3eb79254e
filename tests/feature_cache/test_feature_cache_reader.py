"""utils/feature_cache/reader.py: whole utterances and ranges of their frames, read from memory-mapped
shards; incomplete, truncated or foreign caches are refused."""

import json
import pickle

import numpy as np
import pytest
import torch
from helpers.feature_cache_helpers import build, tiny_encoder, write_corpus

from utils.feature_cache import FeatureCache, FeatureCacheError


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> FeatureCache:
    """A float16 cache of the test corpus, two utterances per shard or so."""
    folder = tmp_path_factory.mktemp("reader")
    return build(tiny_encoder(), write_corpus(folder), folder / "cache", dtype="float16", shard_bytes=8000)


def test_utterances_are_read_from_their_shards(cache):
    index = json.loads((cache.folder / "index.json").read_text())["entries"]  # uttid: [shard, row, frames]
    assert len({shard for shard, _, _ in index.values()}) > 1 and any(row > 0 for _, row, _ in index.values())
    for uttid, (_, _, frames) in index.items():
        assert uttid in cache and cache.num_frames(uttid) == frames
        assert cache[uttid].shape == (frames, cache.dim) and cache[uttid].dtype == torch.float32
    assert "missing" not in cache and len(cache) == 5


class RowRecorder:
    """A shard's memory map that records the rows sliced from it."""

    def __init__(self, rows: np.ndarray, sliced: list) -> None:
        self.rows, self.sliced = rows, sliced

    def __getitem__(self, index: slice) -> np.ndarray:
        part = self.rows[index]
        self.sliced.append(part.shape[0])
        return part


def test_frames_reads_only_a_range_of_one_utterance(cache, monkeypatch):
    sliced = []
    for uttid in ("utt0", "utt3", "utt4"):
        full, frames = cache[uttid], cache.num_frames(uttid)
        for shard, rows in list(cache._maps.items()):  # mapped by the read of the whole utterance
            monkeypatch.setitem(cache._maps, shard, RowRecorder(rows, sliced))
        for start, count in ((0, frames), (0, 22), (5, 22), (frames - 22, 22), (frames - 1, 1), (7, 0)):
            part = cache.frames(uttid, start, count)
            assert part.dtype == torch.float32 and part.shape == (count, cache.dim)
            assert torch.equal(part, full[start : start + count])
            assert sliced[-1] == count  # nothing else of the utterance is read
        monkeypatch.undo()
        for start, count in ((-1, 2), (0, frames + 1), (frames - 21, 22), (0, -1)):
            with pytest.raises(IndexError, match=f"out of the {frames} frames of '{uttid}'"):
                cache.frames(uttid, start, count)
    with pytest.raises(KeyError, match="not in the feature cache"):
        cache.frames("missing", 0, 1)


def test_a_pickled_cache_maps_its_shards_anew(cache):
    """What a spawned DataLoader worker receives: the index, not the memory maps (nor a copy of a shard)."""
    expected = cache["utt3"]
    copy = pickle.loads(pickle.dumps(cache))
    assert cache._maps and not copy._maps
    assert torch.equal(copy["utt3"], expected) and copy._maps


def test_incomplete_truncated_or_foreign_caches_are_refused(cache, tmp_path):
    folder = tmp_path / "copy"
    folder.mkdir()
    with pytest.raises(FeatureCacheError, match="not a complete feature cache"):
        FeatureCache(folder)
    for path in cache.folder.iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    with pytest.raises(FeatureCacheError, match=f"holds the cache of key {cache.key}, not other"):
        FeatureCache(folder, key="other")
    copy = FeatureCache(folder, key=cache.key)
    index = json.loads((folder / "index.json").read_text())
    shard, row, frames = index["entries"]["utt4"]
    data = folder / index["shards"][shard]
    data.write_bytes(data.read_bytes()[: (row + frames - 1) * cache.dim * 2])
    assert torch.equal(copy.frames("utt4", 0, frames - 1), cache.frames("utt4", 0, frames - 1))
    with pytest.raises(FeatureCacheError, match="truncated"):
        copy["utt4"]
    data.write_bytes(b"")
    with pytest.raises(FeatureCacheError, match="truncated"):
        FeatureCache(folder, key=cache.key)["utt4"]
