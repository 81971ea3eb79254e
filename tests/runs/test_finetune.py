"""Fine-tuning: recipe modules initialised from a pretrained codec (``utils/runs/finetune.py``,
``--init_from``).

Sources: an official-format folder (current and legacy layout), a training run folder, and the two runs
``QUANTIZER_RUN+DECODER_RUN``; mismatching settings are clear errors naming the YAML keys.
"""

import shutil

import pytest
import torch
from helpers.recipe_runner import QUANTIZER_ARGS, run_recipe
from helpers.reference import legacy_state_dict
from helpers.run_helpers import (
    TINY_BSQ,
    TINY_VOCOS,
    assert_same_weights,
    load_checkpoint,
    recipe_modules,
    speech,
    tiny_official,
)

from focalcodec.checkpoint import load_state_dict_file
from focalcodec.codec import FocalCodec
from utils.runs import (
    EncoderMismatchError,
    PretrainedMismatchError,
    codec_from_runs,
    init_from_pretrained,
    pretrained_codec,
    read_run,
)
from utils.training.recipe import _load_encoder


def test_init_from_an_official_folder_in_both_stages(tmp_path):
    codec, folder = tiny_official(tmp_path)
    quantizer_stage = recipe_modules("bsq.yaml", TINY_BSQ, tmp_path)
    parts = {
        name: quantizer_stage[name]
        for name in ("encoder", "compressor", "quantizer", "decompressor", "decoder")
    }
    pretrained = init_from_pretrained(folder, hparams=quantizer_stage, **parts)
    assert pretrained.encoder_weights == {"checkpoint": str(folder.resolve())}
    for name in ("encoder", "compressor", "decompressor", "decoder"):
        assert_same_weights(parts[name], getattr(codec, name))

    decoder_stage = recipe_modules("vocos.yaml", TINY_VOCOS, tmp_path)
    init_from_pretrained(str(folder), hparams=decoder_stage, generator=decoder_stage["generator"])
    assert_same_weights(decoder_stage["generator"], codec.decoder)

    # a folder in the legacy (Feb 2025) key layout works too
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    shutil.copy(folder / "config.json", legacy)
    torch.save(legacy_state_dict(codec), legacy / "model.pt")
    fresh = recipe_modules("bsq.yaml", TINY_BSQ, tmp_path / "fresh")
    names = ("encoder", "compressor", "decompressor", "decoder")
    init_from_pretrained(legacy, hparams=fresh, **{name: fresh[name] for name in names})
    for name in names:
        assert_same_weights(fresh[name], getattr(codec, name))

    # the fine-tuned modules give the pretrained codec's tokens
    sig = speech()
    with torch.no_grad():
        feats = parts["encoder"].eval()(sig)[0]
        _, toks, _ = parts["quantizer"](parts["compressor"].eval()(feats)[0])
        assert torch.equal(toks, codec.eval().sig_to_toks(sig))


def test_mismatches_are_clear(tmp_path):
    _, folder = tiny_official(tmp_path, compressor_focal_window=14, compressor_focal_factor=4)
    stage = recipe_modules("bsq.yaml", TINY_BSQ, tmp_path)
    with pytest.raises(PretrainedMismatchError) as error:
        init_from_pretrained(folder, hparams=stage, compressor=stage["compressor"])
    message = str(error.value)
    assert "compressor_focal_window: 14  # YAML has 7" in message
    assert "compressor_focal_factor: 4  # YAML has 2" in message
    # without the hparams, the strict load fails and the message lists the pretrained settings
    with pytest.raises(PretrainedMismatchError, match="compressor_focal_window: 14"):
        init_from_pretrained(folder, compressor=stage["compressor"])
    # settings that do not change the computation are not compared (dropout is training-only)
    _, folder = tiny_official(tmp_path / "dropout", decompressor_dropout=0.1)
    init_from_pretrained(folder, hparams=stage, decompressor=stage["decompressor"])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        init_from_pretrained(tmp_path / "nowhere", compressor=stage["compressor"])
    with pytest.raises(ValueError, match="unknown modules"):
        init_from_pretrained(folder, vocoder=stage["decoder"])


@pytest.mark.slow
def test_init_from_run_folders(quantizer_run, decoder_run, tmp_path):
    """A run folder gives its trained parts and its (here random) encoder; the two runs give a whole codec."""
    stage = recipe_modules("bsq.yaml", {**TINY_BSQ, "seed": 5}, tmp_path)  # another seed: other weights
    pretrained = init_from_pretrained(quantizer_run, hparams=stage, compressor=stage["compressor"])
    checkpoint = read_run(quantizer_run).checkpoint()
    assert_same_weights(stage["compressor"], load_state_dict_file(checkpoint / "compressor.ckpt"))
    assert pretrained.encoder_weights == {"random_init": True}
    saved = load_state_dict_file(quantizer_run / "encoder.safetensors")  # the run's random encoder
    assert all(torch.equal(pretrained.state["encoder"][key], value) for key, value in saved.items())
    with pytest.raises(PretrainedMismatchError, match="has no decoder"):
        init_from_pretrained(quantizer_run, decoder=stage["decoder"])
    init_from_pretrained(f"{quantizer_run}+{decoder_run}", hparams=stage, decoder=stage["decoder"])
    codec = codec_from_runs(quantizer_run, decoder_run, allow_random_encoder=True)
    assert_same_weights(stage["decoder"], codec.decoder)


@pytest.mark.slow
def test_quantizer_stage_fine_tunes_from_an_official_folder(small_corpus, tmp_path):
    """``--init_from`` through the real command line: with a zero learning rate the trained modules stay
    the pretrained ones; settings that do not fit are a clear error naming the YAML keys."""
    codec, folder = tiny_official(tmp_path)
    out = tmp_path / "bsq"
    run_recipe(
        "train_quantizer.py",
        "bsq.yaml",
        small_corpus,
        out,
        *QUANTIZER_ARGS,
        "--lr",
        "0",
        "--init_from",
        folder,
    )
    checkpoint = read_run(out).checkpoint()
    for name in ("compressor", "decompressor"):
        module = getattr(codec, name)
        load_checkpoint(module, checkpoint / f"{name}.ckpt")  # strict: same layout
        assert_same_weights(module, getattr(FocalCodec.from_pretrained(folder), name))
    # its run folder records the fine-tuned codec's encoder
    assert read_run(out).encoder_weights == {"checkpoint": str(folder.resolve())}

    _, other = tiny_official(tmp_path / "other", compressor_focal_window=14, compressor_focal_factor=4)
    result = run_recipe(
        "train_quantizer.py", "bsq.yaml", small_corpus, tmp_path / "bad", *QUANTIZER_ARGS,
        "--init_from", other, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "compressor_focal_window: 14" in result.stdout + result.stderr


def test_the_init_from_encoder_goes_where_the_yaml_says(tmp_path):
    """The first recipe: a codec's encoder becomes the frozen encoder, whose causality must match; stage 5:
    it is the trained student's, and the frozen teacher comes from encoder_checkpoint."""
    codec, folder = tiny_official(tmp_path)
    _, causal_folder = tiny_official(tmp_path / "causal", encoder_causal=True)
    quantizer_stage = recipe_modules("bsq.yaml", {**TINY_BSQ, "encoder_random_init": False}, tmp_path)
    assert quantizer_stage["init_from_encoder"] == "encoder"
    assert _load_encoder(quantizer_stage, pretrained_codec(folder)) == {"checkpoint": str(folder.resolve())}
    assert_same_weights(quantizer_stage["encoder"], codec.encoder)
    with pytest.raises(EncoderMismatchError, match="this stage's frozen encoder"):
        _load_encoder(quantizer_stage, pretrained_codec(causal_folder))
    assert recipe_modules("stream/joint.yaml", {}, tmp_path)["init_from_encoder"] == "student_encoder"
