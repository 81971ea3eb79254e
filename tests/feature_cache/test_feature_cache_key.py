"""utils/feature_cache/key.py: what a cache is keyed by; unchanged inputs reuse a cache, any change gives
another one (never a stale one)."""

import os
from pathlib import Path

import pytest
import soundfile as sf
import torch
from helpers.feature_cache_helpers import (
    TINY_ENCODER,
    CallCounter,
    build,
    reference_feats,
    tiny_encoder,
    write_corpus,
)
from helpers.recipe_runner import load_hparams

from utils.feature_cache import (
    FORMAT_VERSION,
    FeatureCache,
    FeatureCacheError,
    ManifestEntry,
    cache_key,
    encoder_config,
    manifest_entries,
)
from utils.runs import encoder_fingerprint


@pytest.fixture
def corpus(tmp_path) -> dict[str, dict]:
    return write_corpus(tmp_path)


def test_manifest_entries_are_sorted_and_identify_the_files(corpus):
    entries = manifest_entries(corpus)
    assert [entry.uttid for entry in entries] == sorted(corpus)
    stat = os.stat(corpus["utt1"]["wav"])
    assert entries[1] == ManifestEntry("utt1", corpus["utt1"]["wav"], 1.37, stat.st_size, stat.st_mtime_ns)
    assert entries[1].as_dict() == {
        "id": "utt1",
        "wav": corpus["utt1"]["wav"],
        "duration": 1.37,
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
    }
    assert [entry.uttid for entry in manifest_entries(corpus, ["utt3", "utt0"])] == ["utt0", "utt3"]


def test_cache_key_covers_every_input(corpus):
    entries = manifest_entries(corpus)
    digest = encoder_fingerprint(tiny_encoder())
    key, meta = cache_key(digest, TINY_ENCODER, entries, 16000, "float16")
    assert len(key) == 64 and meta["format"] == FORMAT_VERSION and meta["num_utterances"] == len(corpus)
    assert cache_key(digest, dict(reversed(TINY_ENCODER.items())), entries, 16000, "float16")[0] == key
    others = [
        cache_key(encoder_fingerprint(tiny_encoder(seed=1)), TINY_ENCODER, entries, 16000, "float16"),
        cache_key(digest, {**TINY_ENCODER, "causal": True}, entries, 16000, "float16"),
        cache_key(digest, TINY_ENCODER, entries[:-1], 16000, "float16"),
        cache_key(digest, TINY_ENCODER, entries, 24000, "float16"),
        cache_key(digest, TINY_ENCODER, entries, 16000, "float32"),
    ]
    last = entries[-1]
    for field, value in (("duration", 9.0), ("size", last.size + 1), ("mtime_ns", 1), ("wav", "b.wav")):
        changed = ManifestEntry(**{**vars(last), field: value})
        others.append(cache_key(digest, TINY_ENCODER, [*entries[:-1], changed], 16000, "float16"))
    assert len({key, *(other for other, _ in others)}) == len(others) + 1


def test_unchanged_inputs_reuse_the_cache_and_any_change_invalidates_it(corpus, tmp_path):
    root = tmp_path / "cache"
    encoder = tiny_encoder()
    first = build(encoder, corpus, root)
    counter = CallCounter(encoder)
    again = build(encoder, corpus, root)
    assert counter.calls == 0 and again.folder == first.folder

    def rebuilt(**kwargs) -> FeatureCache:
        counter.calls = 0
        cache = build(kwargs.pop("encoder", encoder), kwargs.pop("data", corpus), root, **kwargs)
        assert cache.folder != first.folder and cache.key != first.key
        return cache

    # Other encoder weights: new features, never the stale ones
    changed = tiny_encoder()
    with torch.no_grad():
        changed.feature_proj.weight[0, 0] += 1.0
    counter.remove()
    counter = CallCounter(changed)
    cache = rebuilt(encoder=changed)
    assert counter.calls == len(corpus)
    assert not torch.equal(cache["utt0"], first["utt0"])
    assert torch.equal(cache["utt0"], reference_feats(changed, corpus["utt0"]["wav"]))
    counter.remove()
    counter = CallCounter(encoder)
    # Another encoder config (same weights: causal changes the maths), another dtype
    rebuilt(config={**TINY_ENCODER, "causal": True})
    rebuilt(dtype="float16")
    # A changed or removed manifest entry
    wav = Path(corpus["utt1"]["wav"])
    sig, rate = sf.read(wav)
    sf.write(wav, 0.5 * sig, rate, subtype="PCM_16")
    os.utime(wav, ns=(1, 1))  # even a same-size rewrite changes the modification time
    cache = rebuilt()
    assert torch.equal(cache["utt1"], reference_feats(encoder, str(wav)))
    rebuilt(data={k: v for k, v in corpus.items() if k != "utt4"})
    assert counter.calls == len(corpus) - 1
    # A folder opened with another key is refused
    with pytest.raises(FeatureCacheError, match="not"):
        FeatureCache(first.folder, key=cache.key)


def test_encoder_config_leaves_out_where_the_weights_come_from():
    hparams = load_hparams("bsq.yaml", {"encoder_checkpoint": "/somewhere"})
    config = encoder_config(hparams)
    assert config["encoder_dim"] == 1024 and config["encoder_causal"] is False
    assert "encoder_checkpoint" not in config and "encoder_hub" not in config
    assert "encoder" not in config  # the module itself is hashed through its weights
    assert list(config) == sorted(config)
