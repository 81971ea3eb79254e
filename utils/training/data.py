"""The data pipeline every stage shares: manifests -> datasets of 16 kHz mono waveforms -> loader options.

Audio is read with soundfile, downmixed to mono and resampled on load, so the corpus itself is never
modified. With ``pcm16_audio`` (the original mode) it is then rounded to 16 bit in memory, as a 16-bit WAV
holds it (docs/deviations.md #1). An utterance cut from a longer file (Libri-Light) is read by offset. With
``train_shards`` the training set is read from WebDataset shards instead (:mod:`utils.training.shards`),
its items the same; valid and test stay on their manifests.
"""

import hashlib
import io
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from speechbrain.dataio.batch import PaddedBatch
from speechbrain.dataio.dataset import DynamicItemDataset
from speechbrain.dataio.sampler import DynamicBatchSampler
from speechbrain.utils.data_pipeline import provides, takes

from focalcodec.audio import load_audio_segment
from utils.corpus import SPLITS, as_prepared
from utils.corpus.audio import load_utterance
from utils.corpus.shards import decode_audio, resolve_shards, sample_meta
from utils.feature_cache import FEATURES_KEY
from utils.training.shards import ShardStream

__all__ = [
    "ItemSeeds",
    "TrainItems",
    "add_cached_crops",
    "add_cached_features",
    "add_shard_features",
    "dataio_prepare",
    "loader_kwargs",
    "shard_dataset",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainItems:
    """What a stage's training items hold (each a function of the loaded YAML).

    min_seconds : shorter training utterances are dropped (e.g. shorter than the decoder's crop).
    audio : with the feature cache, whether the waveform is read too (the decoder stage's target); without
        it a cached training set reads no audio at all.
    crop : with the feature cache, ``(frames, hop_length)`` of a crop read alone from the cache and the
        audio file (:func:`add_cached_crops`), or ``None`` for whole utterances.
    """

    min_seconds: Callable[[dict], float] = lambda hparams: 0.0
    audio: bool = True
    crop: Callable[[dict], tuple[int, int] | None] = lambda hparams: None


class ItemSeeds:
    """The random draws of the data pipeline (training crops), one generator per (seed, epoch, utterance).

    A crop then depends on nothing else: not on the loader process that reads the item, nor on what that
    process read before, so a run resumed mid-epoch, with any ``dataloader_workers``, draws the crops of the
    run it continues. The training Brain sets ``epoch`` before each epoch's loader starts (its worker
    processes start with a copy). Each utterance is read once per epoch, so its crop changes every epoch.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.epoch = 0

    def generator(self, uttid: str) -> torch.Generator:
        """A generator seeded by ``(seed, epoch, uttid)``."""
        digest = hashlib.blake2b(f"{self.seed}/{self.epoch}/{uttid}".encode(), digest_size=8).digest()
        return torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1)


def _random_segment(
    sig: torch.Tensor, segment_size: int, pad: bool, generator: torch.Generator | None = None
) -> torch.Tensor:
    """An optional random waveform crop of ``segment_size`` samples (zero-padded when shorter and ``pad``),
    drawn from ``generator`` (an item's, :class:`ItemSeeds`; shards: the loader process's)."""
    delta = segment_size - len(sig)
    if delta > 0 and pad:
        return torch.nn.functional.pad(sig, (0, delta))
    if delta < 0:
        start = int(torch.randint(-delta + 1, (), generator=generator))
        return sig[start : start + segment_size]
    return sig


def _audio_pipeline(
    sample_rate: int,
    segment_size: int | None = None,
    segment_pad: bool = False,
    pcm16: bool = False,
    seeds: ItemSeeds | None = None,
    cut: bool = False,
) -> Callable[..., torch.Tensor]:
    """A dynamic item ``id, wav -> sig`` (rounded to 16 bit with ``pcm16``, see :func:`as_prepared`), cut to a
    random ``segment_size`` crop drawn from ``seeds`` if given; with ``cut``, ``id, wav, segments -> sig``
    (utterances cut from longer files, read by offset)."""

    def read(uttid: str, wav: str, segments=None) -> torch.Tensor:
        sig = as_prepared(load_utterance(wav, sample_rate, segments), pcm16)
        if segment_size is not None:
            sig = _random_segment(sig, segment_size, segment_pad, seeds.generator(uttid))
        return sig

    return provides("sig")(takes("id", "wav", "segments")(read) if cut else takes("id", "wav")(read))


def _filter(
    dataset: DynamicItemDataset, stage: str, min_duration: float, max_duration: float, descending: bool
) -> DynamicItemDataset:
    """Keep utterances within ``[min_duration, max_duration]`` seconds (counts logged); sort by duration."""
    durations = [entry["duration"] for entry in dataset.data.values()]
    too_short = sum(d < min_duration for d in durations)
    too_long = sum(d > max_duration for d in durations)
    dataset = dataset.filtered_sorted(
        sort_key="duration",
        reverse=descending,
        key_min_value={"duration": min_duration},
        key_max_value={"duration": max_duration},
    )
    logger.info(
        f"{stage}: {len(dataset)} of {len(durations)} utterances kept "
        f"({too_short} shorter than {min_duration:g} s, {too_long} longer than {max_duration:g} s)"
    )
    if len(dataset) == 0:
        raise ValueError(
            f"The {stage} set is empty after filtering by duration [{min_duration:g}, {max_duration:g}] s: "
            f"check {stage}_json and {stage}_remove_if_longer"
        )
    return dataset


def _sorted_descending(hparams: dict, stage: str) -> bool:
    """Train follows ``sorting`` (random order comes from the sampler, over an ascending
    list); valid and test run longest first, except in ``--debug``."""
    if stage == "train":
        return hparams["sorting"] == "descending"
    return not hparams.get("debug", False)


def dataio_prepare(
    hparams: dict, seeds: ItemSeeds, train_min_duration: float = 0.0
) -> dict[str, DynamicItemDataset]:
    """Build the train/valid/test datasets from the JSON manifests.

    Arguments
    ---------
    hparams : the loaded YAML. Reads ``{stage}_json``, ``{stage}_remove_if_longer``, ``sample_rate``,
        ``data_folder``, ``segment_size``, ``segment_pad``, ``pcm16_audio`` and ``debug`` (optional).
    seeds : what the training crops (``segment_size``) are drawn from.
    train_min_duration : training utterances shorter than this (seconds) are dropped, e.g. shorter than
        the decoder stage's crop.

    Returns
    -------
    {"train": ..., "valid": ..., "test": ...}, each item giving ``id`` and ``sig`` (N,) at ``sample_rate``.
    """
    datasets = {}
    for stage in SPLITS:
        dataset = DynamicItemDataset.from_json(
            hparams[f"{stage}_json"], replacements={"data_root": hparams["data_folder"]}
        )
        dataset = _filter(
            dataset,
            stage,
            min_duration=train_min_duration if stage == "train" else 0.0,
            max_duration=hparams[f"{stage}_remove_if_longer"],
            descending=_sorted_descending(hparams, stage),
        )
        crop = hparams.get("segment_size") if stage == "train" else None
        dataset.add_dynamic_item(
            _audio_pipeline(
                hparams["sample_rate"],
                crop,
                hparams.get("segment_pad", False),
                hparams.get("pcm16_audio", False),
                seeds,
                cut=any("segments" in entry for entry in dataset.data.values()),
            )
        )
        dataset.set_output_keys(["id", "sig"])
        datasets[stage] = dataset
    if hparams.get("train_shards"):
        datasets["train"] = shard_dataset(hparams, train_min_duration)
    return datasets


def _shard_item(sample: dict, sample_rate: int, pcm16: bool, segment: tuple[int | None, bool]) -> dict:
    """A shard's raw sample as the manifest pipeline's item, ``{"id", "sig"}`` (:func:`dataio_prepare`)."""
    sig = as_prepared(decode_audio(sample, sample_rate), pcm16)
    if segment[0] is not None:
        sig = _random_segment(sig, *segment)
    return {"id": sample_meta(sample)["id"], "sig": sig}


def _shard_item_with_features(
    sample: dict, sample_rate: int, pcm16: bool, audio: bool, crop: tuple[int, int] | None
) -> dict:
    """A raw sample with its cached features as the feature cache's items (:func:`add_cached_features`,
    :func:`add_cached_crops`): ``{"id", "feats"}`` (+ ``"sig"`` with ``audio``), or a random crop of
    ``crop = (frames, hop_length)``, ``{"id", "crop_feats", "crop_sig"}``, drawn as there."""
    feats = torch.from_numpy(np.load(io.BytesIO(sample[FEATURES_KEY])).astype(np.float32))
    item = {"id": sample_meta(sample)["id"]}
    if crop is not None:
        frames, hop = crop
        start = int(torch.randint(feats.shape[0] - frames + 1, ()))
        sig = as_prepared(decode_audio(sample, sample_rate), pcm16)
        return {
            **item,
            "crop_feats": feats[start : start + frames],
            "crop_sig": sig[start * hop : (start + frames) * hop],
        }
    if audio:
        item["sig"] = as_prepared(decode_audio(sample, sample_rate), pcm16)
    return {**item, "feats": feats}


def add_shard_features(stream: ShardStream, urls: list[str], hparams: dict, train: TrainItems) -> None:
    """Serve a training set of shards with the feature shards ``urls`` beside them (the feature cache in
    shard form, :mod:`utils.feature_cache.shards`): the stage's cached items (``train``: with audio or not,
    crops read alone), as :func:`add_cached_features` and :func:`add_cached_crops` serve a cached manifest."""
    make_item = partial(
        _shard_item_with_features,
        sample_rate=hparams["sample_rate"],
        pcm16=hparams.get("pcm16_audio", False),
        audio=train.audio,
        crop=train.crop(hparams),
    )
    stream.add_features(urls, make_item)


def shard_dataset(hparams: dict, min_duration: float = 0.0) -> ShardStream:
    """The training set read from the shards of ``train_shards`` (an ``index.json`` or a brace pattern), the
    items those of :func:`dataio_prepare`: utterances within ``[min_duration, train_remove_if_longer]``,
    ``train_batch_size`` per batch, shuffled with a buffer of ``shard_buffer`` utterances, the order of
    each epoch drawn from ``seed``. ``sorting`` does not apply (the order is random)."""
    if hparams["dynamic_batching"]:
        raise ValueError("dynamic_batching is not available with train_shards: use train_batch_size")
    segment = (hparams.get("segment_size"), hparams.get("segment_pad", False))
    make_item = partial(
        _shard_item,
        sample_rate=hparams["sample_rate"],
        pcm16=hparams.get("pcm16_audio", False),
        segment=segment,
    )
    durations = (min_duration, hparams["train_remove_if_longer"])
    stream = ShardStream(
        resolve_shards(hparams["train_shards"], "train"),
        make_item,
        hparams["train_batch_size"],
        hparams["seed"],
        hparams.get("shard_buffer", 1000),
        durations,
        drop_last=segment[0] is not None and segment[1],
    )
    logger.info(f"train: {stream.num_utterances} utterances in {len(stream.shards)} shards")
    if stream.num_utterances == 0:
        raise ValueError(
            f"No training utterance of {hparams['train_shards']} lasts between {min_duration:g} s and "
            f"{hparams['train_remove_if_longer']:g} s (train_remove_if_longer)"
        )
    return stream


def add_cached_features(dataset: DynamicItemDataset, cache: Mapping[str, torch.Tensor], audio: bool) -> None:
    """Serve the frozen-encoder features of ``cache`` as the item ``feats`` (see utils/feature_cache/).

    Arguments
    ---------
    dataset : a dataset of :func:`dataio_prepare`.
    cache : uttid -> (T, D) float32 features, e.g. a ``FeatureCache``.
    audio : keep ``sig`` among the outputs (the decoder stage's target, valid/test references). Without
        it the audio is not even read.
    """

    @takes("id")
    @provides("feats")
    def pipeline(uttid: str) -> torch.Tensor:
        return cache[uttid]

    dataset.add_dynamic_item(pipeline)
    keys = [key for key in dataset.pipeline.output_mapping if audio or key != "sig"]
    dataset.set_output_keys([*keys, "feats"])


def add_cached_crops(
    dataset: DynamicItemDataset,
    cache,
    num_frames: int,
    hop_length: int,
    sample_rate: int,
    seeds: ItemSeeds,
    pcm16: bool = False,
) -> None:
    """Serve random training crops read alone: ``crop_feats`` (S, D) frames of the feature cache and the
    ``crop_sig`` (S * hop_length,) samples they stand for, read from the audio file by offset.

    The crop start is uniform over the utterance's valid starts ``0 .. T - S`` (``T`` its cached frame
    count), drawn from ``seeds`` (anew every epoch); frame ``i`` of the crop covers samples
    ``[i * hop, (i + 1) * hop)`` of the audio crop: the distribution and alignment of
    :func:`utils.training.crop.random_feature_crop` on a cached batch, without reading whole utterances.

    Arguments
    ---------
    dataset : the training dataset of :func:`dataio_prepare` (utterances shorter than a crop filtered out).
    cache : a ``FeatureCache`` (``num_frames(uttid)`` and ``frames(uttid, start, count)``).
    num_frames : crop length ``S`` in frames.
    hop_length : samples per frame at ``sample_rate``.
    sample_rate : rate of the audio crop.
    seeds : the generator of each item's draw (:class:`ItemSeeds`).
    pcm16 : round the audio crop to 16 bit (:func:`as_prepared`).

    An utterance cut from a longer file (Libri-Light's ``segments``) is read whole and then cropped.
    """

    def crop(uttid: str, wav: str, segments=None):
        start = int(
            torch.randint(cache.num_frames(uttid) - num_frames + 1, (), generator=seeds.generator(uttid))
        )
        yield cache.frames(uttid, start, num_frames)
        first, stop = start * hop_length, (start + num_frames) * hop_length
        if segments:
            yield as_prepared(load_utterance(wav, sample_rate, segments)[first:stop], pcm16)
        else:
            yield as_prepared(load_audio_segment(wav, first, stop, sample_rate), pcm16)

    cut = any("segments" in entry for entry in dataset.data.values())
    pipeline = provides("crop_feats", "crop_sig")(takes("id", "wav", *(["segments"] if cut else []))(crop))
    dataset.add_dynamic_item(pipeline)
    dataset.set_output_keys(["id", "crop_feats", "crop_sig"])


def loader_kwargs(hparams: dict, stage: str, dataset: DynamicItemDataset, device: str) -> dict:
    """DataLoader options for one stage.

    Fixed batches (``{stage}_batch_size``; train shuffled when ``sorting: random``) or, with
    ``dynamic_batching``, SpeechBrain's DynamicBatchSampler bounded by ``{stage}_max_batch_length`` seconds.
    A training set of shards makes its own batches (:class:`~utils.training.shards.ShardLoader`).
    """
    if isinstance(dataset, ShardStream):
        return {"num_workers": hparams["dataloader_workers"], "pin_memory": device != "cpu"}
    kwargs = {"num_workers": hparams["dataloader_workers"], "collate_fn": PaddedBatch}
    if hparams["dynamic_batching"]:
        kwargs["batch_sampler"] = DynamicBatchSampler(
            dataset,
            max_batch_length=hparams[f"{stage}_max_batch_length"],
            num_buckets=hparams["num_buckets"],
            length_func=lambda x: x["duration"],
            shuffle=False,
            batch_ordering=hparams["sorting"] if stage == "train" else "descending",
            max_batch_ex=hparams["max_batch_size"],
        )
        return kwargs
    kwargs["batch_size"] = hparams[f"{stage}_batch_size"]
    kwargs["pin_memory"] = device != "cpu"
    if stage == "train":
        kwargs["shuffle"] = hparams["sorting"] == "random"
        kwargs["drop_last"] = hparams.get("segment_size") is not None and hparams.get("segment_pad", False)
    return kwargs
