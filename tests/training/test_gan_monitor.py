"""The decoder stages' GAN diagnostics (utils/training/gan_monitor.py), the mel-only warm-up
(``pretrain_mel_steps``) and the discriminator learning-rate multiplier."""

import logging

import pytest
import speechbrain as sb
import torch
import yaml
from helpers.recipe_runner import ROOT, load_hparams, padded_batch, parse_train_log, recipe_brain

from train_decoder import Resynthesis
from utils.training.gan_monitor import SUB_DISCRIMINATORS, GanMonitor, GanStep

TINY = yaml.safe_load((ROOT / "hparams" / "tiny" / "vocos.yaml").read_text())


def feed(monitor: GanMonitor, real: float, fake: float, d_loss: float, adv: float, fm: float) -> None:
    """One interval of one step: every sub-discriminator scores ``real`` and ``fake`` on average."""
    scores = [torch.full((2, 5), real) for _ in SUB_DISCRIMINATORS]
    monitor.record_scores(scores, [torch.full((2, 5), fake) for _ in SUB_DISCRIMINATORS])
    values = (d_loss, adv, fm, 3.0, 40.0)
    monitor.record_step(GanStep(*(torch.tensor(value) for value in values)))


def test_the_warning_needs_the_issue_13_pattern_and_a_separating_discriminator():
    monitor = GanMonitor(every_steps=1, window=4)
    for step in range(1, 4):  # D loss falling, adversarial and feature matching rising, scores apart
        feed(monitor, real=1.0 + step, fake=-1.0 - step, d_loss=10.0 - step, adv=8.0 + step, fm=1.0 + step)
        assert monitor.due(step)
        means = monitor.flush()
        assert monitor.check() is None  # fewer intervals than the window
    assert means["real_mpd2"] == means["real"] == 4.0 and means["fake_msd3"] == -4.0
    assert means["d_grad_norm"] == 3.0 and means["g_grad_norm"] == 40.0
    feed(monitor, real=5.0, fake=-5.0, d_loss=6.0, adv=12.0, fm=5.0)
    monitor.flush()
    warning = monitor.check()
    assert (
        warning is not None and "discriminator_lr_multiplier" in warning and "pretrain_mel_steps" in warning
    )
    feed(monitor, real=6.0, fake=-6.0, d_loss=5.0, adv=13.0, fm=6.0)
    monitor.flush()
    assert monitor.check() is None  # at most once per window

    for scores in ((0.1, 0.0), (5.0, -5.0)):  # the same trends with scores still together; no trend
        monitor = GanMonitor(every_steps=1, window=4)
        for step in range(4):
            trend = step if scores[0] < 1 else 0
            feed(monitor, *scores, d_loss=10.0 - trend, adv=8.0 + trend, fm=1.0 + trend)
            monitor.flush()
        assert monitor.discriminator_wins() is None


def tiny_decoder(tmp_path, **overrides) -> Resynthesis:
    """The tiny decoder stage on CPU, with its checkpointer, started for training."""
    torch.manual_seed(0)
    hparams = load_hparams("vocos.yaml", {**TINY, "output_folder": str(tmp_path), **overrides})
    brain = recipe_brain(Resynthesis, hparams)
    brain.on_fit_start()
    brain.on_stage_start(sb.Stage.TRAIN, 1)
    return brain


def sine_batch():
    sig = torch.sin(torch.linspace(0, 2000, 8000)) * torch.linspace(0.1, 0.5, 8000)
    return padded_batch(sig, 0.5 * sig[:7500])


@pytest.mark.slow
@pytest.mark.parametrize("multiplier", [1.0, 100.0])
def test_the_warning_fires_when_the_discriminator_is_made_to_win(multiplier, tmp_path, caplog):
    """8 steps of the tiny decoder on a fixed batch, diagnostics every step: with the discriminator's
    learning rate x100 it wins within them, warned; with the recipe's, no warning."""
    options = {"discriminator_lr_multiplier": multiplier, "gan_log_every_steps": 1, "gan_window": 4}
    brain = tiny_decoder(tmp_path, **options)
    batch = sine_batch()
    with caplog.at_level(logging.WARNING, logger="utils.training.stages.decoder"):
        for _ in range(8):
            brain.fit_batch(batch)
    warnings = [record.message for record in caplog.records if "discriminator is winning" in record.message]
    assert bool(warnings) == (multiplier == 100.0), warnings
    rows = [row for row in parse_train_log(tmp_path / "train_log.txt") if "gan real_mpd2" in row]
    assert [row["steps"] for row in rows] == list(range(1, 9))
    assert all(row["gan g_grad_norm"] > 0 and row["gan d_grad_norm"] > 0 for row in rows)


@pytest.mark.slow
def test_the_mel_warm_up_and_the_discriminator_learning_rate(tmp_path):
    """One mel-only step, then GAN steps; the discriminator's learning rate stays half the generator's.
    Without clipping (the original mode's step) the diagnostics still measure both gradient norms."""
    options = {"pretrain_mel_steps": 1, "discriminator_lr_multiplier": 0.5, "lr": 0.001}
    brain = tiny_decoder(tmp_path, **options, max_grad_norm=None, gan_log_every_steps=1)
    discriminator, generator = brain.hparams.discriminator, brain.hparams.generator
    assert brain.optimizer_discriminator.param_groups[0]["lr"] == 0.0005
    d_before, g_before = (
        {key: value.detach().clone() for key, value in module.named_parameters()}
        for module in (discriminator, generator)
    )
    batch = sine_batch()
    g_loss = brain.fit_batch(batch)
    assert all(torch.equal(value, d_before[key]) for key, value in discriminator.named_parameters())
    assert any(not torch.equal(value, g_before[key]) for key, value in generator.named_parameters())
    assert set(brain.tracked_means()) == {"mel_loss"}
    assert float(g_loss) == pytest.approx(45.0 * brain.tracked_means()["mel_loss"], rel=1e-5)
    brain.fit_batch(batch)  # after the warm-up: the discriminator trains
    assert any(not torch.equal(value, d_before[key]) for key, value in discriminator.named_parameters())
    (row,) = [row for row in parse_train_log(tmp_path / "train_log.txt") if "gan d_grad_norm" in row]
    assert row["steps"] == 2 and row["gan d_grad_norm"] > 0 and row["gan g_grad_norm"] > 0
    brain.on_stage_end(sb.Stage.TRAIN, 1.0, epoch=1)  # the scheduler keeps the ratio
    rates = [optimizer.param_groups[0]["lr"] for optimizer in brain.optimizers_dict.values()]
    assert rates[1] == pytest.approx(0.5 * rates[0])
