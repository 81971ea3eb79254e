"""FocalCodec-Stream stage 3's Brain (utils/training/stages/encoder.py) step by step: the causal WavLM6
distilled layer by layer, its start from stage 2 (its runs through train_encoder.py:
tests/scripts/test_train_encoder.py)."""

import pytest
import torch
import yaml
from helpers.recipe_runner import build_brain, fixed_batch_steps, load_hparams, padded_batch, tiny_overrides
from helpers.run_helpers import speech

from utils.runs import RunFolderError, freeze_positions, init_student_encoder
from utils.training.stages.encoder import EncoderStage

# The placeholder is resolved by main() (init_student_encoder), not at load time
TINY = {
    **yaml.safe_load(tiny_overrides("stream/wavlm.yaml").read_text()),
    "student_encoder_posemb_checkpoint": "unused",
}
FROZEN = ("encoder.positional_embedding.", "encoder.relative_embedding.")


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in module.state_dict().items()}


def test_every_layer_moves_towards_the_teacher_and_the_frozen_parts_stay(posemb_run):
    torch.manual_seed(0)
    hparams = load_hparams("stream/wavlm.yaml", {**TINY, "lr": 0.001})
    teacher, student = hparams["encoder"].requires_grad_(False).eval(), hparams["student_encoder"]
    init_student_encoder(student, teacher, posemb_run)
    brain = build_brain(EncoderStage, hparams)
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
def test_full_size_default_config_trains_one_step():
    hparams = load_hparams("stream/wavlm.yaml", {"student_encoder_posemb_checkpoint": "unused"})
    teacher, student = hparams["encoder"].requires_grad_(False).eval(), hparams["student_encoder"]
    student.load_state_dict(teacher.state_dict())
    freeze_positions(student)
    brain = build_brain(EncoderStage, hparams)
    before = snapshot(student)
    loss = brain.fit_batch(padded_batch(0.1 * torch.randn(16000), 0.1 * torch.randn(12000)))
    assert torch.isfinite(loss)
    for key, value in snapshot(student).items():
        assert torch.equal(value, before[key]) == key.startswith(FROZEN), key
    trainable = sum(p.numel() for p in student.parameters() if p.requires_grad)
    assert (trainable, sum(p.numel() for p in student.parameters())) == (80_313_488, 88_708_240)
