"""Training from WebDataset shards (utils/corpus/shards/): a stream of batches planned per epoch
(:mod:`utils.training.shard_plan`) and a DataLoader that checkpoints its position inside an epoch.

Each DataLoader worker reads its pieces of shards in order (WebDataset's tar reader), passes the raw
samples through a shuffle buffer seeded by ``(seed, epoch, process, worker)`` (WebDataset's ``shuffle``),
groups them into its planned batches, and only then decodes them. The order of an epoch is therefore a
function of the seed, the epoch, the number of processes and of workers: rerunning it gives the same
batches. Resuming inside an epoch (an intra-epoch checkpoint) replays the workers' streams up to the
batches already trained on without decoding them, and goes on from there.
"""

import itertools
import json
import random
from collections.abc import Callable, Iterator

import numpy as np
import torch
import webdataset as wds
from speechbrain.dataio.batch import PaddedBatch
from speechbrain.utils.checkpoints import mark_as_loader, mark_as_saver, register_checkpoint_hooks
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from utils.corpus.shards import Shard, shard_samples
from utils.feature_cache import FEATURES_KEY
from utils.training.shard_plan import plan_portion, served_per_worker

__all__ = ["ShardLoader", "ShardStream"]


def _with_features(samples: Iterator[dict], features: Iterator[dict]) -> Iterator[dict]:
    """Each sample with the features of the same key from the feature shard read alongside."""
    for sample, extra in zip(samples, features, strict=True):
        if extra["__key__"] != sample["__key__"]:
            raise ValueError(
                f"{extra['__url__']} does not follow {sample['__url__']}: rebuild the feature shards"
            )
        yield {**sample, FEATURES_KEY: extra[FEATURES_KEY]}


class ShardStream(IterableDataset):
    """The training batches of one process, read from shards (lists of items, collated by the loader).

    Arguments
    ---------
    shards : the shards (``utils.corpus.shards.resolve_shards``), with each utterance's duration.
    make_item : a raw WebDataset sample -> the item a stage trains on (``{"id", "sig", ...}``); called in
        the DataLoader workers, after batching.
    batch_size : utterances per batch.
    seed : seeds the epoch's shard order and the shuffle buffers.
    buffer : the shuffle buffer, in utterances (0 or 1: the shards' own order).
    durations : ``(min, max)`` seconds: utterances outside are left out (planned from the index).
    drop_last : only full batches.
    """

    def __init__(
        self,
        shards: list[Shard],
        make_item: Callable[[dict], dict],
        batch_size: int,
        seed: int,
        buffer: int,
        durations: tuple[float, float] = (0.0, float("inf")),
        drop_last: bool = False,
    ) -> None:
        super().__init__()
        self.shards = list(shards)
        low, high = durations
        self.kept = [
            np.flatnonzero((np.array(s.durations) >= low) & (np.array(s.durations) <= high)) for s in shards
        ]
        self.make_item, self.batch_size, self.seed, self.buffer = make_item, batch_size, seed, buffer
        self.drop_last = drop_last
        self.epoch, self.rank, self.world_size, self.skip = 1, 0, 1, 0
        self.feature_urls: list[str] | None = None

    def add_features(self, urls: list[str], make_item: Callable[[dict], dict]) -> None:
        """Read each sample with its features (``feats.npy``) from the feature shard beside its shard
        (``urls``, in the order of the shards; utils/feature_cache/shards.py), made into items by
        ``make_item``."""
        self.feature_urls, self.make_item = list(urls), make_item

    @property
    def num_utterances(self) -> int:
        """Utterances kept within the duration bounds (over all processes)."""
        return sum(len(kept) for kept in self.kept)

    def _plan(self, worker: int, workers: int):
        return plan_portion(
            [len(kept) for kept in self.kept], self.seed, self.epoch, self.rank, self.world_size, worker,
            workers, batch_size=self.batch_size, drop_last=self.drop_last,
        )  # fmt: skip

    def __len__(self) -> int:
        """Batches per process in an epoch (the same on every process)."""
        return len(self._plan(0, 1)[0].batch_sizes)

    def _samples(self, pieces) -> Iterator[dict]:
        """The raw samples of ``pieces`` in order, each shard read only up to its last one needed."""
        for shard, first, stop in pieces:
            wanted = set(self.kept[shard][first:stop].tolist())
            last = self.kept[shard][stop - 1]
            samples = shard_samples(self.shards[shard].url)
            if self.feature_urls is not None:
                samples = _with_features(samples, shard_samples(self.feature_urls[shard]))
            for position, sample in enumerate(samples):
                if position in wanted:
                    yield sample
                if position >= last:
                    break

    def __iter__(self) -> Iterator[list[dict]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        portion, per_worker = self._plan(worker, workers)
        skip = served_per_worker(per_worker, self.skip)[worker]
        rng = random.Random(f"{self.seed}/{self.epoch}/{self.rank}/{worker}")
        samples = self._samples(portion.pieces)
        if self.buffer > 1:
            samples = wds.shuffle(self.buffer, self.buffer, rng=rng)(samples)
        for index, size in enumerate(portion.batch_sizes):
            group = list(itertools.islice(samples, size))
            if len(group) < size:
                urls = ", ".join(self.shards[shard].url for shard, _, _ in portion.pieces)
                raise ValueError(f"the shards hold fewer utterances than their index says: {urls}")
            if index >= skip:  # a batch trained on before a resume is read, not decoded
                yield [self.make_item(sample) for sample in group]


@register_checkpoint_hooks
class ShardLoader(DataLoader):
    """A DataLoader of a :class:`ShardStream` (batches collated by SpeechBrain's ``PaddedBatch``), which is
    told the epoch (``set_epoch``, as SpeechBrain tells its samplers) and the process's rank, and saves in
    an intra-epoch checkpoint ``{"epoch", "batches"}``: the epoch and the batches served in it, from
    which the next run's iteration of that epoch resumes (:class:`ShardStream` replays the rest)."""

    def __init__(self, stream: ShardStream, **kwargs) -> None:
        super().__init__(stream, batch_size=None, collate_fn=PaddedBatch, **kwargs)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            stream.rank, stream.world_size = torch.distributed.get_rank(), torch.distributed.get_world_size()
        self.position = [stream.epoch, 0]
        self._resume: tuple[int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.dataset.epoch = epoch

    def __iter__(self) -> Iterator[PaddedBatch]:
        stream = self.dataset
        stream.skip = self._resume[1] if self._resume and self._resume[0] == stream.epoch else 0
        self._resume = None
        self.position = [stream.epoch, stream.skip]
        for batch in super().__iter__():
            self.position[1] += 1
            yield batch

    @mark_as_saver
    def _save(self, path) -> None:
        with open(path, "w", encoding="utf-8") as stream:
            json.dump({"epoch": self.position[0], "batches": self.position[1]}, stream)

    @mark_as_loader
    def _load(self, path, end_of_epoch: bool) -> None:
        if end_of_epoch:  # the next epoch starts afresh
            return
        with open(path, encoding="utf-8") as stream:
            saved = json.load(stream)
        self._resume = (int(saved["epoch"]), int(saved["batches"]))
