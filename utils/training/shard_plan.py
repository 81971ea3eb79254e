"""Which utterances of a set of shards each process and each DataLoader worker reads in an epoch, in which
batches: every utterance once per epoch, the same number of batches on every process.

WebDataset's own ways of splitting shards over processes either keep each utterance once but give
processes unequal numbers of batches when shards hold different numbers of utterances (a DDP run then
hangs at the end of an epoch), or resample shards with replacement to a nominal epoch length. Here every
process plans the epoch alike from the shard index (utterance counts and durations, no shard opened):

1. the shards are put in a random order drawn from ``(seed, epoch)``, their kept utterances (within the
   stage's duration bounds) making one sequence of ``N``;
2. process ``r`` of ``W`` takes a contiguous run of ``N // W`` or ``N // W + 1`` of them (so it reads
   whole shards but for at most two it shares with its neighbours);
3. every process makes ``K = ceil(ceil(N / W) / B)`` batches: full batches of ``B``, the last ones smaller
   where a process has fewer utterances (each at least one); only when that is impossible (fewer
   utterances than batches: ``B`` = 1 and ``N`` not a multiple of ``W``) are the ``N mod W`` last ones left
   for another epoch. With ``drop_last`` every process makes ``(N // W) // B`` full batches;
4. a process's batches go to its DataLoader workers in contiguous blocks (sizes differing by at most one,
   the first workers' larger), which the DataLoader serves round robin.
"""

import math
from typing import NamedTuple

import numpy as np

__all__ = ["Portion", "batch_sizes", "plan_portion", "rank_batches", "served_per_worker"]


class Portion(NamedTuple):
    """What one worker of one process reads in an epoch.

    pieces : ``(shard number, first, stop)``: kept utterances ``first .. stop - 1`` of that shard (counted
        among its kept ones), in reading order.
    batch_sizes : the sizes of the worker's batches, in order (they sum to the pieces' utterances).
    """

    pieces: tuple[tuple[int, int, int], ...]
    batch_sizes: tuple[int, ...]


def batch_sizes(count: int, batches: int, batch_size: int) -> list[int]:
    """``batches`` sizes summing to ``count``, each at most ``batch_size`` and at least one: full batches
    first (``count`` must lie in ``[batches, batches * batch_size]``)."""
    sizes = []
    for index in range(batches):
        sizes.append(min(batch_size, count - (batches - index - 1)))
        count -= sizes[-1]
    return sizes


def rank_batches(total: int, world_size: int, batch_size: int, drop_last: bool) -> tuple[list[int], int]:
    """``(utterances of each process, batches per process)`` for ``total`` utterances (see step 3)."""
    if total < world_size:
        raise ValueError(
            f"{total} training utterances cannot be shared by {world_size} processes: use fewer processes "
            "or more data"
        )
    even = total // world_size
    if drop_last:
        if even < batch_size:
            raise ValueError(f"{even} utterances per process make no full batch of {batch_size} (drop_last)")
        return [even // batch_size * batch_size] * world_size, even // batch_size
    counts = [even + (rank < total % world_size) for rank in range(world_size)]
    batches = math.ceil(max(counts) / batch_size)
    if min(counts) < batches:  # some process cannot fill that many batches: leave the remainder out
        counts, batches = [even] * world_size, math.ceil(even / batch_size)
    return counts, batches


def _pieces(kept: list[int], order: np.ndarray, first: int, stop: int) -> tuple[tuple[int, int, int], ...]:
    """The utterances ``first .. stop - 1`` of the epoch's sequence as ``(shard, first, stop)`` pieces."""
    pieces, offset = [], 0
    for shard in order:
        count = kept[shard]
        lo, hi = max(first, offset), min(stop, offset + count)
        if lo < hi:
            pieces.append((int(shard), lo - offset, hi - offset))
        offset += count
        if offset >= stop:
            break
    return tuple(pieces)


def plan_portion(
    kept: list[int], seed: int, epoch: int, rank: int, world_size: int, worker: int, workers: int, **batching
) -> tuple[Portion, list[int]]:
    """The portion of worker ``worker`` (of ``workers``) of process ``rank`` (of ``world_size``) in
    ``epoch``, and the number of batches of every worker of that process.

    ``kept``: the number of utterances each shard contributes (in index order); ``batching``:
    ``batch_size`` and ``drop_last``.
    """
    order = np.random.default_rng([seed, epoch]).permutation(len(kept))
    counts, batches = rank_batches(sum(kept), world_size, batching["batch_size"], batching["drop_last"])
    sizes = batch_sizes(counts[rank], batches, batching["batch_size"])
    start = sum(counts[:rank])
    per_worker = [batches // workers + (w < batches % workers) for w in range(workers)]
    first_batch = sum(per_worker[:worker])
    mine = sizes[first_batch : first_batch + per_worker[worker]]
    first = start + sum(sizes[:first_batch])
    return Portion(_pieces(kept, order, first, first + sum(mine)), tuple(mine)), per_worker


def served_per_worker(per_worker: list[int], served: int) -> list[int]:
    """How many batches each worker had given when the DataLoader had served ``served`` batches: it serves
    them round robin (worker 0's first, worker 1's first, ..., worker 0's second, ...), skipping workers
    that have no more."""
    given = [0] * len(per_worker)
    for _ in range(served):
        worker = min(range(len(per_worker)), key=lambda w: (given[w] >= per_worker[w], given[w], w))
        given[worker] += 1
    return given
