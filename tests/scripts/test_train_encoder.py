"""FocalCodec-Stream stage 3 (train_encoder.py): the causal WavLM6 distilled layer by layer, through its real
command line (one and two processes, killed and resumed) and step by step."""

import pytest
import torch
import yaml
from helpers.recipe_runner import (
    QUANTIZER_ARGS,
    assert_test_loss_is_batch_mean,
    build_brain,
    fixed_batch_steps,
    load_hparams,
    padded_batch,
    parse_train_log,
    resume_after_kill,
    run_ddp_probe,
    tiny_overrides,
)
from helpers.run_helpers import speech

from focalcodec.checkpoint import load_state_dict_file
from train_encoder import EncoderDistillation
from utils.runs import RunFolderError, freeze_positions, init_student_encoder, read_run

# The placeholder is resolved by main() (init_student_encoder), not at load time
TINY = {
    **yaml.safe_load(tiny_overrides("stream/wavlm.yaml").read_text()),
    "student_encoder_posemb_checkpoint": "unused",
}
FROZEN = ("encoder.positional_embedding.", "encoder.relative_embedding.")


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in module.state_dict().items()}


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


def test_every_layer_moves_towards_the_teacher_and_the_frozen_parts_stay(posemb_run):
    torch.manual_seed(0)
    hparams = load_hparams("stream/wavlm.yaml", {**TINY, "lr": 0.001})
    teacher, student = hparams["encoder"].requires_grad_(False).eval(), hparams["student_encoder"]
    init_student_encoder(student, teacher, posemb_run)
    brain = build_brain(EncoderDistillation, hparams)
    teacher_before, student_before = snapshot(teacher), snapshot(student)
    sig = speech()[0]
    batch = padded_batch(sig, sig[:20000])
    figures = fixed_batch_steps(brain, batch, 10)
    for key in ("layer1_mse", "layer2_mse"):
        assert figures[-1][key] < 0.8 * figures[0][key], [step[key] for step in figures]
    for key, value in snapshot(teacher).items():
        assert torch.equal(value, teacher_before[key]), key
    for key, value in snapshot(student).items():
        assert torch.equal(value, student_before[key]) == key.startswith(FROZEN), key


def test_a_positional_embedding_from_another_teacher_is_refused(posemb_run, wavlm_run):
    hparams = load_hparams("stream/wavlm.yaml", {**TINY, "seed": 1})  # another random teacher
    with pytest.raises(RunFolderError, match="distilled from another teacher"):
        init_student_encoder(hparams["student_encoder"], hparams["encoder"], posemb_run)
    with pytest.raises(RunFolderError, match="not a posemb-stage run"):
        init_student_encoder(hparams["student_encoder"], hparams["encoder"], wavlm_run)


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
def test_full_size_default_config_trains_one_step():
    hparams = load_hparams("stream/wavlm.yaml", {"student_encoder_posemb_checkpoint": "unused"})
    teacher, student = hparams["encoder"].requires_grad_(False).eval(), hparams["student_encoder"]
    student.load_state_dict(teacher.state_dict())
    freeze_positions(student)
    brain = build_brain(EncoderDistillation, hparams)
    before = snapshot(student)
    loss = brain.fit_batch(padded_batch(0.1 * torch.randn(16000), 0.1 * torch.randn(12000)))
    assert torch.isfinite(loss)
    for key, value in snapshot(student).items():
        assert torch.equal(value, before[key]) == key.startswith(FROZEN), key
    trainable = sum(p.numel() for p in student.parameters() if p.requires_grad)
    assert (trainable, sum(p.numel() for p in student.parameters())) == (80_313_488, 88_708_240)


@pytest.mark.slow
def test_logged_test_loss_is_the_batch_mean(wavlm_run):
    assert_test_loss_is_batch_mean(wavlm_run)
