"""Checkpoints with several processes: a checkpoint at every step, over several epochs, never hangs a run
(SpeechBrain's deletion once listed the folder on every process, racing the main process's publication:
utils/training/checkpointer.py), and a 2-process run killed inside an epoch resumes under 2 processes."""

import pytest
import yaml
from helpers.recipe_runner import (
    kill_mid_epoch,
    parse_train_log,
    recipe_command,
    run_torchrun,
    torchrun_command,
)

pytestmark = pytest.mark.slow

EPOCHS = 4
# A checkpoint after every step: with 2 processes the old code hung at one of them in most runs
EVERY_STEP = [
    "--train_batch_size",
    "2",
    "--valid_size",
    "2",
    "--num_epochs",
    str(EPOCHS),
    "--ckpt_interval_steps",
    "1",
]
STAGES = {
    "quantizer": ("train_quantizer.py", "bsq.yaml", ["--train_split", "[train-clean-100]"]),
    "decoder": ("train_decoder.py", "vocos.yaml", []),
    "stream-posemb": ("train_posemb.py", "stream/conv_posemb.yaml", ["--train_split", "[train-clean-100]"]),
}
REPEATS = 2


def epochs_logged(output_folder) -> list[int]:
    return [int(row["epoch"]) for row in parse_train_log(output_folder / "train_log.txt") if "epoch" in row]


@pytest.mark.parametrize("repeat", range(REPEATS))
@pytest.mark.parametrize("stage", list(STAGES))
def test_two_processes_checkpointing_every_step_finish(stage, repeat, small_corpus, tmp_path):
    script, hparams, extra = STAGES[stage]
    out = tmp_path / stage
    port = 29571 + 2 * list(STAGES).index(stage) * REPEATS + repeat
    command = recipe_command(script, hparams, small_corpus, out, *EVERY_STEP, *extra)
    result = run_torchrun(command, port=port, timeout=180)  # a hang fails here instead of stalling
    assert result.returncode == 0, result.stderr[-5000:]
    assert epochs_logged(out) == list(range(1, EPOCHS + 1))
    assert "test loss" in parse_train_log(out / "train_log.txt")[-1]


def test_two_processes_killed_mid_epoch_resume(small_corpus, tmp_path):
    script, hparams, extra = STAGES["quantizer"]
    out = tmp_path / "quantizer"
    command = recipe_command(script, hparams, small_corpus, out, *EVERY_STEP, *extra)
    kill_mid_epoch(torchrun_command(command, port=29591), out, timeout=180)
    interrupted = epochs_logged(out)
    assert len(interrupted) < EPOCHS
    result = run_torchrun(command, port=29592, timeout=180)
    assert result.returncode == 0, result.stderr[-5000:]
    rows = [row for row in parse_train_log(out / "train_log.txt") if "epoch" in row]
    assert [int(row["epoch"]) for row in rows] == list(range(1, EPOCHS + 1))  # continued, not restarted
    steps_per_epoch = rows[0]["steps"]
    assert [row["steps"] for row in rows] == [steps_per_epoch * epoch for epoch in range(1, EPOCHS + 1)]
    checkpoint = max((out / "save").glob("CKPT+*"))
    assert (
        yaml.safe_load((checkpoint / "brain.ckpt").read_text())["optimizer_step"] == EPOCHS * steps_per_epoch
    )
