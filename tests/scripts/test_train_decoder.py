"""The decoder stage through its real command line (train_decoder.py; the Brain step by step:
tests/training/test_decoder_stage.py): logs, checkpoints, audio, TensorBoard, resume, two processes, debug."""

import re
import shutil
from pathlib import Path

import pytest
import soundfile as sf
import torch
import yaml
from helpers.recipe_runner import (
    assert_test_loss_is_batch_mean,
    kill_mid_epoch,
    recipe_command,
    run_recipe,
    run_torchrun,
)

from utils.evaluation import read_scores
from utils.runs import read_run
from utils.training.train_logger import parse_train_log

ARGS = ["--train_batch_size", "2", "--valid_size", "2"]


def checkpoints(output_folder: Path) -> list[Path]:
    return sorted((output_folder / "save").glob("CKPT+*"))


@pytest.mark.slow
def test_end_to_end(decoder_run):
    rows = parse_train_log(decoder_run / "train_log.txt")
    epoch = next(row for row in rows if "epoch" in row)
    assert epoch["epoch"] == 1
    for key in ("train loss", "train D_loss", "train mel_loss", "valid loss", "valid mel_loss", "lr"):
        assert key in epoch, key
    # valid_metrics_every 1: validation is scored too (offline: by the fallbacks)
    assert 1 < epoch["valid DNSMOS-OVRL"] < 5 and -1 <= epoch["valid Sim-Resemblyzer"] <= 1
    assert rows[-1]["Epoch loaded"] == 1 and "test loss" in rows[-1]
    # Offline: UTMOS and Sim are unavailable, their fallbacks are reported under their own names
    assert 1 < rows[-1]["test DNSMOS-OVRL"] < 5 and -1 <= rows[-1]["test Sim-Resemblyzer"] <= 1
    assert "test UTMOS" not in rows[-1] and "test Sim" not in rows[-1]
    report = (decoder_run / "metrics.txt").read_text()
    assert "UTMOS: unavailable" in report and "Sim: unavailable" in report
    ckpt = checkpoints(decoder_run)
    assert len(ckpt) == 1
    for name in (
        "generator",
        "discriminator",
        "optimizer_generator",
        "optimizer_discriminator",
        "counter",
        "brain",
    ):
        assert (ckpt[0] / f"{name}.ckpt").is_file(), name
    audios = sorted((decoder_run / "audios" / "epoch0001").glob("*.wav"))
    names = {path.name.rsplit("_", 1)[1] for path in audios}
    assert names == {"hyp.wav", "ref.wav"} and len(audios) == 2 * 2 * 2  # valid + test share the folder
    for path in audios:
        info = sf.info(str(path))
        assert info.samplerate == 16000 and info.frames > 16000
    # The test stage's listening report: its own audio (not validation's), its scores, the curves so far
    test_ids = {score.id for score in read_scores(decoder_run / "scores.csv")["decoder"]}
    page = (decoder_run / "report.html").read_text()
    played = re.findall(r'src="audios/epoch0001/([^"]+)_hyp\.wav"', page)
    assert len(played) == 2 and set(played) <= test_ids and page.count("<audio ") == 2 * 2
    assert 'src="report_files/training_curves.png"' in page and "DNSMOS-OVRL" in page


@pytest.mark.slow
def test_progress_figures_every_n_steps_and_at_validation(decoder_run):
    """3 training steps, progress_every_steps 2: after step 2, and at the validation after step 3."""
    rows = [row for row in parse_train_log(decoder_run / "train_log.txt") if "progress mel_distance" in row]
    assert [row["steps"] for row in rows] == [2, 3]
    for row in rows:
        assert row["progress mel_distance"] > 0 and 1 <= row["progress DNSMOS-OVRL"] <= 5


@pytest.mark.slow
def test_tensorboard_and_curves(decoder_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(decoder_run / "tensorboard"), size_guidance={"audio": 0, "images": 0})
    events.Reload()
    tags = events.Tags()
    scalars = ("train/loss", "train/mel_loss", "train/D_loss", "valid/loss", "lr", "test/DNSMOS-OVRL")
    for scalar in (*scalars, "progress/mel_distance", "progress/DNSMOS-OVRL"):
        assert scalar in tags["scalars"], scalar
    assert [event.step for event in events.Scalars("progress/mel_distance")] == [2, 3]
    assert any(tag.startswith("valid/") and tag.endswith("/hyp") for tag in tags["audio"])
    assert any(tag.startswith("valid/") and tag.endswith("/ref") for tag in tags["audio"])
    assert any(tag.startswith("valid/") and tag.endswith("/mel") for tag in tags["images"])
    assert (decoder_run / "training_curves.png").stat().st_size > 1000


@pytest.mark.slow
def test_quantizer_reads_the_decoder_checkpoint(small_corpus, decoder_run, tmp_path):
    out = tmp_path / "bsq"
    splits = ["--train_split", "[train-clean-100]", "--num_epochs", "1", "--train_batch_size", "2"]
    # the decoder is built from the decoder run's parts.json: the YAML's decoder_* settings do not matter
    run_recipe(
        "train_quantizer.py", "bsq.yaml", small_corpus, out, *splits,
        "--decoder_checkpoint", str(decoder_run), "--decoder_dim", "48",
    )  # fmt: skip
    written = {path.name.rsplit("_", 1)[1] for path in (out / "audios").rglob("*.wav")}
    assert written == {"hyp.wav", "rec.wav", "ref.wav"}
    # a bare weight file must fit the decoder_* settings: a mismatch is an error, not a warning
    bare = tmp_path / "generator.ckpt"
    shutil.copy(next(checkpoints(decoder_run)[0].glob("generator.ckpt")), bare)
    result = run_recipe(
        "train_quantizer.py", "bsq.yaml", small_corpus, tmp_path / "bad", *splits,
        "--decoder_checkpoint", str(bare), "--decoder_dim", "48", check=False,
    )  # fmt: skip
    assert result.returncode != 0 and "does not fit the decoder_* settings" in result.stdout + result.stderr


@pytest.mark.slow
def test_resume_after_sigkill(small_corpus, tmp_path):
    out = tmp_path / "vocos"
    args = [*ARGS, "--num_epochs", "2", "--ckpt_interval_steps", "1"]
    kill_mid_epoch(recipe_command("train_decoder.py", "vocos.yaml", small_corpus, out, *args), out)

    run_recipe("train_decoder.py", "vocos.yaml", small_corpus, out, *args)
    epochs = [row["epoch"] for row in parse_train_log(out / "train_log.txt") if "epoch" in row]
    assert epochs == [1, 2], epochs
    ckpt = checkpoints(out)[-1]
    brain = yaml.safe_load((ckpt / "brain.ckpt").read_text())
    assert brain["optimizer_step"] == 2 * 3  # 6 utterances, batches of 2
    for name in ("optimizer_generator", "optimizer_discriminator"):
        state = torch.load(ckpt / f"{name}.ckpt")
        assert int(state["state"][0]["step"]) == 6, name


@pytest.mark.slow
def test_two_process_ddp_gloo(small_corpus, tmp_path):
    out = tmp_path / "vocos"
    command = recipe_command("train_decoder.py", "vocos.yaml", small_corpus, out, *ARGS, "--num_epochs", "1")
    result = run_torchrun(command, port=29534)
    assert result.returncode == 0, result.stderr[-5000:]
    rows = parse_train_log(out / "train_log.txt")
    assert rows[0]["epoch"] == 1 and "test loss" in rows[-1]


@pytest.mark.slow
def test_debug_mode(small_corpus, tmp_path):
    out = tmp_path / "vocos"
    run_recipe(
        "train_decoder.py",
        "vocos.yaml",
        small_corpus,
        out,
        *ARGS,
        "--debug",
        "--debug_persistently",
        "--debug_batches",
        "1",
        "--debug_epochs",
        "1",
    )
    assert "test loss" in parse_train_log(out / "train_log.txt")[-1]
    shutil.rmtree(out)


@pytest.mark.slow
def test_wavenext_stage_end_to_end(wavenext_run):
    rows = parse_train_log(wavenext_run / "train_log.txt")
    assert {"train loss", "train mel_loss", "valid loss", "lr"} <= rows[0].keys()
    assert rows[-1]["Epoch loaded"] == 1 and "test mel_loss" in rows[-1]
    record = read_run(wavenext_run)
    assert record.parts["decoder"].name == "WaveNeXt" and record.parts["decoder"].config["causal"]
    assert record.parts["decoder"].config["hop_length"] == 480
    audios = sorted((wavenext_run / "audios" / "epoch0001").glob("*.wav"))
    assert len(audios) == 2 * 2 * 2  # hyp and ref of 2 valid and 2 test utterances
    for path in audios:  # 24 kHz, the length of the input
        info = sf.info(str(path))
        ref = sf.info(str(path).replace("_hyp", "_ref"))
        assert info.samplerate == 24000 and info.frames == ref.frames > 24000


@pytest.mark.slow
@pytest.mark.parametrize("run", ["decoder_run", "wavenext_run"])
def test_logged_test_loss_is_the_batch_mean(run, request):
    assert_test_loss_is_batch_mean(request.getfixturevalue(run))
