"""An optional on-disk cache of the frozen WavLM6 features, shared by both training stages.

The encoder is frozen, so its features of an utterance never change during training; recomputing them at
every step (as the original recipe does) costs about half of a quantizer step. With ``feature_cache: True``
a pass over each cached manifest (``feature_cache_stages``) stores the features once, and the datasets then
serve them as ``feats`` (see :func:`utils.training.data.add_cached_features`).

Semantics
---------
The cached features of an utterance are those of the utterance **encoded alone** (batch of one, no
padding): ``encoder(load_audio(wav)[None])[0][0]``, a (T, D) tensor with ``T`` the encoder's frame count for
that many samples, stored as ``float32`` (exact) or ``float16`` (default; rounded to ~3 significant digits,
half the disk). With a batch size of 1 this is exactly what the uncached path computes. In a padded batch
the uncached path differs slightly: the encoder runs on the padded batch and keeps
``ceil(T_padded * relative_length)`` frames (which can include a last frame that sees padding); the cached
features are the padding-free ones.

Key (:mod:`.key`)
-----------------
A cache lives in ``<feature_cache_folder>/<stage>-<key[:16]>/`` where ``key`` is a sha256 over: the encoder
weights (every state_dict tensor's name, dtype, shape and bytes), its class and constructor config, the
sample rate, the storage dtype, the format version and the manifest entries used (utterance id, wav path,
duration, file size and modification time). Any change gives another folder, so a stale cache is never
read; ``meta.json`` holds the full key and is checked when the cache is opened.

Layout and resuming (:mod:`.layout`, :mod:`.build`)
---------------------------------------------------
Utterances (sorted by id) are split into shards of about ``shard_bytes`` (256 MiB; the recipe's
``feature_cache_shard_mb``), from frame counts estimated with the encoder's convolution geometry. Shard
``i`` is written under a temporary name, renamed to ``shard-0000i.bin`` (the raw rows of all its
utterances, back to back) when complete, and then marked complete by ``shard-0000i.json`` (its utterances'
row offsets and frame counts). An interrupted build (crash, ``kill -9``) therefore resumes at the shards
without a valid marker: complete shards are kept, a partial or damaged one is recomputed, and so is one
planned under another shard size (its marker lists other utterances). ``index.json``, written last, marks
the whole cache complete. Under DDP every process builds the shards ``i % world_size == rank`` (no
collective call, so no barrier timeout however long the build); rank 0 waits for every shard to be
complete and writes the index, which the other processes wait for.

Reading (:mod:`.reader`)
------------------------
Random access by offset reads (``numpy.fromfile``), with no file kept open, so it works in DataLoader
workers as is: a whole utterance (``cache[uttid]``) or a range of its frames (``cache.frames(uttid, start,
count)``).

The recipe (:mod:`.recipe`) checks the ``feature_cache*`` options and builds the caches of the stages.
"""

from utils.feature_cache.build import DEFAULT_SHARD_BYTES, build_feature_cache
from utils.feature_cache.key import ManifestEntry, cache_key, encoder_config, manifest_entries
from utils.feature_cache.layout import DTYPES, FORMAT_VERSION, FeatureCacheError
from utils.feature_cache.reader import FeatureCache
from utils.feature_cache.recipe import check_feature_cache_options, prepare_feature_caches

__all__ = [
    "DEFAULT_SHARD_BYTES",
    "DTYPES",
    "FORMAT_VERSION",
    "FeatureCache",
    "FeatureCacheError",
    "ManifestEntry",
    "build_feature_cache",
    "cache_key",
    "check_feature_cache_options",
    "encoder_config",
    "manifest_entries",
    "prepare_feature_caches",
]
