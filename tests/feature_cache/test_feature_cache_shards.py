"""The feature cache in shard form (utils/feature_cache/shards.py): the features of the training shards'
own audio equal the cache's, and an interrupted build resumes at the missing shards."""

import io

import numpy as np
import pytest
import torch
from helpers.feature_cache_helpers import TINY_ENCODER, CallCounter, build, tiny_encoder

from utils.corpus.shards import decode_audio, resolve_shards, sample_meta, shard_samples
from utils.feature_cache import FEATURES_KEY, build_feature_shards


def feature_shards(encoder, shards, folder):
    return build_feature_shards(
        encoder, shards, folder, lambda sample: decode_audio(sample, 16000), config=TINY_ENCODER,
        sample_rate=16000, dtype="float16",
    )  # fmt: skip


def read_features(shards, urls) -> dict[str, torch.Tensor]:
    features = {}
    for shard, url in zip(shards, urls, strict=True):
        for sample, extra in zip(shard_samples(shard.url), shard_samples(url), strict=True):
            assert extra["__key__"] == sample["__key__"]
            features[sample_meta(sample)["id"]] = torch.from_numpy(np.load(io.BytesIO(extra[FEATURES_KEY])))
    return features


def test_feature_shards_hold_the_caches_features(small_shards, tmp_path):
    index, entries = small_shards
    shards, encoder = resolve_shards(index), tiny_encoder()
    features = read_features(shards, feature_shards(encoder, shards, tmp_path / "shards"))
    data = {uttid: {"wav": entry.wav, "duration": entry.duration} for uttid, entry in entries.items()}
    cache = build(encoder, data, tmp_path / "cache", dtype="float16")
    assert set(features) == set(entries)
    for uttid, feats in features.items():  # the same audio, each utterance encoded alone: the same bits
        assert feats.dtype == torch.float16 and torch.equal(feats.float(), cache[uttid])


@pytest.mark.slow
def test_an_interrupted_build_resumes_at_the_missing_shards(small_shards, tmp_path):
    index, _ = small_shards
    shards, encoder = resolve_shards(index), tiny_encoder()
    counter = CallCounter(encoder, fail_at=6)  # inside the second shard (4 + 2 utterances)
    with pytest.raises(KeyboardInterrupt):
        feature_shards(encoder, shards, tmp_path)
    counter.remove()
    (folder,) = tmp_path.iterdir()
    assert sorted(path.name for path in folder.glob("*.tar")) == ["train-000000.tar"]
    first = (folder / "train-000000.tar").stat().st_mtime_ns
    counter = CallCounter(encoder)
    urls = feature_shards(encoder, shards, tmp_path)
    assert counter.calls == 2 and (folder / "train-000000.tar").stat().st_mtime_ns == first
    assert feature_shards(encoder, shards, tmp_path) == urls and counter.calls == 2  # complete: reused
    assert feature_shards(tiny_encoder(seed=1), shards, tmp_path) != urls  # another encoder, another key
