"""The feature cache in the training recipe: the YAML options (``feature_cache*``), their checks, and the
caches of the stages built (or reused) before training."""

from collections.abc import Mapping, Sequence
from numbers import Real
from typing import Any

import torch

from utils.corpus import as_prepared
from utils.corpus.audio import load_utterance
from utils.corpus.shards import Shard, decode_audio
from utils.feature_cache.build import DEFAULT_SHARD_BYTES, build_feature_cache
from utils.feature_cache.key import encoder_config, manifest_entries
from utils.feature_cache.layout import DEFAULT_DTYPE, DTYPES
from utils.feature_cache.reader import FeatureCache
from utils.feature_cache.shards import build_feature_shards
from utils.runs import encoder_fingerprint

__all__ = ["check_feature_cache_options", "prepare_feature_caches", "prepare_feature_shards", "shard_bytes"]

# Defaults of the options a YAML may leave out
DEFAULT_STAGES = ("train",)
MB = 2**20
DEFAULT_SHARD_MB = DEFAULT_SHARD_BYTES / MB
STAGES = ("train", "valid", "test")


def check_feature_cache_options(hparams: Mapping[str, Any]) -> None:
    """Refuse settings that change the waveform before the encoder, which cached features cannot follow,
    and malformed ``feature_cache_*`` options. Does nothing without ``feature_cache: True``.

    Raises
    ------
    ValueError : ``feature_cache`` together with ``augment`` or a data-pipeline ``segment_size`` crop, an
        unknown ``feature_cache_dtype`` / ``feature_cache_stages`` entry, or a ``feature_cache_shard_mb``
        that is not a positive number.
    """
    if not hparams.get("feature_cache", False):
        return
    if hparams.get("augment", False):
        raise ValueError(
            "feature_cache: True cannot be combined with augment: True. Waveform augmentation changes the "
            "encoder input at every step, so the encoder features cannot be cached. Turn one of them off "
            "(--augment False, or --feature_cache False to compute the features on the fly)."
        )
    if hparams.get("segment_size") is not None:
        raise ValueError(
            "feature_cache: True cannot be combined with segment_size (a random waveform crop before the "
            "encoder): the cache holds whole-utterance features. Use --segment_size null, or "
            "--feature_cache False."
        )
    dtype = hparams.get("feature_cache_dtype", DEFAULT_DTYPE)
    if dtype not in DTYPES:
        raise ValueError(f"feature_cache_dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    unknown = [stage for stage in hparams.get("feature_cache_stages", DEFAULT_STAGES) if stage not in STAGES]
    if unknown:
        raise ValueError(f"feature_cache_stages may hold {', '.join(STAGES)}, got {unknown}")
    size = hparams.get("feature_cache_shard_mb", DEFAULT_SHARD_MB)
    if isinstance(size, bool) or not isinstance(size, Real) or not size > 0:
        raise ValueError(f"feature_cache_shard_mb must be a positive number of MB (2^20 bytes), got {size!r}")


def shard_bytes(hparams: Mapping[str, Any]) -> int:
    """The shard size in bytes from ``feature_cache_shard_mb`` (MB of 2^20 bytes; at least 1 byte)."""
    return max(1, round(hparams.get("feature_cache_shard_mb", DEFAULT_SHARD_MB) * MB))


def _cached_module(hparams: Mapping[str, Any]) -> tuple[torch.nn.Module, dict[str, Any], bool]:
    """The module cached (``frozen_features`` or ``encoder``), its config as keyed, and ``pcm16_audio``."""
    config = encoder_config(hparams)
    pcm16 = hparams.get("pcm16_audio", False)
    if pcm16:  # the encoder reads other samples: another key (float audio keeps the keys it had)
        config["pcm16_audio"] = True
    return hparams.get("frozen_features") or hparams["encoder"], config, pcm16


def prepare_feature_shards(hparams: Mapping[str, Any], shards: Sequence[Shard], device) -> list[str]:
    """Build (or reuse) the feature shards of the training shards (:mod:`utils.feature_cache.shards`), the
    audio read from them as training reads it at the cached module's rate; call on every process. Returns
    the paths of the feature shards, in the order of ``shards``."""
    check_feature_cache_options(hparams)
    encoder, config, pcm16 = _cached_module(hparams)
    return build_feature_shards(
        encoder,
        shards,
        hparams["feature_cache_folder"],
        lambda sample: as_prepared(decode_audio(sample, encoder.sample_rate), pcm16),
        config=config,
        sample_rate=encoder.sample_rate,
        dtype=hparams.get("feature_cache_dtype", DEFAULT_DTYPE),
        device=device,
    )


def prepare_feature_caches(
    hparams: Mapping[str, Any], datasets: Mapping[str, Any], device: str | torch.device
) -> dict[str, FeatureCache]:
    """Build (or reuse) the cache of every stage in ``feature_cache_stages``; call on every process.

    Arguments
    ---------
    hparams : the loaded YAML: ``encoder`` (weights loaded), ``encoder_*``, ``feature_cache_folder``,
        ``feature_cache_dtype``, ``feature_cache_stages``, ``feature_cache_shard_mb`` and optionally
        ``frozen_features``, the module cached instead of the encoder (e.g. a teacher's layer outputs,
        utils/training/distillation.py), and ``pcm16_audio`` (audio rounded to 16 bit: another key). The audio
        is loaded at the rate of the module cached (16 kHz), whatever the stage's ``sample_rate``.
    datasets : stage -> DynamicItemDataset (after filtering: only the utterances used are cached).
    device : where the encoder runs while building.

    Returns
    -------
    stage -> the opened cache of that stage.
    """
    check_feature_cache_options(hparams)
    encoder, config, pcm16 = _cached_module(hparams)
    sample_rate = encoder.sample_rate
    digest = encoder_fingerprint(encoder)
    caches = {}
    for stage in hparams.get("feature_cache_stages", DEFAULT_STAGES):
        dataset = datasets[stage]
        caches[stage] = build_feature_cache(
            encoder,
            manifest_entries(dataset.data, dataset.data_ids),
            hparams["feature_cache_folder"],
            lambda entry: as_prepared(load_utterance(entry.wav, sample_rate, entry.segments), pcm16),
            config=config,
            sample_rate=sample_rate,
            dtype=hparams.get("feature_cache_dtype", DEFAULT_DTYPE),
            name=stage,
            device=device,
            shard_bytes=shard_bytes(hparams),
            encoder_sha256=digest,
        )
    return caches
