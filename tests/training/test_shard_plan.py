"""The epoch plan of training from shards (utils/training/shard_plan.py): every utterance once, the same
number of batches on every process, whatever the shard sizes, processes and workers."""

import pytest

from utils.training.shard_plan import batch_sizes, plan_portion, rank_batches, served_per_worker


def utterances(kept, portion) -> list[tuple[int, int]]:
    """``(shard, index among its kept utterances)`` of every utterance a portion reads, in order."""
    return [(shard, i) for shard, first, stop in portion.pieces for i in range(first, stop)]


def plan_epoch(kept, world_size, workers, batch_size, epoch=1, drop_last=False):
    """Every worker's portion of every process: ``{rank: [portion of worker 0, ...]}``."""
    return {
        rank: [
            plan_portion(
                kept, 7, epoch, rank, world_size, worker, workers, batch_size=batch_size, drop_last=drop_last
            )[0]
            for worker in range(workers)
        ]
        for rank in range(world_size)
    }


@pytest.mark.parametrize(
    ("kept", "world_size", "workers", "batch_size"),
    [
        ([5, 1], 2, 1, 2),  # deliberately unequal shards: 4 + 2 with a shard-level split would hang
        ([13], 2, 1, 2),  # one process has 7 utterances, the other 6: both 4 batches (2,2,2,1 / 2,2,1,1)
        ([3, 9, 1, 4], 3, 2, 2),
        ([10, 10, 1], 4, 3, 3),
        ([1] * 9, 2, 4, 16),  # fewer batches than workers
        ([40, 3, 7], 1, 2, 5),
    ],
)
def test_each_utterance_once_and_equal_batches(kept, world_size, workers, batch_size):
    plans = plan_epoch(kept, world_size, workers, batch_size)
    seen = [u for portions in plans.values() for portion in portions for u in utterances(kept, portion)]
    assert sorted(seen) == [(shard, i) for shard, count in enumerate(kept) for i in range(count)]
    batches = {rank: sum(len(p.batch_sizes) for p in portions) for rank, portions in plans.items()}
    assert len(set(batches.values())) == 1, batches
    for portions in plans.values():
        for portion in portions:
            assert sum(portion.batch_sizes) == len(utterances(kept, portion))
            assert all(1 <= size <= batch_size for size in portion.batch_sizes)


def test_an_impossible_split_leaves_fewer_than_one_per_process_out():
    """Batch size 1 and 5 utterances on 2 processes: 2 batches each, one utterance waits for the next
    epoch (another one each epoch: the order is drawn anew)."""
    plans = plan_epoch([5], 2, 1, 1)
    assert [len(portions[0].batch_sizes) for portions in plans.values()] == [2, 2]
    left_out = {
        epoch: set(range(5))
        - {i for ps in plan_epoch([5], 2, 1, 1, epoch).values() for _, i in utterances([5], ps[0])}
        for epoch in range(1, 4)
    }
    assert all(len(out) == 1 for out in left_out.values())


def test_drop_last_makes_full_batches_only():
    plans = plan_epoch([7, 6], 2, 2, 3, drop_last=True)
    sizes = [size for portions in plans.values() for portion in portions for size in portion.batch_sizes]
    assert sizes == [3] * 4


def test_the_shard_order_follows_the_seed_and_epoch():
    kept = [2] * 6
    first = [utterances(kept, plan_epoch(kept, 1, 1, 2, epoch)[0][0]) for epoch in (1, 1, 2)]
    assert first[0] == first[1] != first[2]


def test_batch_sizes_fill_full_batches_first():
    assert batch_sizes(7, 4, 2) == [2, 2, 2, 1]
    assert batch_sizes(6, 4, 2) == [2, 2, 1, 1]
    assert batch_sizes(32, 2, 16) == [16, 16]


def test_rank_batches_refuses_more_processes_than_utterances():
    with pytest.raises(ValueError, match="cannot be shared by 4 processes"):
        rank_batches(3, 4, 2, False)


def test_served_per_worker_follows_the_round_robin_of_a_dataloader():
    per_worker = [3, 3, 2]
    order = [w for j in range(3) for w in range(3) if j < per_worker[w]]  # w0 w1 w2 w0 w1 w2 w0 w1
    for served in range(len(order) + 1):
        expected = [sum(1 for w in order[:served] if w == worker) for worker in range(3)]
        assert served_per_worker(per_worker, served) == expected
