"""utils/feature_cache/recipe.py and the cache in the recipe: the options, the data pipeline, both stages'
Brains, and end-to-end runs through the real command line (one and two processes)."""

import json
import re
from types import SimpleNamespace

import pytest
import speechbrain as sb
import torch
import yaml
from helpers.feature_cache_helpers import (
    TINY_BSQ,
    TINY_VOCOS,
    build,
    cache_folders,
    load,
    reference_feats,
    tiny_encoder,
    write_corpus,
)
from helpers.recipe_runner import (
    ROOT,
    build_brain,
    load_hparams,
    parse_train_log,
    recipe_command,
    run_recipe,
    run_torchrun,
    tiny_overrides,
)
from speechbrain.dataio.batch import PaddedBatch
from speechbrain.dataio.dataset import DynamicItemDataset

import utils.training.data
from focalcodec.audio import as_written, load_audio
from utils.feature_cache import check_feature_cache_options, encoder_config, prepare_feature_caches
from utils.feature_cache.recipe import shard_bytes
from utils.training.crop import random_feature_crop
from utils.training.data import ItemSeeds, add_cached_crops, add_cached_features
from utils.training.stages.decoder import DecoderStage
from utils.training.stages.encoder import EncoderStage
from utils.training.stages.posemb import PosembStage
from utils.training.stages.quantizer import QuantizerStage

YAMLS = ("bsq.yaml", "vocos.yaml")  # the full YAMLs (the token-rate variants inherit bsq.yaml's keys)


@pytest.fixture
def corpus(tmp_path) -> dict[str, dict]:
    return write_corpus(tmp_path)


# --------------------------------------------------------------------------------------------------
# Options


def test_augmentation_and_waveform_crops_are_refused_with_the_cache():
    check_feature_cache_options({"feature_cache": False, "augment": True})
    check_feature_cache_options({"feature_cache": True, "augment": False, "segment_size": None})
    with pytest.raises(ValueError, match="feature_cache: True cannot be combined with augment: True"):
        check_feature_cache_options({"feature_cache": True, "augment": True})
    with pytest.raises(ValueError, match="segment_size"):
        check_feature_cache_options({"feature_cache": True, "augment": False, "segment_size": 16000})
    with pytest.raises(ValueError, match="feature_cache_dtype"):
        check_feature_cache_options({"feature_cache": True, "feature_cache_dtype": "bfloat16"})
    with pytest.raises(ValueError, match="feature_cache_stages may hold train, valid, test, got"):
        check_feature_cache_options({"feature_cache": True, "feature_cache_stages": ["train", "dev"]})
    for size in (0, -1.0, "256", True, None):
        with pytest.raises(ValueError, match="feature_cache_shard_mb must be a positive number"):
            check_feature_cache_options({"feature_cache": True, "feature_cache_shard_mb": size})


@pytest.mark.parametrize("name", YAMLS)
def test_the_shard_size_is_a_yaml_option_in_mb(name):
    match = re.search(r"^feature_cache_shard_mb: (.+)$", (ROOT / "hparams" / name).read_text(), re.M)
    assert match and float(match.group(1)) == 256
    assert shard_bytes({"feature_cache_shard_mb": float(match.group(1))}) == 256 * 2**20
    assert shard_bytes({}) == 256 * 2**20
    assert shard_bytes({"feature_cache_shard_mb": 0.5}) == 2**19
    assert shard_bytes({"feature_cache_shard_mb": 0.000001}) == 1  # tests: one utterance per shard
    check_feature_cache_options({"feature_cache": True, "feature_cache_shard_mb": 0.000001})


def test_prepare_feature_caches_builds_the_stages_with_the_yaml_options(corpus, tmp_path):
    overrides = {**TINY_BSQ, "output_folder": str(tmp_path / "out"), "feature_cache": True}
    hparams = load_hparams("bsq.yaml", {**overrides, "feature_cache_shard_mb": 0.000001})
    datasets = {
        "train": SimpleNamespace(data=corpus, data_ids=["utt3", "utt0", "utt2"]),
        "valid": SimpleNamespace(data=corpus, data_ids=list(corpus)),
    }
    caches = prepare_feature_caches(hparams, datasets, "cpu")
    assert set(caches) == {"train", "valid"}  # bsq.yaml's feature_cache_stages
    assert len(caches["train"]) == 3 and "utt1" not in caches["train"] and len(caches["valid"]) == 5
    folders = cache_folders(tmp_path / "out")
    assert len(list(folders["train"].glob("shard-*.json"))) == 3  # one utterance per shard
    reference = reference_feats(hparams["encoder"], corpus["utt3"]["wav"])
    assert caches["train"].dtype == "float16" and torch.equal(
        caches["train"]["utt3"], reference.half().float()
    )
    with pytest.raises(ValueError, match="augment"):
        prepare_feature_caches({**hparams, "augment": True}, datasets, "cpu")


def test_pcm16_audio_is_cached_apart_from_float_audio(corpus, tmp_path):
    """The original mode's 16-bit audio gives other features: another key, features of the rounded audio;
    the float audio's cache keeps its key."""
    overrides = {**TINY_BSQ, "output_folder": str(tmp_path / "out"), "feature_cache": True}
    datasets = {stage: SimpleNamespace(data=corpus, data_ids=["utt0"]) for stage in ("train", "valid")}
    hparams = load_hparams("bsq.yaml", overrides)
    float_cache = prepare_feature_caches(hparams, datasets, "cpu")["train"]
    pcm16_cache = prepare_feature_caches({**hparams, "pcm16_audio": True}, datasets, "cpu")["train"]
    assert pcm16_cache.folder != float_cache.folder
    assert float_cache.folder == prepare_feature_caches(hparams, datasets, "cpu")["train"].folder
    with torch.no_grad():
        want = hparams["encoder"](as_written(load(corpus["utt0"]["wav"])).sig[None])[0][0]
    assert torch.equal(pcm16_cache["utt0"], want.half().float())
    assert not torch.equal(float_cache["utt0"], pcm16_cache["utt0"])


@pytest.mark.slow
def test_augmentation_with_the_cache_is_refused_at_start_up(small_corpus, tmp_path):
    out = tmp_path / "out"
    result = run_recipe(
        "train_quantizer.py", "bsq.yaml", small_corpus, out,
        "--train_split", "[train-clean-100]", "--augment", "True", "--feature_cache", "True", check=False,
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
        data.add_dynamic_item(utils.training.data._audio_pipeline(16000))
        data.set_output_keys(["id", "sig"])
        add_cached_features(data, cache, audio=audio)
        return data

    item = dataset(audio=True)[0]
    assert set(item) == {"id", "sig", "feats"}
    assert torch.equal(item["feats"], cache[item["id"]])
    monkeypatch.setattr(utils.training.data, "load_utterance", lambda *args: pytest.fail("audio read"))
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
    brain = build_brain(QuantizerStage, hparams)
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
    brain = build_brain(DecoderStage, hparams)
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
# Through the real command line (small_corpus: tests/conftest.py, 6 training utterances)


@pytest.mark.slow
def test_quantizer_end_to_end_with_the_cache_matches_the_uncached_run(small_corpus, tmp_path):
    args = [
        "--train_split", "[train-clean-100]", "--num_epochs", "1", "--train_batch_size", "1",
        "--sorting", "ascending", "--save_audios", "False",
    ]  # fmt: skip
    cached_args = [*args, "--feature_cache", "True", "--feature_cache_dtype", "float32"]
    run_recipe("train_quantizer.py", "bsq.yaml", small_corpus, tmp_path / "plain", *args)
    result = run_recipe("train_quantizer.py", "bsq.yaml", small_corpus, tmp_path / "cached", *cached_args)
    assert "Feature cache 'train': 6 utterances" in result.stdout + result.stderr
    folders = cache_folders(tmp_path / "cached")
    assert set(folders) == {"train", "valid"} and all((f / "index.json").is_file() for f in folders.values())
    assert all(len(list(f.glob("shard-*.json"))) == 1 for f in folders.values())  # 256 MB shards
    plain, cached = (
        parse_train_log(tmp_path / "plain" / "train_log.txt"),
        parse_train_log(tmp_path / "cached" / "train_log.txt"),
    )
    for key in ("train loss", "train rec_loss", "valid loss", "valid rec_loss"):
        assert cached[0][key] == pytest.approx(plain[0][key], rel=1e-4), key
    assert cached[-1]["test loss"] == pytest.approx(plain[-1]["test loss"], rel=1e-4)

    # Rerun (resumes the finished run) with a changed encoder config: a new cache next to the old one
    result = run_recipe(
        "train_quantizer.py", "bsq.yaml", small_corpus, tmp_path / "cached", *cached_args,
        "--encoder_conv_pos", "8",
    )  # fmt: skip
    assert len(list((tmp_path / "cached" / "feature_cache").glob("train-*"))) == 2


@pytest.mark.slow
def test_decoder_end_to_end_with_the_cache(small_corpus, tmp_path):
    out = tmp_path / "vocos"
    args = ["--train_batch_size", "2", "--valid_size", "2", "--num_epochs", "1", "--feature_cache", "True"]
    result = run_recipe("train_decoder.py", "vocos.yaml", small_corpus, out, *args)
    assert "Feature cache 'train'" in result.stdout + result.stderr
    rows = parse_train_log(out / "train_log.txt")
    assert rows[0]["epoch"] == 1 and "valid mel_loss" in rows[0] and "test loss" in rows[-1]
    assert set(cache_folders(out)) == {"train", "valid"}
    assert len(list((out / "audios" / "epoch0001").glob("*_hyp.wav"))) == 2 * 2  # valid + test


@pytest.mark.slow
def test_two_process_ddp_builds_shares_and_trains(small_corpus, tmp_path):
    out = tmp_path / "bsq"
    command = recipe_command(
        "train_quantizer.py", "bsq.yaml", small_corpus, out, "--train_split", "[train-clean-100]",
        "--num_epochs", "1", "--feature_cache", "True", "--train_batch_size", "1",
        "--feature_cache_shard_mb", "0.000001",  # one utterance per shard: each process computes half
    )  # fmt: skip
    result = run_torchrun(command, port=29541)
    assert result.returncode == 0, result.stderr[-5000:]
    train = cache_folders(out)["train"]
    assert len(list(train.glob("shard-*.json"))) == 6
    assert len(json.loads((train / "index.json").read_text())["entries"]) == 6
    assert "test loss" in parse_train_log(out / "train_log.txt")[-1]


# --------------------------------------------------------------------------------------------------
# FocalCodec-Stream: what the stages read of their frozen teacher


def stream_hparams(name: str, tmp_path, **overrides) -> dict:
    tiny = yaml.safe_load(tiny_overrides(f"stream/{name}.yaml").read_text())
    placeholders = {"wavlm": {"student_encoder_posemb_checkpoint": "unused"}}.get(name, {})
    options = {"output_folder": str(tmp_path / name), "feature_cache": True, "feature_cache_dtype": "float32"}
    return load_hparams(f"stream/{name}.yaml", {**tiny, **placeholders, **options, **overrides})


@pytest.mark.parametrize("name", ["conv_posemb", "wavlm"])
def test_the_distillation_stages_cache_the_teacher_view_they_read(corpus, tmp_path, name):
    """Stage 2 caches its teacher's positional-embedding input, stage 3 its layer outputs: what the stage
    computes without the cache, and the Brain's forward is the same either way."""
    hparams = stream_hparams(name, tmp_path)
    teacher = hparams["encoder"].eval().requires_grad_(False)
    datasets = {stage: SimpleNamespace(data=corpus, data_ids=list(corpus)) for stage in ("train", "valid")}
    cache = prepare_feature_caches(hparams, datasets, "cpu")["train"]
    view = hparams["frozen_features"]
    for uttid in corpus:
        with torch.no_grad():
            expected = view(load(corpus[uttid]["wav"])[None])[0][0]
        assert torch.equal(cache[uttid], expected), uttid
    assert cache.dim == 64 * (2 if name == "wavlm" else 1)  # stage 3: every layer (2 in the tiny encoder)
    if name == "conv_posemb":
        hparams["student_posemb"].load_state_dict(teacher.encoder.positional_embedding.state_dict())
        brain = build_brain(PosembStage, hparams)
    else:
        hparams["student_encoder"].load_state_dict(teacher.state_dict())
        brain = build_brain(EncoderStage, hparams)
    uncached, cached = batches(cache, corpus, ["utt3"])
    with torch.no_grad():
        reference, out = (
            brain.compute_forward(uncached, sb.Stage.VALID),
            brain.compute_forward(cached, sb.Stage.VALID),
        )
    for got, want in zip(out, reference, strict=True):
        torch.testing.assert_close(got, want)


def test_24_khz_decoder_crops_are_read_aligned_with_the_16_khz_cache(corpus, tmp_path):
    """Stage 1: the cache holds the features of the audio at the encoder's 16 kHz; a training item reads its
    crop's frames from it and the 480 x 40 samples they stand for from the 24 kHz file."""
    hparams = stream_hparams("wavenext", tmp_path)
    datasets = {stage: SimpleNamespace(data=corpus, data_ids=list(corpus)) for stage in ("train", "valid")}
    cache = prepare_feature_caches(hparams, datasets, "cpu")["train"]
    assert json.loads((cache.folder / "meta.json").read_text())["sample_rate"] == 16000
    assert torch.equal(cache["utt3"], reference_feats(hparams["encoder"], corpus["utt3"]["wav"]))
    dataset = DynamicItemDataset(corpus)
    add_cached_crops(dataset, cache, 40, 480, 24000, ItemSeeds(0))
    for index, uttid in enumerate(corpus):
        full = load_audio(corpus[uttid]["wav"], 24000)
        item = dataset[index]
        frames = cache[uttid]
        start = next(
            s for s in range(len(frames) - 39) if torch.equal(item["crop_feats"], frames[s : s + 40])
        )
        assert torch.equal(item["crop_sig"], full[start * 480 : (start + 40) * 480]), uttid


@pytest.mark.slow
def test_joint_stage_end_to_end_with_the_cache(small_corpus, stream_bsq_run, tmp_path):
    """Stage 5 reads the teacher's features from the cache and the audio for its student."""
    out = tmp_path / "joint"
    args = ["--train_split", "[train-clean-100]", "--train_batch_size", "2", "--valid_size", "2"]
    args += ["--num_epochs", "1", "--feature_cache", "True", "--quantizer_checkpoint", str(stream_bsq_run)]
    result = run_recipe("train_joint.py", "stream/joint.yaml", small_corpus, out, *args)
    assert "Feature cache 'train': 6 utterances" in result.stdout + result.stderr
    assert set(cache_folders(out)) == {"train", "valid"}
    assert "test loss" in parse_train_log(out / "train_log.txt")[-1]
