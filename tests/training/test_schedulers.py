"""NewBob with negative validation losses (the quantizer's loss includes the BSQ entropy term)."""

import pytest
from speechbrain.nnet.schedulers import NewBobScheduler

from utils.training.schedulers import SignSafeNewBobScheduler

SETTINGS = {"initial_value": 1.0, "improvement_threshold": 0.0025, "annealing_factor": 0.5, "patient": 0}


def learning_rates(scheduler, losses: list[float]) -> list[float]:
    """The learning rate after each validation loss."""
    return [scheduler(loss)[1] for loss in losses]


def test_improving_negative_losses_keep_the_learning_rate():
    losses = [-0.10, -0.20, -0.30]  # each a clear improvement
    assert learning_rates(SignSafeNewBobScheduler(**SETTINGS), losses) == [1.0, 1.0, 1.0]
    # SpeechBrain's NewBob reads (prev - new) / prev < 0 here and anneals on every improvement
    assert learning_rates(NewBobScheduler(**SETTINGS), losses) == [1.0, 0.5, 0.25]


def test_worsening_negative_losses_anneal():
    losses = [-0.30, -0.20, -0.20005]
    assert learning_rates(SignSafeNewBobScheduler(**SETTINGS), losses) == [1.0, 0.5, 0.25]


def test_crossing_zero_and_patience():
    scheduler = SignSafeNewBobScheduler(**{**SETTINGS, "patient": 1})
    # 0.05 -> -0.05 improves by 200 %; then two regressions: patience 1 absorbs the first
    assert learning_rates(scheduler, [0.05, -0.05, -0.04, -0.03]) == [1.0, 1.0, 1.0, 0.5]


@pytest.mark.parametrize("losses", [[3.0, 2.0, 2.1, 1.0, 0.9999], [1.0, 1.0, 0.5]])
def test_positive_losses_are_speechbrains_newbob(losses):
    assert learning_rates(SignSafeNewBobScheduler(**SETTINGS), losses) == learning_rates(
        NewBobScheduler(**SETTINGS), losses
    )


def test_sign_safe_false_is_speechbrains_newbob():
    """The original mode's scheduler: SpeechBrain's NewBob, annealing on improvements of negative losses."""
    losses = [-0.10, -0.20, -0.30, -0.29, 0.5]
    original = SignSafeNewBobScheduler(**SETTINGS, sign_safe=False)
    assert learning_rates(original, losses) == learning_rates(NewBobScheduler(**SETTINGS), losses)
    assert learning_rates(SignSafeNewBobScheduler(**SETTINGS, sign_safe=False), losses[:2]) == [1.0, 0.5]
