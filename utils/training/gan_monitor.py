"""GAN diagnostics of the decoder stages: what the discriminators and the generator do, interval by interval,
and a warning when the discriminator wins (docs/training.md, "When the decoder does not converge").

Every ``every_steps`` training steps the monitor gives the interval's means of: each sub-discriminator's
score on real and on generated audio (hinge loss: a discriminator that separates them perfectly scores
real audio >= 1 and generated audio <= -1), the generator's and the discriminator's gradient norms (before
clipping), and the loss terms. Over the last ``window`` intervals it fits a line to the adversarial,
feature-matching and discriminator losses: the adversarial and feature-matching losses rising while the
discriminator loss falls, each by at least ``min_change`` of its mean, the pattern of upstream issue 13,
while the discriminator tells real from generated audio apart (mean real score minus mean generated score
at least ``min_margin`` in the last interval), is a discriminator that wins, and a warning with advice is
logged, at most once per window. Early in training the losses drift that way while both scores are still
near 0: the margin keeps that from counting. Monitoring reads detached values only: it changes no number
of the training.
"""

import logging
from collections import defaultdict
from collections.abc import Sequence
from typing import NamedTuple

import torch

__all__ = ["ADVICE", "SUB_DISCRIMINATORS", "GanMonitor", "GanStep"]

logger = logging.getLogger(__name__)

# The HiFi-GAN discriminator's outputs, in its order: multi-period (periods 2-11), then multi-scale (3 scales)
SUB_DISCRIMINATORS = ("mpd2", "mpd3", "mpd5", "mpd7", "mpd11", "msd1", "msd2", "msd3")
TRENDS = ("adv_loss", "feat_match_loss", "d_loss")

ADVICE = (
    "The discriminator is winning: over the last {window} logging intervals ({steps} steps) the "
    "adversarial loss rose {adv:+.1%}, the feature-matching loss {fm:+.1%} and the discriminator loss "
    "{d:+.1%} (real scores {real:.2f}, generated {fake:.2f}; the pattern of upstream issue 13). Check the "
    "progress lines (mel distance, DNSMOS): if they stall, try a lower discriminator learning rate "
    "(--discriminator_lr_multiplier 0.5), a mel-only warm-up (--pretrain_mel_steps 10000), weight averaging "
    "(--ema_decay 0.999), or gradient clipping if it is off (--max_grad_norm 5). See docs/training.md, "
    "'When the decoder does not converge'."
)


class GanStep(NamedTuple):
    """One training step's figures (tensors, so that nothing waits for the device until an interval ends)."""

    d_loss: torch.Tensor
    adv_loss: torch.Tensor
    feat_match_loss: torch.Tensor
    d_grad_norm: torch.Tensor
    g_grad_norm: torch.Tensor


def _slope_change(values: Sequence[float]) -> float:
    """Change over ``values`` of their least-squares line, relative to their mean magnitude."""
    count = len(values)
    mean_x, mean_y = (count - 1) / 2, sum(values) / count
    covariance = sum((index - mean_x) * (value - mean_y) for index, value in enumerate(values))
    variance = sum((index - mean_x) ** 2 for index in range(count))
    return covariance / variance * (count - 1) / max(abs(mean_y), 1e-12)


class GanMonitor:
    """Interval means of a decoder stage's GAN figures, and the discriminator-wins warning.

    Arguments
    ---------
    every_steps : length of an interval in training steps (0: off).
    window : intervals the trends are fitted over (and the least between two warnings).
    min_change : the least relative change over the window of each of the three losses for a warning.
    min_margin : the least mean real score minus mean generated score for a warning (the hinge loss's
        margins are +1 and -1).
    """

    def __init__(
        self, every_steps: int = 100, window: int = 10, min_change: float = 0.05, min_margin: float = 1.0
    ) -> None:
        if window < 3:
            raise ValueError(f"gan_window must be at least 3 intervals, got {window}")
        self.every_steps = every_steps
        self.window = window
        self.min_change = min_change
        self.min_margin = min_margin
        self.history: list[dict[str, float]] = []
        self.last_warning = -window
        self._reset()

    @property
    def enabled(self) -> bool:
        return self.every_steps > 0

    def _reset(self) -> None:
        self._sums: dict[str, torch.Tensor] = defaultdict(float)
        self._counts: dict[str, int] = defaultdict(int)

    def _add(self, name: str, value: torch.Tensor) -> None:
        self._sums[name] = self._sums[name] + value.detach().float()
        self._counts[name] += 1

    def record_scores(self, scores_real: Sequence[torch.Tensor], scores_fake: Sequence[torch.Tensor]) -> None:
        """The discriminator's (B, ...) scores of a training step, one tensor per sub-discriminator."""
        names = SUB_DISCRIMINATORS if len(scores_real) == len(SUB_DISCRIMINATORS) else None
        for index, (real, fake) in enumerate(zip(scores_real, scores_fake, strict=True)):
            name = names[index] if names else f"d{index}"
            self._add(f"real_{name}", real.mean())
            self._add(f"fake_{name}", fake.mean())

    def record_step(self, step: GanStep) -> None:
        for name, value in step._asdict().items():
            self._add(name, value)

    def due(self, step: int) -> bool:
        """Whether training step ``step`` (1-based) ends an interval."""
        return self.enabled and step % self.every_steps == 0 and bool(self._counts)

    def flush(self) -> dict[str, float]:
        """The interval's means (``real_<d>``/``fake_<d>`` per sub-discriminator and their means over all,
        ``real``/``fake``, the gradient norms, the losses); starts the next interval."""
        means = {name: float(total) / self._counts[name] for name, total in self._sums.items()}
        self._reset()
        for kind in ("real", "fake"):
            scores = [value for name, value in means.items() if name.startswith(f"{kind}_")]
            if scores:
                means[kind] = sum(scores) / len(scores)
        if all(name in means for name in TRENDS):
            self.history.append(means)
        return means

    def discriminator_wins(self) -> dict[str, float] | None:
        """The relative changes of the three losses over the last ``window`` intervals when they show the
        discriminator winning (adversarial and feature matching up, discriminator down, each by at least
        ``min_change``, real and generated scores at least ``min_margin`` apart), else ``None``."""
        if len(self.history) < self.window:
            return None
        recent = self.history[-self.window :]
        changes = {name: _slope_change([means[name] for means in recent]) for name in TRENDS}
        rising = changes["adv_loss"] >= self.min_change and changes["feat_match_loss"] >= self.min_change
        apart = recent[-1].get("real", 0.0) - recent[-1].get("fake", 0.0) >= self.min_margin
        return changes if rising and apart and changes["d_loss"] <= -self.min_change else None

    def check(self) -> str | None:
        """After :meth:`flush`: the warning to log (at most once per window), or ``None``."""
        changes = self.discriminator_wins()
        if changes is None or len(self.history) - self.last_warning < self.window:
            return None
        self.last_warning = len(self.history)
        latest = self.history[-1]
        return ADVICE.format(
            window=self.window,
            steps=self.window * self.every_steps,
            adv=changes["adv_loss"],
            fm=changes["feat_match_loss"],
            d=changes["d_loss"],
            real=latest.get("real", float("nan")),
            fake=latest.get("fake", float("nan")),
        )
