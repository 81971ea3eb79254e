"""The HiFi-GAN discriminator with a width setting: at divisor 1 it is SpeechBrain's, smaller otherwise."""

import pytest
import torch
from speechbrain.lobes.models.HifiGAN import HifiganDiscriminator as SpeechBrainDiscriminator

from utils.training.discriminator import HifiganDiscriminator


def test_divisor_1_is_speechbrains_discriminator():
    """Same keys and shapes in the same order, the same initial weights at a seed, the same outputs."""
    torch.manual_seed(7)
    reference = SpeechBrainDiscriminator()
    torch.manual_seed(7)
    ours = HifiganDiscriminator()
    expected, actual = reference.state_dict(), ours.state_dict()
    assert list(actual) == list(expected)
    assert all(torch.equal(actual[key], expected[key]) for key in expected)
    audio = torch.randn(2, 1, 3000)
    scores, feats = ours(audio)
    reference_scores, reference_feats = reference(audio)
    assert len(scores) == len(feats) == 8
    assert all(torch.equal(a, b) for a, b in zip(scores, reference_scores, strict=True))
    assert all(
        torch.equal(a, b)
        for layer, reference_layer in zip(feats, reference_feats, strict=True)
        for a, b in zip(layer, reference_layer, strict=True)
    )


def test_a_divisor_shrinks_every_hidden_width():
    full = sum(p.numel() for p in HifiganDiscriminator().parameters())
    small = HifiganDiscriminator(channels_divisor=8)
    assert 50 * sum(p.numel() for p in small.parameters()) < full
    scores, feats = small(torch.randn(2, 1, 7040))
    assert len(scores) == 8 and all(score.shape[0] == 2 for score in scores)
    assert [len(layer) for layer in feats] == [6] * 5 + [8] * 3  # 5 period + 3 scale discriminators
    assert feats[0][3].shape[1] == 1024 // 8


@pytest.mark.parametrize("divisor", [0, 3, 16])
def test_unsupported_divisors_are_refused(divisor):
    with pytest.raises(ValueError, match="channels_divisor must be one of"):
        HifiganDiscriminator(channels_divisor=divisor)
