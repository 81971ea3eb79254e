"""An optional on-disk cache of the frozen encoder's features (or of a teacher's view), shared by every
training stage: with ``feature_cache: True`` each cached manifest is encoded once, before training, and the
datasets serve the stored features (:func:`utils.training.data.add_cached_features`).

Modules: ``key`` (what a cache is keyed by), ``layout`` (the on-disk format), ``build`` (shards, resuming,
DDP), ``reader`` (memory-mapped reads), ``shards`` (the cache in shard form, for a training set read from
WebDataset shards), ``recipe`` (the YAML options, the stages' caches). How it works:
docs/training.md, "The feature cache".
"""

from utils.feature_cache.build import DEFAULT_SHARD_BYTES, build_feature_cache
from utils.feature_cache.key import ManifestEntry, cache_key, encoder_config, manifest_entries
from utils.feature_cache.layout import DTYPES, FORMAT_VERSION, FeatureCacheError
from utils.feature_cache.reader import FeatureCache
from utils.feature_cache.recipe import (
    check_feature_cache_options,
    prepare_feature_caches,
    prepare_feature_shards,
)
from utils.feature_cache.shards import FEATURES_KEY, build_feature_shards

__all__ = [
    "DEFAULT_SHARD_BYTES",
    "DTYPES",
    "FEATURES_KEY",
    "FORMAT_VERSION",
    "FeatureCache",
    "FeatureCacheError",
    "ManifestEntry",
    "build_feature_cache",
    "build_feature_shards",
    "cache_key",
    "check_feature_cache_options",
    "encoder_config",
    "manifest_entries",
    "prepare_feature_caches",
    "prepare_feature_shards",
]
