"""The command-line tool ``python -m focalcodec.cli``: encode, decode, resynth with a tiny random codec on
real speech (tests/data/real-speech) and generated audio of other rates and channel counts. Covers
focalcodec/cli/__init__.py, focalcodec/cli/__main__.py, focalcodec/cli/command.py (arguments, the run),
focalcodec/cli/codec.py (the model behind the commands) and focalcodec/cli/files.py (inputs, outputs,
token files, the report)."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers.cli_helpers import (
    REAL_CLIPS,
    REAL_SPEECH,
    TINY_CONFIG,
    expected_signal,
    run_cli,
    speech,
    token_files,
    write_model,
)

from focalcodec import cli
from focalcodec.cli import codec as cli_codec
from focalcodec.codec import FocalCodec

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return write_model(TINY_CONFIG, tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="module")
def model(model_dir) -> FocalCodec:
    return FocalCodec.from_pretrained(model_dir).eval()


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory) -> Path:
    """in/ : the two real clips, sub/stereo_44k.wav (44.1 kHz stereo, 2 s) and sub/deep/odd_22k.flac
    (22.05 kHz mono of an odd length)."""
    folder = tmp_path_factory.mktemp("audio") / "in"
    (folder / "sub" / "deep").mkdir(parents=True)
    for name in REAL_CLIPS:
        shutil.copy(REAL_SPEECH / name, folder / name)
    left = speech(2.0, 44100, seed=1)
    stereo = np.stack([left, 0.5 * np.roll(left, 50)], axis=1)
    sf.write(folder / "sub" / "stereo_44k.wav", stereo, 44100, subtype="PCM_16")
    sf.write(folder / "sub" / "deep" / "odd_22k.flac", speech(30001 / 22050, 22050, seed=2), 22050)
    return folder


def test_encode_decode_real_speech_lengths_and_rates(capsys, model, model_dir, audio_dir, tmp_path):
    status, out = run_cli(capsys, "encode", audio_dir, "--model", model_dir, "--output", tmp_path / "toks")
    assert status == 0, out
    assert "1 file at 22050 Hz resampled to 16000 Hz" in out
    assert "1 file at 44100 Hz resampled to 16000 Hz" in out
    assert "1 stereo file downmixed to mono" in out
    assert "4 files processed" in out and "0 skipped" in out

    records = token_files(tmp_path / "toks")
    assert set(records) == {
        "84-121123-0007.toks.pt",
        "84-121123-0000.toks.pt",
        "sub/stereo_44k.toks.pt",
        "sub/deep/odd_22k.toks.pt",
    }  # the folder structure is mirrored
    for name, record in records.items():
        source = next(audio_dir.glob(name.replace(".toks.pt", ".*")))
        info = sf.info(str(source))
        assert (record["sample_rate"], record["num_samples"]) == (info.samplerate, info.frames)
        assert record["channels"] == info.channels
        assert record["token_rate"] == 50.0 and record["codebook_size"] == 8192
        assert record["config"] == model.to_config()
        # the tokens are the library's, from the downmixed 16 kHz signal
        sig = expected_signal(source)
        assert record["toks"].dtype == torch.int64
        assert record["toks"].shape == ((sig.shape[-1] - 400) // 320 + 1,)
        with torch.no_grad():
            assert torch.equal(record["toks"], model.sig_to_toks(sig[None])[0]), name

    status, out = run_cli(
        capsys, "decode", tmp_path / "toks", "--model", model_dir, "--output", tmp_path / "wav"
    )
    assert status == 0 and "4 files processed" in out, out
    for name, record in records.items():
        wav = tmp_path / "wav" / name.replace(".toks.pt", ".wav")
        info = sf.info(str(wav))
        # the input's duration at the output rate
        assert info.samplerate == 16000 and info.channels == 1
        assert info.frames == round(record["num_samples"] * 16000 / record["sample_rate"]), name
    assert sf.info(str(tmp_path / "wav" / "sub" / "deep" / "odd_22k.wav")).frames == 21769  # 30001 @ 22.05k
    decoded, _ = sf.read(str(tmp_path / "wav" / "84-121123-0007.wav"), dtype="float32")
    with torch.no_grad():
        reference = model.toks_to_sig(records["84-121123-0007.toks.pt"]["toks"][None], output_length=32000)
    np.testing.assert_allclose(decoded, reference[0].clamp(-1, 1).numpy(), atol=1 / 2**15)


def test_corrupt_files_are_reported_and_skipped(capsys, model_dir, audio_dir, tmp_path):
    folder = tmp_path / "in"
    shutil.copytree(audio_dir, folder)
    (folder / "sub" / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really")
    (folder / "notes.flac").write_text("this is text, not FLAC\n")
    (folder / "empty.wav").write_bytes(b"")
    status, out = run_cli(capsys, "encode", folder, "--model", model_dir, "--output", tmp_path / "toks")
    assert status == 0, out
    assert "4 files processed" in out and "3 skipped" in out
    skipped = out.split("Skipped 3 files:")[1]
    for name in ("sub/broken.wav", "notes.flac", "empty.wav"):
        assert str(folder / name) in skipped
    assert len(token_files(tmp_path / "toks")) == 4

    # corrupt token files are skipped by decode in the same way
    (tmp_path / "toks" / "garbage.toks.pt").write_bytes(b"\x00" * 100)
    other = {"toks": torch.tensor([1, 2, 3]), "sample_rate": 16000, "num_samples": 960, "codebook_size": 4096}
    torch.save(other, tmp_path / "toks" / "other_codec.toks.pt")
    status, out = run_cli(
        capsys, "decode", tmp_path / "toks", "--model", model_dir, "--output", tmp_path / "wav"
    )
    assert status == 0 and "4 files processed" in out and "2 skipped" in out, out
    assert "garbage.toks.pt" in out and "encoded with 4096 codes" in out
    assert len(list((tmp_path / "wav").rglob("*.wav"))) == 4

    # nothing readable: non-zero exit status
    bad = tmp_path / "only_bad"
    bad.mkdir()
    (bad / "x.wav").write_bytes(b"junk")
    status, out = run_cli(capsys, "encode", bad, "--model", model_dir, "--output", tmp_path / "none")
    assert status == 1 and "0 files processed" in out and "x.wav" in out


@pytest.mark.parametrize("margin", [cli_codec.SIGN_MARGIN, 1.0])  # 1.0: every batched file is redone alone
def test_tokens_do_not_depend_on_batching(capsys, monkeypatch, model, model_dir, audio_dir, tmp_path, margin):
    folder = tmp_path / "in"
    shutil.copytree(audio_dir, folder)
    clip, rate = sf.read(str(folder / REAL_CLIPS[0]), dtype="float32")
    for index in range(3):  # more files of the same length, so that batches of several files are formed
        sf.write(folder / f"mix{index}.wav", 0.5 * clip + 0.1 * speech(2.0, rate, seed=10 + index), rate)
    monkeypatch.setattr(cli_codec, "SIGN_MARGIN", margin)
    outputs = {}
    for batch_size in (1, 3, 8):
        out_dir = tmp_path / f"toks{batch_size}"
        status, out = run_cli(
            capsys, "encode", folder, "--model", model_dir, "--output", out_dir, "--batch_size", batch_size
        )
        assert status == 0 and "7 files processed" in out, out
        outputs[batch_size] = token_files(out_dir)
    for batch_size in (3, 8):
        assert outputs[batch_size].keys() == outputs[1].keys()
        for name, record in outputs[1].items():
            toks = outputs[batch_size][name]["toks"]
            assert torch.equal(toks, record["toks"]), (batch_size, name)
            assert toks.untyped_storage().nbytes() == toks.numel() * 8  # its own tokens, not the batch's
    with torch.no_grad():  # and they are those of the library, one file at a time
        for name, record in outputs[1].items():
            source = next(folder.glob(name.replace(".toks.pt", ".*")))
            assert torch.equal(record["toks"], model.sig_to_toks(expected_signal(source)[None])[0])


def test_resynth_equals_encode_then_decode(capsys, model_dir, audio_dir, tmp_path):
    common = ["--model", model_dir, "--subtype", "FLOAT"]
    assert run_cli(capsys, "encode", audio_dir, "--model", model_dir, "--output", tmp_path / "toks")[0] == 0
    assert run_cli(capsys, "decode", tmp_path / "toks", *common, "--output", tmp_path / "dec")[0] == 0
    status, out = run_cli(capsys, "resynth", audio_dir, *common, "--output", tmp_path / "res")
    assert status == 0 and "4 files processed" in out
    decoded = sorted((tmp_path / "dec").rglob("*.wav"))
    assert [p.relative_to(tmp_path / "dec") for p in decoded] == [
        p.relative_to(tmp_path / "res") for p in sorted((tmp_path / "res").rglob("*.wav"))
    ]
    for path in decoded:
        first = sf.read(str(path), dtype="float32")[0]
        second = sf.read(str(tmp_path / "res" / path.relative_to(tmp_path / "dec")), dtype="float32")[0]
        np.testing.assert_array_equal(first, second)


def test_single_files_and_output_names(capsys, model_dir, audio_dir, tmp_path):
    files = [audio_dir / REAL_CLIPS[1], audio_dir / "sub" / "stereo_44k.wav"]
    status, out = run_cli(capsys, "resynth", *files, "--model", model_dir, "--output", tmp_path)
    assert status == 0, out
    assert sorted(p.name for p in tmp_path.glob("*.wav")) == ["84-121123-0000.wav", "stereo_44k.wav"]
    # a file named twice is processed once; earlier outputs inside an input folder are not inputs
    folder = tmp_path / "in"
    shutil.copytree(audio_dir, folder)
    for _ in range(2):
        status, out = run_cli(
            capsys,
            "resynth",
            folder,
            folder / REAL_CLIPS[0],
            "--model",
            model_dir,
            "--output",
            folder / "out",
        )
        assert status == 0 and "4 files processed" in out, out
    assert len(list((folder / "out").rglob("*.wav"))) == 4
    # an output that would overwrite an input is refused
    status = cli.main(
        ["resynth", str(tmp_path / "stereo_44k.wav"), "--model", str(model_dir), "--output", str(tmp_path)]
    )
    assert status == 2 and "would overwrite an input" in capsys.readouterr().err


def test_clear_errors(capsys, model_dir, audio_dir, tmp_path):
    status = cli.main(
        ["encode", str(audio_dir), "--model", str(tmp_path / "no_model"), "--output", str(tmp_path)]
    )
    err = capsys.readouterr().err
    assert status == 2 and "no_model" in err and "no such folder" in err
    empty = tmp_path / "empty_model"
    empty.mkdir()
    status = cli.main(["encode", str(audio_dir), "--model", str(empty), "--output", str(tmp_path)])
    err = capsys.readouterr().err
    assert status == 2 and "config.json" in err
    status = cli.main(
        ["encode", str(tmp_path / "missing"), "--model", str(model_dir), "--output", str(tmp_path)]
    )
    assert status == 2 and "input not found" in capsys.readouterr().err
    if not torch.cuda.is_available():
        status = cli.main(
            [
                "encode",
                str(audio_dir),
                "--model",
                str(model_dir),
                "--output",
                str(tmp_path),
                "--device",
                "cuda",
            ]
        )
        assert status == 2 and "CUDA is not available" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(
            [
                "encode",
                str(audio_dir),
                "--model",
                str(model_dir),
                "--output",
                str(tmp_path),
                "--batch_size",
                "0",
            ]
        )


@pytest.mark.slow
def test_real_command_line_on_cpu(model_dir, audio_dir, tmp_path):
    """``python -m focalcodec.cli`` as a user runs it, with ``--device cpu``."""

    def run(*args):
        command = [sys.executable, "-m", "focalcodec.cli", *map(str, args)]
        return subprocess.run(
            [*command, "--model", str(model_dir), "--device", "cpu"],
            cwd=ROOT, capture_output=True, text=True, timeout=300,
        )  # fmt: skip

    result = run("encode", audio_dir / REAL_CLIPS[0], audio_dir / "sub", "--output", tmp_path / "toks")
    assert result.returncode == 0, result.stderr
    assert "on cpu" in result.stdout and "3 files processed" in result.stdout
    assert "encode: 100%" in result.stderr  # the progress bar
    result = run("decode", tmp_path / "toks", "--output", tmp_path / "wav")
    assert result.returncode == 0, result.stderr
    info = sf.info(str(tmp_path / "wav" / "stereo_44k.wav"))  # files given by name: no sub-folder
    assert (info.samplerate, info.frames, info.channels) == (16000, 32000, 1)
