"""Training batches read from shards (utils/training/shards.py): an epoch reads the manifest's utterances
once, shared by processes with unequal shards, in an order that follows the seed, resumable inside an
epoch."""

import pytest
import torch

from utils.corpus.audio import load_utterance
from utils.training.data import shard_dataset
from utils.training.shards import ShardLoader


@pytest.fixture(scope="module")
def shards(small_shards):
    return small_shards


def stream(index, batch_size=2, buffer=4, **changes):
    hparams = {"train_shards": str(index), "dynamic_batching": False, "sample_rate": 16000, "seed": 0}
    hparams.update(train_batch_size=batch_size, shard_buffer=buffer, train_remove_if_longer=60.0)
    hparams.update(changes)
    return shard_dataset(hparams)


def epoch_ids(loader, epoch=1) -> list[list[str]]:
    loader.set_epoch(epoch)
    return [list(batch.id) for batch in loader]


def test_an_epoch_reads_every_utterance_of_the_manifest_once(shards):
    index, entries = shards
    loader = ShardLoader(stream(index))
    batches = list(loader)
    assert sorted(uttid for batch in batches for uttid in batch.id) == sorted(entries)
    assert len(batches) == len(loader) == 3
    for batch in batches:  # the items of the manifest pipeline: the same audio
        for uttid, sig, length in zip(batch.id, batch.sig.data, batch.sig.lengths, strict=True):
            expected = load_utterance(entries[uttid].wav, 16000)
            assert torch.equal(sig[: round(float(length) * sig.shape[0])], expected)


def test_utterances_outside_the_duration_bounds_are_left_out(shards):
    index, entries = shards
    longest = max(entry.duration for entry in entries.values())
    ids = [
        uttid
        for batch in ShardLoader(stream(index, train_remove_if_longer=longest - 1e-3))
        for uttid in batch.id
    ]
    assert sorted(ids) == sorted(uttid for uttid, entry in entries.items() if entry.duration < longest)


@pytest.mark.parametrize("workers", [0, 2])
def test_two_processes_with_unequal_shards_share_an_epoch(shards, workers):
    index, entries = shards
    seen = []
    for rank in (0, 1):
        data = stream(index)
        data.rank, data.world_size = rank, 2
        seen.append(epoch_ids(ShardLoader(data, num_workers=workers)))
    assert len(seen[0]) == len(seen[1]) == 2  # 3 utterances each, in batches of 2 and 1
    ids = [{uttid for batch in batches for uttid in batch} for batches in seen]
    assert not ids[0] & ids[1] and ids[0] | ids[1] == set(entries)


def test_the_order_follows_the_seed_and_the_epoch(shards):
    index, _ = shards
    loader = ShardLoader(stream(index))
    assert epoch_ids(loader, 1) == epoch_ids(loader, 1) != epoch_ids(loader, 2)
    assert epoch_ids(ShardLoader(stream(index, seed=1)), 1) != epoch_ids(loader, 1)


def test_an_epoch_resumes_after_the_batches_already_served(shards, tmp_path):
    index, _ = shards
    whole = epoch_ids(ShardLoader(stream(index, batch_size=1), num_workers=2), 2)
    interrupted = ShardLoader(stream(index, batch_size=1), num_workers=2)
    interrupted.set_epoch(2)
    iterator = iter(interrupted)
    assert [list(next(iterator).id) for _ in range(4)] == whole[:4]
    interrupted._save(tmp_path / "loader.ckpt")  # what an intra-epoch checkpoint saves
    resumed = ShardLoader(stream(index, batch_size=1), num_workers=2)
    resumed._load(tmp_path / "loader.ckpt", end_of_epoch=False)
    assert epoch_ids(resumed, 2) == whole[4:]
    assert epoch_ids(resumed, 2) == whole  # the next iteration is a whole epoch again
