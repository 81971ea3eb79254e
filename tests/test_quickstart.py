"""The README's first command, end to end: ``bash quickstart.sh`` and every output it promises."""

import os
import subprocess

import pytest
import soundfile as sf
from recipe_runner import ROOT, recipe_env

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
    assert (out / "evaluation" / "results.csv").is_file()
    # The final message points at what exists
    for line in result.stdout.split("[quickstart] done.")[1].splitlines()[1:]:
        path = line.split()[0].replace("$OUT", str(out)) if line.strip() else ""
        if path and "*" not in path:
            assert os.path.exists(path), path
