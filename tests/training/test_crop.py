"""Training crops of encoder features and the waveform samples they stand for (utils/training/crop.py)."""

import pytest
import torch

from focalcodec.wavlm import WavLM
from utils.feature_cache.layout import min_crop_samples
from utils.training.crop import random_feature_crop


def test_crop_frames_and_samples_are_aligned():
    torch.manual_seed(0)
    hop, frames, num_frames = 320, 40, 22
    sig = torch.arange(2 * frames * hop, dtype=torch.float).reshape(2, -1)  # sample value = its index
    feats = torch.arange(frames, dtype=torch.float)[None, :, None].expand(2, -1, 3)  # frame value = index
    lens = torch.tensor([1.0, 0.7])
    for _ in range(50):
        feats_crop, sig_crop = random_feature_crop(feats, sig, lens, num_frames, hop)
        assert feats_crop.shape == (2, num_frames, 3) and sig_crop.shape == (2, num_frames * hop)
        for b in range(2):
            start = int(feats_crop[b, 0, 0])
            assert torch.equal(feats_crop[b, :, 0], torch.arange(start, start + num_frames).float())
            # frame i of the crop covers samples [i*hop, (i+1)*hop) of the waveform crop
            expected = sig[b, start * hop : (start + num_frames) * hop]
            assert torch.equal(sig_crop[b], expected)
            assert start + num_frames <= max(num_frames, int(torch.ceil(frames * lens[b])))


def test_crop_never_starts_past_the_valid_frames():
    feats = torch.zeros(1, 30, 2)
    sig = torch.zeros(1, 30 * 320)
    starts = set()
    for _ in range(200):
        cropped, _ = random_feature_crop(
            feats + torch.arange(30.0)[None, :, None], sig, torch.tensor([0.8]), 22, 320
        )
        starts.add(int(cropped[0, 0, 0]))
    assert starts == {0, 1, 2}  # ceil(0.8 * 30) = 24 valid frames: starts 0..2, all reachable
    with pytest.raises(ValueError, match="cannot crop"):
        random_feature_crop(torch.zeros(1, 10, 2), torch.zeros(1, 3200), torch.ones(1), 22, 320)


def test_min_crop_samples_matches_the_encoder():
    encoder = WavLM(
        hidden_dims=[8] * 7, num_layers=1, dim=16, ffn_dim=16, num_heads=2, conv_pos=4, conv_pos_groups=2
    )
    samples = min_crop_samples(22, [10, 3, 3, 3, 3, 2, 2], [5, 2, 2, 2, 2, 2, 2])
    assert samples == 7120
    with torch.no_grad():
        assert encoder(torch.zeros(1, samples))[0].shape[1] == 22
        assert encoder(torch.zeros(1, samples - 1))[0].shape[1] == 21
