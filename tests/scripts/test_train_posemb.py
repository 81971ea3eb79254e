"""FocalCodec-Stream stage 2 (train_posemb.py) through its real command line (the Brain step by step:
tests/training/test_posemb_stage.py)."""

import json

import pytest
from helpers.recipe_runner import assert_test_loss_is_batch_mean, parse_train_log

from utils.runs import read_run


@pytest.mark.slow
def test_end_to_end(posemb_run):
    rows = parse_train_log(posemb_run / "train_log.txt")
    assert rows[0]["epoch"] == 1 and {"train loss", "valid loss", "lr"} <= rows[0].keys()
    assert rows[-1]["Epoch loaded"] == 1 and "test loss" in rows[-1]
    checkpoint = read_run(posemb_run).checkpoint()
    for name in ("student_posemb", "scheduler", "counter", "optimizer", "brain"):
        assert (checkpoint / f"{name}.ckpt").is_file(), name
    record = json.loads((posemb_run / "parts.json").read_text())
    assert record["stage"] == "posemb" and record["best"] == {"min_key": "loss"}
    assert record["parts"]["posemb"] == {
        "name": "PositionalEmbedding",
        "config": {"dim": 64, "kernel_size": 16, "groups": 4, "causal": True},
        "recoverable": "student_posemb",
    }
    assert record["parts"]["encoder"]["config"]["causal"] is False  # the teacher
    assert not (posemb_run / "audios").exists()


@pytest.mark.slow
def test_logged_test_loss_is_the_batch_mean(posemb_run):
    assert_test_loss_is_batch_mean(posemb_run)
