"""The frozen-encoder feature cache: equality with the encoder, keys, resuming, the data pipeline, both
stages' Brains, end-to-end runs through the real command line and the benchmark smoke run."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import speechbrain as sb
import torch
import yaml
from helpers import TINY_ENCODER
from recipe_runner import (
    ROOT,
    build_brain,
    load_hparams,
    parse_train_log,
    recipe_command,
    recipe_env,
    run_recipe,
    run_torchrun,
)
from speechbrain.dataio.batch import PaddedBatch
from speechbrain.dataio.dataset import DynamicItemDataset

import utils.data
from focalcodec.audio import load_audio
from focalcodec.wavlm import WavLM
from train_decoder import Resynthesis
from train_quantizer import Quantization
from utils.crop import random_feature_crop
from utils.data import add_cached_features
from utils.feature_cache import (
    FeatureCache,
    FeatureCacheError,
    build_feature_cache,
    check_feature_cache_options,
    encoder_config,
    manifest_entries,
)
from utils.sample_corpus import make_sample_corpus

TINY_BSQ = yaml.safe_load((ROOT / "hparams" / "tiny" / "bsq.yaml").read_text())
TINY_VOCOS = yaml.safe_load((ROOT / "hparams" / "tiny" / "vocos.yaml").read_text())
DURATIONS = (1.0, 1.37, 0.9, 2.11, 1.6)  # seconds; every one holds a 22-frame decoder crop


def tiny_encoder(seed: int = 0, **overrides) -> WavLM:
    torch.manual_seed(seed)
    return WavLM(**{**TINY_ENCODER, **overrides}).eval().requires_grad_(False)


def load(path: str) -> torch.Tensor:
    return load_audio(path, 16000)


@pytest.fixture
def corpus(tmp_path) -> dict[str, dict]:
    """A manifest of 24 kHz wavs (resampled on load, as LibriTTS): {uttid: {"wav", "duration"}}."""
    rng = np.random.default_rng(0)
    data = {}
    for index, duration in enumerate(DURATIONS):
        path = tmp_path / "wavs" / f"utt{index}.wav"
        path.parent.mkdir(exist_ok=True)
        sig = 0.1 * rng.standard_normal(round(duration * 24000)) * np.hanning(round(duration * 24000))
        sf.write(path, sig.astype(np.float32), 24000, subtype="PCM_16")
        data[f"utt{index}"] = {"wav": str(path), "duration": duration}
    return data


def build(encoder, data, folder, dtype="float32", config=None, **kwargs) -> FeatureCache:
    return build_feature_cache(
        encoder,
        manifest_entries(data),
        folder,
        load,
        config=config if config is not None else TINY_ENCODER,
        sample_rate=16000,
        dtype=dtype,
        progress=False,
        **kwargs,
    )


class CallCounter:
    """Counts the encoder's forward calls (a hook: the state_dict, hence the key, is unchanged); raises
    ``KeyboardInterrupt`` at call number ``fail_at``."""

    def __init__(self, module: torch.nn.Module, fail_at: int | None = None) -> None:
        self.calls, self.fail_at = 0, fail_at
        self.handle = module.register_forward_pre_hook(self)

    def __call__(self, module, inputs) -> None:
        self.calls += 1
        if self.fail_at is not None and self.calls >= self.fail_at:
            raise KeyboardInterrupt("simulated interruption")

    def remove(self) -> None:
        self.handle.remove()


def reference_feats(encoder, wav: str) -> torch.Tensor:
    with torch.no_grad():
        return encoder(load(wav)[None])[0][0]


# --------------------------------------------------------------------------------------------------
# Equality, keys, resuming


def test_float32_cache_equals_the_encoder(corpus, tmp_path):
    encoder = tiny_encoder()
    cache = build(encoder, corpus, tmp_path / "cache")
    assert len(cache) == len(corpus) and cache.dim == 64
    for uttid, entry in corpus.items():
        feats = cache[uttid]
        assert feats.dtype == torch.float32 and feats.shape == (cache.num_frames(uttid), 64)
        assert torch.equal(feats, reference_feats(encoder, entry["wav"]))
    with pytest.raises(KeyError, match="not in the feature cache"):
        cache["missing"]


def test_float16_cache_is_close_to_the_encoder(corpus, tmp_path):
    encoder = tiny_encoder()
    cache = build(encoder, corpus, tmp_path / "cache", dtype="float16")
    for uttid, entry in corpus.items():
        feats, reference = cache[uttid], reference_feats(encoder, entry["wav"])
        assert feats.dtype == torch.float32 and feats.shape == reference.shape
        torch.testing.assert_close(feats, reference, rtol=1e-3, atol=1e-3 * float(reference.abs().max()))
        assert torch.equal(feats, reference.half().float())
    shard = next((tmp_path / "cache").glob("train-*/shard-00000.bin"))
    frames = sum(cache.num_frames(uttid) for uttid in corpus)
    assert shard.stat().st_size == frames * 64 * 2  # float16 on disk


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
    # Another encoder config (same weights: causal changes the maths), another dtype, sample rate
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


def test_an_interrupted_build_resumes(corpus, tmp_path):
    root = tmp_path / "cache"
    encoder = tiny_encoder()
    counter = CallCounter(encoder, fail_at=4)
    with pytest.raises(KeyboardInterrupt):
        build(encoder, corpus, root, shard_bytes=1)  # one utterance per shard
    counter.remove()
    (folder,) = root.glob("train-*")
    assert not (folder / "index.json").exists()
    assert {p.name for p in folder.glob("shard-*.json")} == {f"shard-0000{i}.json" for i in range(3)}
    assert (folder / "shard-00003.bin.partial").exists()  # the shard being written when interrupted
    with pytest.raises(FeatureCacheError, match="not a complete feature cache"):
        FeatureCache(folder)

    # A complete shard whose data was damaged since is recomputed too
    (folder / "shard-00001.bin").write_bytes(b"")
    counter = CallCounter(encoder)
    resumed = build(encoder, corpus, root, shard_bytes=1)
    assert counter.calls == len(corpus) - 3 + 1
    counter.remove()
    fresh = build(encoder, corpus, tmp_path / "fresh", shard_bytes=1)
    assert resumed.folder == folder
    for uttid in corpus:
        assert torch.equal(resumed[uttid], fresh[uttid])
    assert not list(folder.glob("*.partial"))


def test_augmentation_and_waveform_crops_are_refused_with_the_cache():
    check_feature_cache_options({"feature_cache": False, "augment": True})
    check_feature_cache_options({"feature_cache": True, "augment": False, "segment_size": None})
    with pytest.raises(ValueError, match="feature_cache: True cannot be combined with augment: True"):
        check_feature_cache_options({"feature_cache": True, "augment": True})
    with pytest.raises(ValueError, match="segment_size"):
        check_feature_cache_options({"feature_cache": True, "augment": False, "segment_size": 16000})
    with pytest.raises(ValueError, match="feature_cache_dtype"):
        check_feature_cache_options({"feature_cache": True, "feature_cache_dtype": "bfloat16"})


@pytest.mark.slow
def test_augmentation_with_the_cache_is_refused_at_start_up(tmp_path):
    out = tmp_path / "out"
    result = run_recipe(
        "train_quantizer.py", "bsq.yaml", tmp_path / "no_corpus", out,
        "--augment", "True", "--feature_cache", "True", check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "feature_cache: True cannot be combined with augment: True" in result.stderr
    assert not (out / "save" / "train.json").exists()  # refused before any work
    assert not (out / "feature_cache").exists()


# --------------------------------------------------------------------------------------------------
# Data pipeline and Brains


def test_cached_datasets_serve_feats_and_skip_unneeded_audio(corpus, tmp_path, monkeypatch):
    encoder = tiny_encoder()
    cache = build(encoder, corpus, tmp_path / "cache")

    def dataset(audio: bool) -> DynamicItemDataset:
        data = DynamicItemDataset(corpus)
        data.add_dynamic_item(utils.data._audio_pipeline(16000))
        data.set_output_keys(["id", "sig"])
        add_cached_features(data, cache, audio=audio)
        return data

    item = dataset(audio=True)[0]
    assert set(item) == {"id", "sig", "feats"}
    assert torch.equal(item["feats"], cache[item["id"]])
    monkeypatch.setattr(utils.data, "load_audio", lambda *args: pytest.fail("audio read"))
    item = dataset(audio=False)[0]
    assert set(item) == {"id", "feats"}
    assert torch.equal(item["feats"], cache[item["id"]])


def batches(cache, corpus, uttids, with_sig=True):
    """The same utterances as an uncached batch (waveforms) and a cached one (waveforms + features)."""
    items = [{"id": uttid, "sig": load(corpus[uttid]["wav"])} for uttid in uttids]
    cached = [{**item, "feats": cache[item["id"]]} for item in items]
    if not with_sig:
        cached = [{"id": item["id"], "feats": item["feats"]} for item in cached]
    return PaddedBatch(items), PaddedBatch(cached)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_quantizer_forward_is_the_same_with_the_cache(corpus, tmp_path, dtype):
    hparams = load_hparams("bsq.yaml", TINY_BSQ)
    brain = build_brain(Quantization, hparams)
    cache = build(hparams["encoder"], corpus, tmp_path / "cache", dtype=dtype, config=encoder_config(hparams))
    close = (
        torch.testing.assert_close
        if dtype == "float16"
        else lambda a, b, **_: torch.testing.assert_close(a, b, rtol=0, atol=0)
    )
    for uttid in corpus:
        uncached, cached = batches(cache, corpus, [uttid], with_sig=False)
        with torch.no_grad():
            reference = brain.compute_forward(uncached, sb.Stage.VALID)
            out = brain.compute_forward(cached, sb.Stage.VALID)
        close(out.feats, reference.feats, rtol=2e-3, atol=2e-3)
        close(out.hyp_feats, reference.hyp_feats, rtol=5e-3, atol=5e-3)
        assert torch.equal(out.lens, reference.lens)
    # Padded cached batches: the loss masks each item's own frames, the exact count of the cache
    _, cached = batches(cache, corpus, list(corpus), with_sig=False)
    inputs = brain.features(cached, sb.Stage.TRAIN)
    assert inputs.sig is None
    frames = [cache.num_frames(uttid) for uttid in corpus]
    mask = torch.arange(inputs.feats.shape[1])[None] < (inputs.lens[:, None] * inputs.feats.shape[1] - 1e-6)
    assert mask.sum(1).tolist() == frames
    loss = brain.fit_batch(cached)
    assert torch.isfinite(loss)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_decoder_crop_is_the_same_with_the_cache(corpus, tmp_path, dtype):
    hparams = load_hparams("vocos.yaml", TINY_VOCOS)
    brain = build_brain(Resynthesis, hparams)
    cache = build(hparams["encoder"], corpus, tmp_path / "cache", dtype=dtype, config=encoder_config(hparams))
    for seed, uttid in enumerate(corpus):
        uncached, cached = batches(cache, corpus, [uttid])
        with torch.no_grad():
            torch.manual_seed(seed)
            reference = brain.compute_forward(uncached, sb.Stage.TRAIN)
            torch.manual_seed(seed)
            out = brain.compute_forward(cached, sb.Stage.TRAIN)
        assert torch.equal(out.ref, reference.ref)  # the same waveform crop: the same start frame
        assert out.ref.shape == (1, 1, 22 * 320)
        if dtype == "float32":
            assert torch.equal(out.hyp, reference.hyp)
        else:
            torch.testing.assert_close(out.hyp, reference.hyp, rtol=1e-2, atol=1e-3)

    # Padded cached batch: crops hold valid frames only, and frame i <-> samples [i*hop, (i+1)*hop)
    _, cached = batches(cache, corpus, list(corpus))
    inputs = brain.features(cached, sb.Stage.TRAIN)
    starts = set()
    for seed in range(200):
        torch.manual_seed(seed)
        feats, sig = random_feature_crop(inputs.feats, inputs.sig, inputs.crop_lens, 22, 320)
        for b, uttid in enumerate(corpus):
            full = cache[uttid]
            matches = [s for s in range(len(full) - 21) if torch.equal(feats[b], full[s : s + 22])]
            assert matches, f"{uttid}: the crop is not 22 valid frames"
            start = matches[0]
            assert torch.equal(sig[b], inputs.sig[b, start * 320 : (start + 22) * 320])
            starts.add((b, start))
    # The last valid start is reachable (utt2, the shortest: 44 frames, 23 starts)
    assert max(start for b, start in starts if b == 2) == cache.num_frames("utt2") - 22


# --------------------------------------------------------------------------------------------------
# Through the real command line


@pytest.fixture(scope="module")
def sample_corpus(tmp_path_factory) -> Path:
    splits = {"train-clean-100": (2, 3), "dev-clean": (1, 2), "test-clean": (1, 2)}
    return make_sample_corpus(tmp_path_factory.mktemp("libritts"), splits=splits, engine="synthetic")


def cache_folders(output_folder: Path) -> dict[str, Path]:
    folders = sorted((output_folder / "feature_cache").iterdir())
    return {folder.name.split("-")[0]: folder for folder in folders}


@pytest.mark.slow
def test_quantizer_end_to_end_with_the_cache_matches_the_uncached_run(sample_corpus, tmp_path):
    args = [
        "--train_split", "[train-clean-100]", "--num_epochs", "1", "--train_batch_size", "1",
        "--sorting", "ascending", "--save_audios", "False",
    ]  # fmt: skip
    cached_args = [*args, "--feature_cache", "True", "--feature_cache_dtype", "float32"]
    run_recipe("train_quantizer.py", "bsq.yaml", sample_corpus, tmp_path / "plain", *args)
    result = run_recipe("train_quantizer.py", "bsq.yaml", sample_corpus, tmp_path / "cached", *cached_args)
    assert "Feature cache 'train': 6 utterances" in result.stdout + result.stderr
    folders = cache_folders(tmp_path / "cached")
    assert set(folders) == {"train", "valid"} and all((f / "index.json").is_file() for f in folders.values())
    plain, cached = (
        parse_train_log(tmp_path / "plain" / "train_log.txt"),
        parse_train_log(tmp_path / "cached" / "train_log.txt"),
    )
    for key in ("train loss", "train rec_loss", "valid loss", "valid rec_loss"):
        assert cached[0][key] == pytest.approx(plain[0][key], rel=1e-4), key
    assert cached[-1]["test loss"] == pytest.approx(plain[-1]["test loss"], rel=1e-4)

    # Rerun (resumes the finished run) with a changed encoder config: a new cache next to the old one
    result = run_recipe(
        "train_quantizer.py", "bsq.yaml", sample_corpus, tmp_path / "cached", *cached_args,
        "--encoder_conv_pos", "8",
    )  # fmt: skip
    assert len(list((tmp_path / "cached" / "feature_cache").glob("train-*"))) == 2


@pytest.mark.slow
def test_decoder_end_to_end_with_the_cache(sample_corpus, tmp_path):
    out = tmp_path / "vocos"
    args = ["--train_batch_size", "2", "--valid_size", "2", "--num_epochs", "1", "--feature_cache", "True"]
    result = run_recipe("train_decoder.py", "vocos.yaml", sample_corpus, out, *args)
    assert "Feature cache 'train'" in result.stdout + result.stderr
    rows = parse_train_log(out / "train_log.txt")
    assert rows[0]["epoch"] == 1 and "valid mel_loss" in rows[0] and "test loss" in rows[-1]
    assert set(cache_folders(out)) == {"train", "valid"}
    assert len(list((out / "audios" / "epoch0001").glob("*_hyp.wav"))) == 2 * 2  # valid + test


@pytest.mark.slow
def test_two_process_ddp_builds_shares_and_trains(sample_corpus, tmp_path):
    out = tmp_path / "bsq"
    command = recipe_command(
        "train_quantizer.py", "bsq.yaml", sample_corpus, out, "--train_split", "[train-clean-100]",
        "--num_epochs", "1", "--feature_cache", "True", "--train_batch_size", "1",
    )  # fmt: skip
    # One utterance per shard: each process computes half of them
    env = {**recipe_env(), "FOCALCODEC_FEATURE_CACHE_SHARD_BYTES": "1"}
    result = run_torchrun(command, port=29541, env=env)
    assert result.returncode == 0, result.stderr[-5000:]
    train = cache_folders(out)["train"]
    assert len(list(train.glob("shard-*.json"))) == 6
    assert len(json.loads((train / "index.json").read_text())["entries"]) == 6
    assert "test loss" in parse_train_log(out / "train_log.txt")[-1]
