"""FocalCodec-Stream stage 3 (train_encoder.py) through its real command line: one and two processes, killed
and resumed (the Brain step by step: tests/training/test_encoder_stage.py)."""

import pytest
import torch
from helpers.recipe_runner import (
    QUANTIZER_ARGS,
    assert_test_loss_is_batch_mean,
    parse_train_log,
    resume_after_kill,
    run_ddp_probe,
)

from focalcodec.checkpoint import load_state_dict_file
from utils.runs import read_run


@pytest.mark.slow
def test_end_to_end(wavlm_run, posemb_run):
    rows = parse_train_log(wavlm_run / "train_log.txt")
    for key in ("train loss", "valid loss", "valid layer1_mse", "valid layer2_mse", "lr"):
        assert key in rows[0], key
    assert rows[-1]["Epoch loaded"] == 1 and "test layer2_mse" in rows[-1]
    run = read_run(wavlm_run)
    assert run.stage == "encoder" and run.parts["encoder"].recoverable == "student_encoder"
    assert run.parts["encoder"].config["causal"] and not run.teacher.config["causal"]
    student = load_state_dict_file(run.checkpoint() / "student_encoder.ckpt")
    # Frozen through training: the stage-2 positional embedding and the teacher's relative embedding
    posemb = read_run(posemb_run)
    stage2 = load_state_dict_file(posemb.checkpoint() / "student_posemb.ckpt")
    for key, value in stage2.items():
        assert torch.equal(student[f"encoder.positional_embedding.{key}"], value), key
    teacher = run.encoder_state_dict()
    assert torch.equal(
        student["encoder.relative_embedding.weight"], teacher["encoder.relative_embedding.weight"]
    )
    assert not torch.equal(student["feature_proj.weight"], teacher["feature_proj.weight"])  # trained


@pytest.mark.slow
def test_resume_after_sigkill(small_corpus, posemb_run, tmp_path):
    args = [
        *QUANTIZER_ARGS,
        "--ckpt_interval_steps",
        "1",
        "--student_encoder_posemb_checkpoint",
        str(posemb_run),
    ]
    args[args.index("--num_epochs") + 1] = "2"
    resume_after_kill(
        "train_encoder.py", "stream/wavlm.yaml", small_corpus, tmp_path / "wavlm", *args, steps=2 * 3
    )  # 6 utterances in batches of 2


@pytest.mark.slow
def test_two_process_ddp_gloo(small_corpus, posemb_run, tmp_path):
    """Two gloo processes train on different utterances and hold the same student after a step; the teacher
    is unchanged."""
    args = [*QUANTIZER_ARGS, "--student_encoder_posemb_checkpoint", str(posemb_run)]
    run_ddp_probe("train_encoder.py", "stream/wavlm.yaml", small_corpus,
                  tmp_path / "wavlm", *args, port=29561)  # fmt: skip


@pytest.mark.slow
def test_logged_test_loss_is_the_batch_mean(wavlm_run):
    assert_test_loss_is_batch_mean(wavlm_run)
