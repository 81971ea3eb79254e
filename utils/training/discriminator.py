"""SpeechBrain's HiFi-GAN discriminator (multi-period + multi-scale), with its width as a setting.

``HifiganDiscriminator(channels_divisor=1)`` *is* ``speechbrain.lobes.models.HifiGAN.HifiganDiscriminator``:
the same modules, state_dict keys and shapes, forward (inherited) and, at the same seed, the same initial
weights (tested). A divisor of 2, 4 or 8 divides every hidden width, for smoke runs on a CPU (the full
discriminator has 70 M parameters and dominates a small decoder's step).
"""

from speechbrain.lobes.models import HifiGAN
from speechbrain.nnet.CNN import Conv2d
from torch import nn

__all__ = ["HifiganDiscriminator", "MultiPeriodDiscriminator", "MultiScaleDiscriminator"]

PERIODS = (2, 3, 5, 7, 11)
PERIOD_WIDTHS = (32, 128, 512, 1024, 1024)
# (out channels, kernel, stride, groups, padding) of each scale-discriminator convolution
SCALE_LAYERS = (
    (128, 15, 1, 1, 7),
    (128, 41, 2, 4, 20),
    (256, 41, 2, 16, 20),
    (512, 41, 4, 16, 20),
    (1024, 41, 4, 16, 20),
    (1024, 41, 1, 16, 20),
    (1024, 5, 1, 1, 2),
)
DIVISORS = (1, 2, 4, 8)


def _check_divisor(channels_divisor: int) -> None:
    if channels_divisor not in DIVISORS:
        raise ValueError(f"channels_divisor must be one of {DIVISORS}, got {channels_divisor!r}")


def _weight_normed_conv2d(in_channels: int, out_channels: int, kernel: int, stride: int) -> Conv2d:
    """SpeechBrain's weight-normed (k, 1) convolution with 'same' padding, as in its DiscriminatorP."""
    return Conv2d(
        in_channels=in_channels,
        out_channels=out_channels,
        kernel_size=(kernel, 1),
        stride=(stride, 1),
        padding="same",
        skip_transpose=True,
        weight_norm=True,
    )


class PeriodDiscriminator(HifiGAN.DiscriminatorP):
    """SpeechBrain's ``DiscriminatorP`` (one period of the MPD) with hidden widths divided by a divisor."""

    def __init__(self, period: int, channels_divisor: int = 1, kernel_size: int = 5, stride: int = 3) -> None:
        nn.Module.__init__(self)
        self.period = period
        widths = [1, *(width // channels_divisor for width in PERIOD_WIDTHS)]
        self.convs = nn.ModuleList(
            _weight_normed_conv2d(widths[i], widths[i + 1], kernel_size, stride if i < 4 else 1)
            for i in range(len(PERIOD_WIDTHS))
        )
        self.conv_post = _weight_normed_conv2d(widths[-1], 1, 3, 1)


class ScaleDiscriminator(HifiGAN.DiscriminatorS):
    """SpeechBrain's ``DiscriminatorS`` (one scale of the MSD) with hidden widths divided by a divisor."""

    def __init__(self, use_spectral_norm: bool = False, channels_divisor: int = 1) -> None:
        nn.Module.__init__(self)
        norm = nn.utils.spectral_norm if use_spectral_norm else nn.utils.parametrizations.weight_norm
        in_channels, convs = 1, []
        for out_channels, kernel, stride, groups, padding in SCALE_LAYERS:
            out_channels //= channels_divisor
            convs.append(
                norm(nn.Conv1d(in_channels, out_channels, kernel, stride, groups=groups, padding=padding))
            )
            in_channels = out_channels
        self.convs = nn.ModuleList(convs)
        self.conv_post = norm(nn.Conv1d(in_channels, 1, 3, 1, padding=1))


class MultiPeriodDiscriminator(HifiGAN.MultiPeriodDiscriminator):
    """SpeechBrain's MPD (periods 2, 3, 5, 7, 11) of :class:`PeriodDiscriminator`."""

    def __init__(self, channels_divisor: int = 1) -> None:
        nn.Module.__init__(self)
        self.discriminators = nn.ModuleList(PeriodDiscriminator(p, channels_divisor) for p in PERIODS)


class MultiScaleDiscriminator(HifiGAN.MultiScaleDiscriminator):
    """SpeechBrain's MSD (3 scales, the first spectral-normed) of :class:`ScaleDiscriminator`."""

    def __init__(self, channels_divisor: int = 1) -> None:
        nn.Module.__init__(self)
        self.discriminators = nn.ModuleList(
            ScaleDiscriminator(use_spectral_norm=index == 0, channels_divisor=channels_divisor)
            for index in range(3)
        )
        self.meanpools = nn.ModuleList([nn.AvgPool1d(4, 2, padding=2), nn.AvgPool1d(4, 2, padding=2)])


class HifiganDiscriminator(HifiGAN.HifiganDiscriminator):
    """MPD + MSD: ``(B, 1, N)`` audio -> 8 score tensors and 8 lists of feature maps (SpeechBrain's forward).

    Arguments
    ---------
    channels_divisor : 1 (SpeechBrain's discriminator, 70 M parameters), 2, 4 or 8 (smoke runs).
    """

    def __init__(self, channels_divisor: int = 1) -> None:
        _check_divisor(channels_divisor)
        nn.Module.__init__(self)
        self.mpd = MultiPeriodDiscriminator(channels_divisor)
        self.msd = MultiScaleDiscriminator(channels_divisor)
