"""utils/feature_cache/build.py: a built cache equals the encoder, an interrupted build resumes shard by
shard, the disk check, and DDP ranks (threads here) building their shares without collectives."""

import json
import shutil
import threading
from types import SimpleNamespace

import pytest
import torch
from helpers.feature_cache_helpers import CallCounter, build, reference_feats, tiny_encoder, write_corpus

import utils.feature_cache.build as build_module
from utils.feature_cache import FeatureCache, FeatureCacheError


@pytest.fixture
def corpus(tmp_path) -> dict[str, dict]:
    return write_corpus(tmp_path)


def test_float32_cache_equals_the_encoder(corpus, tmp_path):
    encoder = tiny_encoder()
    cache = build(encoder, corpus, tmp_path / "cache")
    assert len(cache) == len(corpus) and cache.dim == 64
    for uttid, entry in corpus.items():
        feats = cache[uttid]
        assert feats.dtype == torch.float32 and feats.shape == (cache.num_frames(uttid), 64)
        assert torch.equal(feats, reference_feats(encoder, entry["wav"]))
    with pytest.raises(KeyError, match="not in the feature cache"):
        cache["missing"]
    meta = json.loads((cache.folder / "meta.json").read_text())
    assert meta["key"] == cache.key and meta["num_utterances"] == len(corpus)


def test_float16_cache_is_close_to_the_encoder(corpus, tmp_path):
    encoder = tiny_encoder()
    cache = build(encoder, corpus, tmp_path / "cache", dtype="float16")
    for uttid, entry in corpus.items():
        feats, reference = cache[uttid], reference_feats(encoder, entry["wav"])
        assert feats.dtype == torch.float32 and feats.shape == reference.shape
        torch.testing.assert_close(feats, reference, rtol=1e-3, atol=1e-3 * float(reference.abs().max()))
        assert torch.equal(feats, reference.half().float())
    shard = next((tmp_path / "cache").glob("train-*/shard-00000.bin"))
    frames = sum(cache.num_frames(uttid) for uttid in corpus)
    assert shard.stat().st_size == frames * 64 * 2  # float16 on disk


def test_bad_arguments_are_refused(corpus, tmp_path):
    with pytest.raises(ValueError, match="dtype must be one of float16, float32"):
        build(tiny_encoder(), corpus, tmp_path / "cache", dtype="bfloat16")
    with pytest.raises(ValueError, match="no utterances to cache"):
        build(tiny_encoder(), {}, tmp_path / "cache")


def test_an_interrupted_build_resumes(corpus, tmp_path):
    root = tmp_path / "cache"
    encoder = tiny_encoder()
    counter = CallCounter(encoder, fail_at=4)
    with pytest.raises(KeyboardInterrupt):
        build(encoder, corpus, root, shard_bytes=1)  # one utterance per shard
    counter.remove()
    (folder,) = root.glob("train-*")
    assert not (folder / "index.json").exists()
    assert {p.name for p in folder.glob("shard-*.json")} == {f"shard-0000{i}.json" for i in range(3)}
    assert not (folder / "shard-00003.bin").exists()  # the shard being written: not under its name
    assert not list(folder.glob("*partial*"))  # nor left half-written
    with pytest.raises(FeatureCacheError, match="not a complete feature cache"):
        FeatureCache(folder)

    # A complete shard whose data was damaged since is recomputed too, and so is a data file a hard kill
    # left without its marker (between the rename and the marker)
    (folder / "shard-00001.bin").write_bytes(b"")
    (folder / "shard-00003.bin").write_bytes(b"\0" * 64 * 4 * 10)
    counter = CallCounter(encoder)
    resumed = build(encoder, corpus, root, shard_bytes=1)
    assert counter.calls == len(corpus) - 3 + 1
    counter.remove()
    fresh = build(encoder, corpus, tmp_path / "fresh", shard_bytes=1)
    assert resumed.folder == folder
    for uttid in corpus:
        assert torch.equal(resumed[uttid], fresh[uttid])
    assert not list(folder.glob("*partial*"))


def test_a_build_resumed_with_another_shard_size_rebuilds_the_shards_that_differ(corpus, tmp_path):
    root = tmp_path / "cache"
    encoder = tiny_encoder()
    first = build(encoder, corpus, root, shard_bytes=1)
    (first.folder / "index.json").unlink()  # as if interrupted before the index
    counter = CallCounter(encoder)
    cache = build(encoder, corpus, root, shard_bytes=10**9)  # one shard: shard 0 now holds every utterance
    assert counter.calls == len(corpus) and cache.folder == first.folder
    assert len(cache) == len(corpus)
    for uttid, entry in corpus.items():
        assert torch.equal(cache[uttid], reference_feats(encoder, entry["wav"]))


def test_not_enough_disk_space_is_refused_before_any_work(corpus, tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(free=1000))
    encoder = tiny_encoder()
    counter = CallCounter(encoder)
    with pytest.raises(FeatureCacheError, match=r"Not enough disk space .* float16"):
        build(encoder, corpus, tmp_path / "cache")
    assert counter.calls == 0
    assert not list((tmp_path / "cache").glob("*/shard-*"))


def test_a_folder_of_another_key_is_refused(corpus, tmp_path):
    encoder = tiny_encoder()
    folder = build(encoder, corpus, tmp_path / "cache").folder
    (folder / "index.json").unlink()
    (folder / "meta.json").write_text(json.dumps({"key": "another"}))
    with pytest.raises(FeatureCacheError, match="another key"):
        build(encoder, corpus, tmp_path / "cache")


def two_ranks(corpus, root, monkeypatch, rank1_waits_for_rank0: bool = False) -> tuple[list, list]:
    """Build the cache as ranks 0 (this thread) and 1 (another thread) of a group of 2, each with its own
    encoder (the same weights); returns each rank's cache and encoder call count. With
    ``rank1_waits_for_rank0``, rank 1 encodes only once rank 0 waits for the other shards."""
    monkeypatch.setattr(build_module, "POLL_SECONDS", 0.01)
    rank1 = {}
    monkeypatch.setattr(build_module, "rank_and_world_size", lambda: (rank1.get(threading.get_ident(), 0), 2))
    rank0_waits, rank0_failed = threading.Event(), threading.Event()
    wait_until = build_module.wait_until

    def waiting(ready, what):
        rank0_waits.set()
        wait_until(lambda: rank0_failed.is_set() or ready(), what)
        if rank0_failed.is_set():
            raise RuntimeError("rank 0 failed")

    monkeypatch.setattr(build_module, "wait_until", waiting)
    encoders = [tiny_encoder(), tiny_encoder()]
    before = (lambda: rank0_waits.wait(timeout=30)) if rank1_waits_for_rank0 else None
    counters = [CallCounter(encoders[0]), CallCounter(encoders[1], before=before)]
    caches, errors = [None, None], []

    def run_rank1() -> None:
        rank1[threading.get_ident()] = 1
        try:
            caches[1] = build(encoders[1], corpus, root, shard_bytes=1)
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    thread = threading.Thread(target=run_rank1, daemon=True)
    thread.start()
    try:
        caches[0] = build(encoders[0], corpus, root, shard_bytes=1)
    except BaseException:
        rank0_failed.set()
        rank0_waits.set()
        raise
    finally:
        thread.join(timeout=60)
    assert not errors and not thread.is_alive(), errors
    return caches, [counter.calls for counter in counters]


def test_two_ranks_build_their_shares_and_wait_for_the_index(corpus, tmp_path, monkeypatch):
    caches, calls = two_ranks(corpus, tmp_path / "cache", monkeypatch)
    assert calls == [3, 2]  # shards 0, 2, 4 and 1, 3: one utterance each
    assert caches[0].folder == caches[1].folder and len(caches[1]) == len(corpus)
    assert len(list(caches[0].folder.glob("shard-*.json"))) == len(corpus)
    encoder = tiny_encoder()
    for uttid, entry in corpus.items():
        assert torch.equal(caches[1][uttid], reference_feats(encoder, entry["wav"]))


def test_rank_0_waits_for_a_damaged_shard_of_another_rank_to_be_rebuilt(corpus, tmp_path, monkeypatch):
    root = tmp_path / "cache"
    folder = build(tiny_encoder(), corpus, root, shard_bytes=1).folder
    (folder / "index.json").unlink()
    (folder / "shard-00003.bin").write_bytes(b"")  # rank 1's, with its (now stale) marker still there
    # Rank 1 rebuilds it only once rank 0 waits: rank 0 must not take the stale marker for a complete shard
    caches, calls = two_ranks(corpus, root, monkeypatch, rank1_waits_for_rank0=True)
    assert calls == [0, 1]
    encoder = tiny_encoder()
    for uttid, entry in corpus.items():
        assert torch.equal(caches[0][uttid], reference_feats(encoder, entry["wav"]))
