"""Export (recipe runs -> official format) and import (official format -> recipe modules).

The runs are real tiny quantizer and decoder stages through their command line on a generated corpus;
``export_codec.py`` is run as a user does. The exported codec must give the tokens and audio of the
recipe modules loaded from the checkpoints.
"""

import inspect
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf
import torch
import yaml
from conftest import QUANTIZER_ARGS
from recipe_runner import ROOT, load_hparams, recipe_env, run_recipe
from test_codec import legacy_state_dict

from focalcodec.codec import FocalCodec
from focalcodec.focalnet import FocalDecoder, FocalEncoder
from focalcodec.vocos import Vocos
from focalcodec.wavlm import WavLM
from utils.pretrained import (
    PretrainedMismatchError,
    RunMismatchError,
    codec_from_runs,
    find_quantizer_checkpoint,
    init_from_pretrained,
)

TINY_BSQ = yaml.safe_load((ROOT / "hparams" / "tiny" / "bsq.yaml").read_text())
TINY_VOCOS = yaml.safe_load((ROOT / "hparams" / "tiny" / "vocos.yaml").read_text())
SPEECH = ROOT / "tests" / "data" / "real-speech" / "84-121123-0007.wav"  # 2 s at 16 kHz


def export(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "export_codec.py"), *map(str, args)],
        cwd=ROOT, env=recipe_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def recipe_modules(yaml_file: str, tiny: dict, tmp_path: Path) -> dict:
    """The YAML's modules as training built them (same seed, same overrides), e.g. its random encoder."""
    overrides = {**tiny, "train_batch_size": 2, "valid_size": 2, "num_epochs": 1}
    return load_hparams(yaml_file, {**overrides, "output_folder": str(tmp_path / yaml_file)})


def load_checkpoint(module: torch.nn.Module, file: Path) -> None:
    module.load_state_dict(torch.load(file, map_location="cpu"), strict=True)


def speech() -> torch.Tensor:
    sig, rate = sf.read(str(SPEECH), dtype="float32")
    assert rate == 16000
    return torch.from_numpy(sig)[None]


def assert_matches_recipe(
    codec: FocalCodec, quantizer_yaml: str, quantizer_run: Path, decoder_run: Path, tmp_path
):
    """Tokens and audio of ``codec`` = those of the recipe modules loaded from the run checkpoints."""
    stage = recipe_modules(quantizer_yaml, TINY_BSQ, tmp_path)
    checkpoint = find_quantizer_checkpoint(quantizer_run)
    for name in ("compressor", "quantizer", "decompressor"):
        load_checkpoint(stage[name], checkpoint / f"{name}.ckpt")
    generator = recipe_modules("vocos.yaml", TINY_VOCOS, tmp_path)["generator"]
    load_checkpoint(generator, next((decoder_run / "save").glob("CKPT+*/generator.ckpt")))
    sig = speech()
    with torch.no_grad():
        feats = stage["encoder"].eval()(sig)[0]
        codes, toks, _ = stage["quantizer"](stage["compressor"].eval()(feats)[0])
        audio = generator.eval()(stage["decompressor"].eval()(codes)[0])[0]

        assert torch.equal(codec.sig_to_feats(sig), feats)
        codec_toks = codec.sig_to_toks(sig)
        assert torch.equal(codec_toks, toks)
        torch.testing.assert_close(codec.toks_to_codes(codec_toks), codes)
        torch.testing.assert_close(codec.toks_to_sig(codec_toks), audio, rtol=1e-4, atol=1e-5)
    return toks


@pytest.mark.slow
def test_export_round_trip(quantizer_run, decoder_run, tmp_path):
    folder = tmp_path / "codec"
    result = export(
        "--quantizer", quantizer_run, "--decoder", decoder_run, "--output", folder, "--allow_random_encoder"
    )
    assert result.returncode == 0, result.stderr
    assert sorted(path.name for path in folder.iterdir()) == [
        "config.json",
        "model.json",
        "model.safetensors",
    ]
    assert "Token rate 50 Hz" in result.stdout and "650 bps = 0.65 kbps" in result.stdout
    assert "RANDOMLY INITIALISED" in result.stdout

    codec = FocalCodec.from_pretrained(folder).eval()
    toks = assert_matches_recipe(codec, "bsq.yaml", quantizer_run, decoder_run, tmp_path)
    assert toks.shape == (1, (32000 - 400) // 320 + 1)
    # the in-process API builds the same codec
    same = codec_from_runs(quantizer_run, decoder_run, allow_random_encoder=True)
    assert same.to_config() == codec.to_config()
    for key, value in same.state_dict().items():
        assert torch.equal(value, codec.state_dict()[key]), key

    # an existing export is not overwritten by accident
    again = export(
        "--quantizer", quantizer_run, "--decoder", decoder_run, "--output", folder, "--allow_random_encoder"
    )
    assert again.returncode == 2 and "--overwrite" in again.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    ("yaml_file", "rate", "bitrate", "factors", "num_tokens"),
    [
        ("bsq_25hz.yaml", 25, "325 bps = 0.33 kbps", [2, 1, 1], 50),  # 99 frames at 50 Hz -> ceil(99 / 2)
        ("bsq_12_5hz.yaml", 12.5, "162.5 bps = 0.16 kbps", [2, 2, 1], 25),  # -> ceil(ceil(99 / 2) / 2)
    ],
)
def test_export_lower_token_rates(
    request, yaml_file, rate, bitrate, factors, num_tokens, decoder_run, tmp_path
):
    run = request.getfixturevalue(f"quantizer_run_{yaml_file.removeprefix('bsq_').removesuffix('.yaml')}")
    folder = tmp_path / "codec"
    result = export(
        "--quantizer", run, "--decoder", decoder_run, "--output", folder, "--allow_random_encoder"
    )
    assert result.returncode == 0, result.stderr
    assert f"Token rate {rate:g} Hz" in result.stdout and bitrate in result.stdout
    codec = FocalCodec.from_pretrained(folder).eval()
    assert codec.token_rate == rate
    assert codec.to_config()["compressor_config"]["downscale_factors"] == factors
    toks = assert_matches_recipe(codec, yaml_file, run, decoder_run, tmp_path)
    assert toks.shape == (1, num_tokens)
    with torch.no_grad():
        toks, _, rec = codec(speech())
    assert rec.shape == (1, 32000)


@pytest.mark.slow
def test_random_encoder_needs_the_flag(quantizer_run, decoder_run, tmp_path):
    result = export("--quantizer", quantizer_run, "--decoder", decoder_run, "--output", tmp_path / "codec")
    assert result.returncode == 1
    assert "RANDOMLY INITIALISED" in result.stderr and "--allow_random_encoder" in result.stderr
    assert not (tmp_path / "codec").exists()
    with pytest.raises(RunMismatchError, match="--encoder_checkpoint cannot be used"):
        codec_from_runs(quantizer_run, decoder_run, encoder_checkpoint=tmp_path, allow_random_encoder=True)


def copy_run(run: Path, destination: Path, **replacements: str) -> Path:
    """A copy of a run (checkpoints linked) whose hyperparams.yaml has some lines replaced."""
    destination.mkdir(parents=True)
    (destination / "save").symlink_to(run / "save")
    text = (run / "hyperparams.yaml").read_text()
    for old, new in replacements.items():
        assert old in text, old
        text = text.replace(old, new)
    (destination / "hyperparams.yaml").write_text(text)
    return destination


@pytest.mark.slow
def test_mismatching_runs_are_clear_errors(quantizer_run, decoder_run, tmp_path):
    # the decoder stage trained on another encoder
    other = copy_run(decoder_run, tmp_path / "other_encoder", **{"\n  dim: 64\n": "\n  dim: 48\n"})
    result = export(
        "--quantizer", quantizer_run, "--decoder", other, "--output", tmp_path / "x", "--allow_random_encoder"
    )
    assert (
        result.returncode == 1 and "different encoders" in result.stderr and "dim: 64 vs 48" in result.stderr
    )
    # a decoder of another input size
    wider = copy_run(
        decoder_run, tmp_path / "wider", **{"generator_input_dim: 64": "generator_input_dim: 96"}
    )
    text = (wider / "hyperparams.yaml").read_text()
    text, count = re.subn(r"(\ngenerator: [^\n]*Vocos\n  input_dim:) 64\n", r"\1 96\n", text)
    assert count == 1
    (wider / "hyperparams.yaml").write_text(text)
    with pytest.raises(RunMismatchError, match=r"Feature dimensions do not match.*input_dim 96"):
        codec_from_runs(quantizer_run, wider, allow_random_encoder=True)
    # another seed: another random encoder
    seeded = copy_run(decoder_run, tmp_path / "seed1", **{"seed_everything [0]": "seed_everything [1]"})
    with pytest.raises(RunMismatchError, match="different random encoders"):
        codec_from_runs(quantizer_run, seeded, allow_random_encoder=True)
    # swapped stages, and folders that are not runs
    with pytest.raises(RunMismatchError, match="did you swap"):
        codec_from_runs(decoder_run, quantizer_run, allow_random_encoder=True)
    with pytest.raises(FileNotFoundError, match="is not a training run"):
        codec_from_runs(tmp_path, decoder_run)


@pytest.mark.slow
def test_export_with_a_pretrained_encoder(quantizer_run, decoder_run, tmp_path):
    """The encoder of a run without encoder_random_init comes from its encoder_checkpoint (or the
    --encoder_checkpoint option): here an official-format folder whose encoder differs from the seeded one."""
    source = codec_from_runs(quantizer_run, decoder_run, allow_random_encoder=True)
    with torch.no_grad():
        for parameter in source.encoder.parameters():
            parameter.mul_(0.5)
    official = source.to_pretrained(tmp_path / "official")
    flags = {"encoder_random_init: true": "encoder_random_init: false"}
    replacements = {**flags, "encoder_checkpoint:\n": f"encoder_checkpoint: {official}\n"}
    quantizer = copy_run(quantizer_run, tmp_path / "bsq", **replacements)
    decoder = copy_run(decoder_run, tmp_path / "vocos", **replacements)
    codec = codec_from_runs(quantizer, decoder)
    assert codec.to_config() == source.to_config()
    assert_same_weights(codec, source)

    # the option wins over the run's setting (here a FocalCodec weight file); a missing file is a clear error
    with torch.no_grad():
        for parameter in source.encoder.parameters():
            parameter.mul_(2)
    other = source.to_pretrained(tmp_path / "other") / "model.safetensors"
    codec = codec_from_runs(quantizer, decoder, encoder_checkpoint=other)
    assert_same_weights(codec.encoder, source.encoder)
    missing = {**flags, "encoder_checkpoint:\n": "encoder_checkpoint: nowhere/wavlm6.pt\n"}
    with pytest.raises(FileNotFoundError, match="pass --encoder_checkpoint"):
        codec_from_runs(copy_run(quantizer_run, tmp_path / "bsq_missing", **missing), decoder)


def test_quantizer_checkpoint_choice(tmp_path):
    save = tmp_path / "run" / "save"
    metas = {"a": "loss: 0.5\nunixtime: 3\n", "b": "loss: -0.2\nunixtime: 1\n", "c": "unixtime: 9\n"}
    for name, meta in metas.items():
        folder = save / f"CKPT+{name}"
        folder.mkdir(parents=True)
        (folder / "CKPT.yaml").write_text(meta + "end-of-epoch: true\n")
        for file in ("compressor.ckpt", "quantizer.ckpt", "decompressor.ckpt"):
            (folder / file).write_bytes(b"")
    (save / "CKPT+pending").mkdir()  # killed while saving: no CKPT.yaml
    assert find_quantizer_checkpoint(tmp_path / "run").name == "CKPT+b"  # lowest loss
    assert find_quantizer_checkpoint(save, "latest").name == "CKPT+c"
    assert find_quantizer_checkpoint(save / "CKPT+a", "latest").name == "CKPT+a"  # given explicitly
    with pytest.raises(FileNotFoundError, match="No quantizer-stage checkpoint"):
        find_quantizer_checkpoint(tmp_path)


# --------------------------------------------------------------------------------------------------
# Import: initialising recipe modules from an official-format folder


def tiny_official(tmp_path: Path, **changes) -> tuple[FocalCodec, Path]:
    """An official-format folder of a random codec with the tiny recipe settings (+ ``changes``)."""
    hparams = recipe_modules("bsq.yaml", {**TINY_BSQ, **changes}, tmp_path / "build")

    def kwargs(cls: type, prefix: str) -> dict:
        names = inspect.signature(cls).parameters
        return {name: hparams[prefix + name] for name in names if prefix + name in hparams}

    torch.manual_seed(1)
    codec = FocalCodec(
        encoder_name="WavLM",
        encoder_config=kwargs(WavLM, "encoder_"),
        compressor_name="FocalEncoder",
        compressor_config=kwargs(FocalEncoder, "compressor_"),
        quantizer_name="BinarySphericalQuantizer",
        quantizer_config={"codebook_size": 2 ** hparams["quantizer_code_dim"]},
        decompressor_name="FocalDecoder",
        decompressor_config=kwargs(FocalDecoder, "decompressor_"),
        decoder_name="Vocos",
        decoder_config=kwargs(Vocos, "decoder_"),
    )
    return codec, codec.to_pretrained(tmp_path / "official")


def assert_same_weights(module: torch.nn.Module, reference: torch.nn.Module) -> None:
    state = module.state_dict()
    assert state.keys() == reference.state_dict().keys()
    for key, value in reference.state_dict().items():
        assert torch.equal(state[key], value), key


def test_init_from_pretrained_both_stages(tmp_path):
    codec, folder = tiny_official(tmp_path)
    quantizer_stage = recipe_modules("bsq.yaml", TINY_BSQ, tmp_path)
    parts = {
        name: quantizer_stage[name]
        for name in ("encoder", "compressor", "quantizer", "decompressor", "decoder")
    }
    config = init_from_pretrained(folder, hparams=quantizer_stage, **parts)
    assert config == codec.to_config()
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


def test_init_from_pretrained_mismatches_are_clear(tmp_path):
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
    checkpoint = find_quantizer_checkpoint(out)
    for name in ("compressor", "decompressor"):
        module = getattr(codec, name)
        load_checkpoint(module, checkpoint / f"{name}.ckpt")  # strict: same layout
        assert_same_weights(module, getattr(FocalCodec.from_pretrained(folder), name))

    _, other = tiny_official(tmp_path / "other", compressor_focal_window=14, compressor_focal_factor=4)
    result = run_recipe(
        "train_quantizer.py", "bsq.yaml", small_corpus, tmp_path / "bad", *QUANTIZER_ARGS,
        "--init_from", other, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "compressor_focal_window: 14" in result.stdout + result.stderr
