"""The README's first command, end to end: ``bash quickstart.sh`` (and its ``stream`` mode) and every output
it promises."""

import json
import os
import re
import subprocess

import pytest
import soundfile as sf
from helpers.recipe_runner import ROOT, recipe_env

from focalcodec.codec import FocalCodec


@pytest.mark.slow
def test_quickstart(tmp_path):
    out = tmp_path / "quickstart"
    env = {**recipe_env(), "OUT": str(out)}
    result = subprocess.run(
        ["bash", str(ROOT / "quickstart.sh")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert "[quickstart] done" in result.stdout

    for stage in ("bsq", "vocos"):
        run = out / stage
        assert (run / "train_log.txt").read_text().count("epoch:") == 2, stage
        assert list((run / "save").glob("CKPT+*")), stage
        assert (run / "training_curves.png").is_file(), stage
        assert any((run / "tensorboard").iterdir()), stage
    # Whole-codec resynthesis written by the quantizer run's second test stage
    for kind in ("hyp", "rec", "ref"):
        files = list((out / "bsq" / "audios" / "epoch0002").glob(f"*_{kind}.wav"))
        assert files and all(sf.info(str(path)).samplerate == 16000 for path in files), kind
    assert {p.name for p in (out / "exported").iterdir()} == {
        "config.json",
        "model.json",
        "model.safetensors",
    }
    codec = FocalCodec.from_pretrained(out / "exported")
    assert codec.sample_rate == 16000
    table = (out / "evaluation" / "results.md").read_text()
    assert "| reference |" in table and "| tiny |" in table
    assert re.search(
        r"\| tiny \| 50\.0 \| 0\.65 \| -?\d+\.\d\d \[-?\d+\.\d\d, -?\d+\.\d\d\] \|", table
    )  # intervals
    assert (out / "evaluation" / "results.csv").is_file() and (out / "evaluation" / "scores.csv").is_file()
    report = (out / "evaluation" / "report.html").read_text()
    assert report.count("<audio ") == 4 * 2  # 4 utterances: the reference and the codec
    assert "report.html" in result.stdout.split("[quickstart] done.")[1]
    assert "training_curves.png" in (out / "bsq" / "report.html").read_text()
    # The final message points at what exists
    for line in result.stdout.split("[quickstart] done.")[1].splitlines()[1:]:
        path = line.split()[0].replace("$OUT", str(out)) if line.strip() else ""
        if path and "*" not in path:
            assert os.path.exists(path), path


@pytest.mark.slow
def test_stream_quickstart(tmp_path):
    """``bash quickstart.sh stream``: the five FocalCodec-Stream stages chained, export, streaming
    resynthesis and the evaluation table with offline and streaming rows."""
    out = tmp_path / "quickstart_stream"
    env = {**recipe_env(), "OUT": str(out)}
    result = subprocess.run(
        ["bash", str(ROOT / "quickstart.sh"), "stream"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    stages = {"wavenext": "decoder", "conv_posemb": "posemb", "wavlm": "encoder", "bsq": "quantizer"}
    for folder, stage in {**stages, "joint": "joint"}.items():
        assert (out / folder / "train_log.txt").read_text().count("epoch:") == 2, folder
        assert json.loads((out / folder / "parts.json").read_text())["stage"] == stage
    codec = FocalCodec.from_pretrained(out / "exported")
    assert codec.causal and (codec.sample_rate_input, codec.sample_rate_output) == (16000, 24000)
    resynthesized = sorted((out / "resynth").rglob("*.wav"))  # the test-clean tree, mirrored
    assert len(resynthesized) == 6 and all(sf.info(str(path)).samplerate == 24000 for path in resynthesized)
    table = (out / "evaluation" / "results.md").read_text()
    assert "| tiny |" in table and "| tiny-streaming |" in table
    for line in result.stdout.split("[quickstart] done.")[1].splitlines()[1:]:
        path = line.split()[0] if line.strip() else ""
        if path and "*" not in path:
            assert os.path.exists(path), path


def test_an_unknown_quickstart_mode_is_refused():
    result = subprocess.run(["bash", str(ROOT / "quickstart.sh"), "streams"], capture_output=True, text=True)
    assert result.returncode == 2 and "usage: bash quickstart.sh [stream]" in result.stderr
