"""Export: recipe runs -> one codec in the official format (``utils/runs/export.py``, ``export_codec.py``).

The runs are real tiny quantizer and decoder stages through their command line on a generated corpus
(tests/conftest.py); ``export_codec.py`` is run as a user does. The exported codec must give the tokens and
audio of the recipe modules loaded from the checkpoints.
"""

import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf
import torch
from helpers.recipe_runner import ROOT, recipe_env
from helpers.run_helpers import (
    SPEECH,
    TINY_BSQ,
    TINY_VOCOS,
    assert_same_weights,
    copy_run,
    export,
    load_checkpoint,
    recipe_modules,
    speech,
)

from focalcodec.codec import FocalCodec
from focalcodec.streaming import CodecStream
from utils.runs import RunFolderError, RunMismatchError, codec_from_runs, read_run


def assert_matches_recipe(
    codec: FocalCodec, quantizer_yaml: str, quantizer_run: Path, decoder_run: Path, tmp_path
):
    """Tokens and audio of ``codec`` = those of the recipe modules (rebuilt from the YAML with the training
    seed, so the same random encoder) loaded from the run checkpoints."""
    stage = recipe_modules(quantizer_yaml, TINY_BSQ, tmp_path)
    checkpoint = read_run(quantizer_run).checkpoint()
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
    assert_same_weights(same, codec)

    # an existing export is not overwritten by accident
    again = export(
        "--quantizer", quantizer_run, "--decoder", decoder_run, "--output", folder, "--allow_random_encoder"
    )
    assert again.returncode == 2 and "--overwrite" in again.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    ("run", "yaml_file", "rate", "bitrate", "factors", "num_tokens"),
    [  # 99 frames at 50 Hz -> ceil(99 / 2) tokens at 25 Hz, ceil(ceil(99 / 2) / 2) at 12.5 Hz
        ("quantizer_run_25hz", "bsq_25hz.yaml", 25, "325 bps = 0.33 kbps", [2, 1, 1], 50),
        ("quantizer_run_12_5hz", "bsq_12_5hz.yaml", 12.5, "162.5 bps = 0.16 kbps", [2, 2, 1], 25),
    ],
)
def test_export_lower_token_rates(
    request, run, yaml_file, rate, bitrate, factors, num_tokens, decoder_run, tmp_path
):
    run = request.getfixturevalue(run)  # the session's run of that YAML (tests/conftest.py)
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


@pytest.mark.slow
def test_mismatching_runs_are_clear_errors(quantizer_run, decoder_run, tmp_path):
    # the decoder stage trained on another encoder (another config, or other weights)
    other = copy_run(decoder_run, tmp_path / "other_encoder", {"parts.encoder.config.dim": 48})
    result = export(
        "--quantizer", quantizer_run, "--decoder", other, "--output", tmp_path / "x", "--allow_random_encoder"
    )
    assert (
        result.returncode == 1 and "different encoders" in result.stderr and "dim: 64 vs 48" in result.stderr
    )
    reseeded = copy_run(decoder_run, tmp_path / "seed1", {"encoder_sha256": "0" * 64})
    with pytest.raises(RunMismatchError, match="the encoder weights differ"):
        codec_from_runs(quantizer_run, reseeded, allow_random_encoder=True)
    # a decoder of another input size
    wider = copy_run(decoder_run, tmp_path / "wider", {"parts.decoder.config.input_dim": 96})
    with pytest.raises(RunMismatchError, match=r"Feature dimensions do not match.*decoder input_dim 96"):
        codec_from_runs(quantizer_run, wider, allow_random_encoder=True)
    # swapped stages, and folders that are not runs
    with pytest.raises(RunFolderError, match="did you swap"):
        codec_from_runs(decoder_run, quantizer_run, allow_random_encoder=True)
    with pytest.raises(FileNotFoundError, match="is not a training run"):
        codec_from_runs(tmp_path, decoder_run)


@pytest.mark.slow
def test_export_with_a_pretrained_encoder(quantizer_run, decoder_run, tmp_path):
    """The encoder of a run trained on real weights comes from where the run recorded them (here an
    official-format folder), or from --encoder_checkpoint, which must be those weights."""
    source = codec_from_runs(quantizer_run, decoder_run, allow_random_encoder=True)
    official = source.to_pretrained(tmp_path / "official")
    weights = {"encoder_weights": {"checkpoint": str(official)}}
    quantizer = copy_run(quantizer_run, tmp_path / "bsq", weights)
    decoder = copy_run(decoder_run, tmp_path / "vocos", weights)
    codec = codec_from_runs(quantizer, decoder)
    assert codec.to_config() == source.to_config()
    assert_same_weights(codec, source)
    # the option gives the same weights from a FocalCodec weight file
    codec = codec_from_runs(quantizer, decoder, encoder_checkpoint=official / "model.safetensors")
    assert_same_weights(codec.encoder, source.encoder)
    # other weights than the run's are refused, and a missing file is a clear error
    with torch.no_grad():
        for parameter in source.encoder.parameters():
            parameter.mul_(0.5)
    other = source.to_pretrained(tmp_path / "other") / "model.safetensors"
    with pytest.raises(RunFolderError, match="are not the encoder weights"):
        codec_from_runs(quantizer, decoder, encoder_checkpoint=other)
    missing = copy_run(
        quantizer_run, tmp_path / "bsq_missing", {"encoder_weights": {"checkpoint": "nowhere.pt"}}
    )
    with pytest.raises(FileNotFoundError, match=r"nowhere\.pt"):
        codec_from_runs(missing, decoder)


@pytest.mark.slow
def test_the_stream_chain_exports_a_causal_codec_that_streams(
    joint_run, wavenext_run, stream_bsq_run, tmp_path
):
    """FocalCodec-Stream: the joint stage's run (its trained encoder) + the WaveNeXt run -> a causal codec,
    16 kHz in, 24 kHz out, which streams chunk by chunk (CodecStream and the command line)."""
    output = tmp_path / "stream"
    result = export(
        "--quantizer", joint_run, "--decoder", wavenext_run, "--output", output, "--allow_random_encoder"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Input 16000 Hz, output 24000 Hz" in result.stdout and "0.60 kbps" in result.stdout
    codec = FocalCodec.from_pretrained(output / "model")  # the stem the upstream package opens
    assert codec.causal and codec.latency == 80.0 and codec.decompressor.config["lookahead_size"] == 3
    checkpoint = read_run(joint_run).checkpoint()
    for part, file in (
        ("encoder", "student_encoder"),
        ("compressor", "compressor"),
        ("decompressor", "decompressor"),
    ):
        load = torch.load(checkpoint / f"{file}.ckpt")
        assert_same_weights(getattr(codec, part), load)
    assert_same_weights(codec.decoder, torch.load(read_run(wavenext_run).checkpoint() / "generator.ckpt"))

    sig = speech()[:, :25600]  # 20 chunks of 1280 samples
    with torch.no_grad():
        toks, _, audio = codec(sig)
    stream = CodecStream(codec)
    outputs = [stream.push(piece) for piece in sig.split(1000, dim=1)] + [stream.flush()]
    assert torch.equal(torch.cat([out.toks for out in outputs], dim=1), toks)
    torch.testing.assert_close(torch.cat([out.sig for out in outputs], dim=1), audio, atol=1e-4, rtol=1e-4)
    resynth = subprocess.run(
        [sys.executable, "-m", "focalcodec.cli", "resynth", str(SPEECH), "--model", str(output),
         "--output", str(tmp_path / "resynth"), "--streaming"],
        cwd=ROOT, env=recipe_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert resynth.returncode == 0, resynth.stderr[-3000:]
    info = sf.info(str(tmp_path / "resynth" / f"{SPEECH.stem}.wav"))
    assert info.samplerate == 24000 and info.frames == 3 * sf.info(str(SPEECH)).frames // 2
    # Stage 4 alone does not pair with the decoder: it was trained on the distilled encoder's features
    with pytest.raises(RunMismatchError, match="different encoders"):
        codec_from_runs(stream_bsq_run, wavenext_run, allow_random_encoder=True)
