"""FocalCodec-Stream stage 2's Brain (utils/training/stages/posemb.py) step by step: the causal positional
embedding distilled from the teacher's (its runs through train_posemb.py:
tests/scripts/test_train_posemb.py)."""

import pytest
import speechbrain as sb
import torch
import yaml
from helpers.recipe_runner import build_brain, load_hparams, padded_batch, tiny_overrides
from helpers.run_helpers import speech

from utils.training.stages.posemb import PosembStage

TINY = yaml.safe_load(tiny_overrides("stream/conv_posemb.yaml").read_text())


def stage_brain(**overrides) -> PosembStage:
    """The stage's Brain on CPU as main() builds it: the student starts as the teacher's convolution."""
    torch.manual_seed(0)
    hparams = load_hparams("stream/conv_posemb.yaml", {**TINY, **overrides})
    teacher = hparams["encoder"].requires_grad_(False).eval()
    hparams["student_posemb"].load_state_dict(teacher.encoder.positional_embedding.state_dict())
    return build_brain(PosembStage, hparams)


def test_the_student_moves_towards_the_teacher_which_stays_frozen():
    brain = stage_brain(lr=0.002)
    teacher = {key: value.clone() for key, value in brain.hparams.encoder.state_dict().items()}
    start = {key: value.clone() for key, value in brain.modules.student_posemb.state_dict().items()}
    sig = speech()[0]
    batch = padded_batch(sig, sig[:24000])
    losses = [float(brain.fit_batch(batch)) for _ in range(12)]
    assert losses[-1] < 0.6 * losses[0], losses
    # The student is causal: its output at frame t does not depend on the frames after t
    with torch.no_grad():
        out = brain.compute_forward(padded_batch(sig), sb.Stage.VALID)
        cut = brain.compute_forward(padded_batch(sig[:16000]), sb.Stage.VALID)
    frames = cut.hyp.shape[1] - 1
    torch.testing.assert_close(out.hyp[:, :frames], cut.hyp[:, :frames])
    assert not torch.allclose(out.target[:, :frames], cut.target[:, :frames])  # the teacher is not
    for key, value in brain.hparams.encoder.state_dict().items():
        assert torch.equal(value, teacher[key]), key
    assert any(
        not torch.equal(value, start[key]) for key, value in brain.modules.student_posemb.state_dict().items()
    )


@pytest.mark.slow
def test_full_size_default_config_trains_one_step():
    hparams = load_hparams("stream/conv_posemb.yaml", {"encoder_random_init": True})
    teacher = hparams["encoder"].requires_grad_(False).eval()
    student = hparams["student_posemb"]
    student.load_state_dict(teacher.encoder.positional_embedding.state_dict())
    brain = build_brain(PosembStage, hparams)
    before = student.conv.weight.detach().clone()
    loss = brain.fit_batch(padded_batch(0.1 * torch.randn(16000), 0.1 * torch.randn(12000)))
    assert torch.isfinite(loss) and not torch.equal(before, student.conv.weight)
    assert sum(p.numel() for p in student.parameters()) == 8_389_632
