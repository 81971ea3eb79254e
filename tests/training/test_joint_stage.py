"""FocalCodec-Stream stage 5's Brain (utils/training/stages/joint.py) step by step: joint fine-tuning of
encoder, compressor, quantizer and decompressor against the teacher, its start from stage 4 (its runs
through train_joint.py: tests/scripts/test_train_joint.py)."""

import pytest
import torch
import yaml
from helpers.recipe_runner import build_brain, load_hparams, padded_batch, tiny_overrides
from helpers.run_helpers import quantizer_steps_on_speech

from utils.runs import (
    PretrainedMismatchError,
    RunFolderError,
    freeze_positions,
    init_joint_stage,
    load_decoder,
)
from utils.training.stages.joint import JointStage

TINY = {**yaml.safe_load(tiny_overrides("stream/joint.yaml").read_text()), "quantizer_checkpoint": "unused"}
FROZEN = ("encoder.positional_embedding.", "encoder.relative_embedding.")


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in module.state_dict().items()}


def joint_brain(stream_bsq_run, wavenext_run, **overrides) -> JointStage:
    """The stage's Brain on CPU as main() builds it (start from stage 4, listen through stage 1)."""
    torch.manual_seed(0)
    hparams = load_hparams(
        "stream/joint.yaml", {**TINY, "quantizer_checkpoint": str(stream_bsq_run), **overrides}
    )
    hparams["encoder"].requires_grad_(False).eval()
    init_joint_stage(hparams)
    hparams["decoder"] = load_decoder(wavenext_run, hparams["decoder"], hparams["encoder"])
    return build_brain(JointStage, hparams)


def test_joint_steps_reduce_the_loss_and_leave_the_frozen_parts(stream_bsq_run, wavenext_run):
    brain = joint_brain(stream_bsq_run, wavenext_run, lr=0.001)
    student = snapshot(brain.hparams.student_encoder)
    quantizer_steps_on_speech(brain)  # the teacher and the decoder stay as they are
    for key, value in snapshot(brain.hparams.student_encoder).items():
        assert torch.equal(value, student[key]) == key.startswith(FROZEN), key


def test_a_start_that_does_not_fit_is_an_error(stream_bsq_run, wavenext_run):
    with pytest.raises(RunFolderError, match="not a quantizer-stage run"):
        joint_brain(wavenext_run, wavenext_run)
    with pytest.raises(PretrainedMismatchError, match="decompressor_focal_window: 14"):
        joint_brain(stream_bsq_run, wavenext_run, decompressor_focal_window=7)
    with pytest.raises(RunFolderError, match="distilled from another teacher"):
        joint_brain(stream_bsq_run, wavenext_run, seed=1)  # another random teacher


@pytest.mark.slow
def test_full_size_default_config_trains_one_step():
    hparams = load_hparams(
        "stream/joint.yaml", {"quantizer_checkpoint": "unused", "encoder_random_init": True}
    )
    hparams["decoder"] = None
    teacher, student = hparams["encoder"].requires_grad_(False).eval(), hparams["student_encoder"]
    student.load_state_dict(teacher.state_dict())  # stands for the stage-3 student
    freeze_positions(student)
    brain = build_brain(JointStage, hparams)
    before = snapshot(student)
    refiner = hparams["decompressor"].refiner.in_proj.weight.detach().clone()
    loss = brain.fit_batch(padded_batch(0.1 * torch.randn(16000), 0.1 * torch.randn(12000)))
    assert torch.isfinite(loss)
    for key, value in snapshot(student).items():
        assert torch.equal(value, before[key]) == key.startswith(FROZEN), key
    assert not torch.equal(refiner, hparams["decompressor"].refiner.in_proj.weight)
    assert sum(p.numel() for p in hparams["decompressor"].refiner.parameters()) == 33_562_624
