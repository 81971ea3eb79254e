"""``--streaming`` (``focalcodec/cli/streaming.py``): a causal codec's files coded chunk by chunk equal the
offline command's (tokens exactly, audio within float rounding), the latency and real-time-factor report,
real-time pacing, and the errors for a non-causal model and contradictory options."""

import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers.cli_helpers import (
    REAL_SPEECH,
    TINY_CONFIG,
    causal_config,
    run_cli,
    speech,
    token_files,
    wav_files,
    write_model,
)

from focalcodec import cli
from focalcodec.cli.streaming import Latencies

CHUNK = 1280  # samples: 80 ms at 16 kHz


@pytest.fixture(scope="module")
def causal_dir(tmp_path_factory) -> Path:
    return write_model(causal_config(), tmp_path_factory.mktemp("model") / "causal")


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory) -> Path:
    """Two real clips, a 44.1 kHz file of an odd length, and one of exactly 5 chunks."""
    folder = tmp_path_factory.mktemp("audio")
    for name in ("84-121123-0000.flac", "84-121123-0021.flac"):
        shutil.copy(REAL_SPEECH / name, folder / name)
    sf.write(folder / "odd_44k.wav", speech(1.2345, 44100, seed=3), 44100)
    sf.write(folder / "five_chunks.wav", speech(5 * CHUNK / 16000, 16000, seed=4), 16000)
    return folder


def chunks_of(folder: Path) -> int:
    """Chunks a stream of every file makes (each zero-padded to whole chunks)."""
    total = 0
    for path in folder.iterdir():
        info = sf.info(str(path))
        samples = round(info.frames * 16000 / info.samplerate) if info.samplerate != 16000 else info.frames
        total += -(-samples // CHUNK)
    return total


def test_streaming_equals_offline(capsys, causal_dir, audio_dir, tmp_path):
    common = ["--model", causal_dir, "--subtype", "FLOAT"]
    results = {}
    for mode in ("offline", "streaming"):
        flags = ["--streaming"] if mode == "streaming" else []
        status, out = run_cli(
            capsys, "encode", audio_dir, "--model", causal_dir, "--output", tmp_path / mode, *flags
        )
        assert status == 0 and "4 files processed" in out, out
        status, out_resynth = run_cli(
            capsys, "resynth", audio_dir, *common, "--output", tmp_path / f"r{mode}", *flags
        )
        assert status == 0, out_resynth
        status, out_decode = run_cli(
            capsys, "decode", tmp_path / mode, *common, "--output", tmp_path / f"d{mode}", *flags
        )
        assert status == 0, out_decode
        results[mode] = (
            token_files(tmp_path / mode),
            wav_files(tmp_path / f"r{mode}"),
            wav_files(tmp_path / f"d{mode}"),
        )
        if mode == "streaming":
            for text in (out, out_resynth):  # one latency per 80 ms chunk
                assert f"streaming: {chunks_of(audio_dir)} chunks of 80 ms" in text, text
                assert "p50" in text and "p95" in text and "max" in text and "real-time factor" in text
            assert "streaming:" in out_decode and "real-time factor" in out_decode
        else:
            assert "streaming:" not in out
    offline, streamed = results["offline"], results["streaming"]
    assert offline[0].keys() == streamed[0].keys() and len(offline[0]) == 4
    for name, record in offline[0].items():
        assert torch.equal(streamed[0][name]["toks"], record["toks"]), name
    for kind in (1, 2):  # resynth, decode: 24 kHz wavs of the original duration
        assert offline[kind].keys() == streamed[kind].keys() and len(offline[kind]) == 4
        for name, sig in offline[kind].items():
            assert sig.shape == streamed[kind][name].shape
            np.testing.assert_allclose(streamed[kind][name], sig, atol=1e-5, err_msg=name)
    assert sf.info(str(tmp_path / "rstreaming" / "odd_44k.wav")).frames == round(1.2345 * 24000)


def test_realtime_pacing_takes_the_audio_duration(capsys, causal_dir, audio_dir, tmp_path):
    start = time.monotonic()
    status, out = run_cli(
        capsys, "encode", audio_dir / "five_chunks.wav", "--model", causal_dir, "--output", tmp_path,
        "--streaming", "--realtime",
    )  # fmt: skip
    assert status == 0, out
    assert time.monotonic() - start >= 5 * 0.08  # each chunk waited for its audio
    assert "streaming: 5 chunks of 80 ms" in out and "paced in real time:" in out


def test_non_causal_model_and_bad_options_are_refused(capsys, audio_dir, tmp_path):
    model_dir = write_model(TINY_CONFIG, tmp_path / "non_causal")
    args = ["resynth", str(audio_dir), "--model", str(model_dir), "--output", str(tmp_path / "out")]
    assert cli.main([*args, "--streaming"]) == 2
    err = capsys.readouterr().err
    assert "--streaming needs a causal model" in err and "not causal" in err
    assert not (tmp_path / "out").exists()
    for extra in (["--realtime"], ["--streaming", "--batch_size", "2"]):
        with pytest.raises(SystemExit):
            cli.main([*args, *extra])
        assert (
            "add --streaming" if extra == ["--realtime"] else "one file at a time"
        ) in capsys.readouterr().err


def test_latency_statistics():
    latencies = Latencies(chunk_seconds=0.08, seconds=[0.01 * n for n in range(1, 21)], audio_seconds=1.6)
    assert latencies.percentile(50) == pytest.approx(0.10)
    assert latencies.percentile(95) == pytest.approx(0.19)
    assert latencies.percentile(100) == pytest.approx(0.20)
    assert latencies.real_time_factor == pytest.approx(2.1 / 1.6)
    (line,) = latencies.summary(realtime=False)
    assert "20 chunks of 80 ms" in line and "p50 100.0 ms, p95 190.0 ms, max 200.0 ms" in line
    assert "real-time factor 1.312" in line and "does not keep up" in line
    fast = Latencies(0.08, [0.01, 0.02], 0.16, late=0)
    assert "keeps up with real time" in fast.summary(realtime=True)[0]
    assert "0 chunks late" in fast.summary(realtime=True)[1]
