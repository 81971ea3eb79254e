"""utils/feature_cache/layout.py: file names, the split into shards and the frame estimates (from the
encoder's own convolutions)."""

import pytest
import torch
from helpers.feature_cache_helpers import tiny_encoder

from focalcodec.wavlm import WavLM
from utils.feature_cache import layout
from utils.feature_cache.layout import FrameGeometry


def test_frame_geometry_is_the_encoders():
    assert FrameGeometry.of_encoder(WavLM(num_layers=1, dim=64, ffn_dim=64, num_heads=4)) == FrameGeometry(
        400, 320
    )
    strided = WavLM(hidden_dims=[8, 8], kernel_sizes=[7, 3], strides=[4, 2], num_layers=1, dim=16, ffn_dim=16,
                    num_heads=2, conv_pos=4, conv_pos_groups=2)  # fmt: skip
    assert FrameGeometry.of_encoder(strided) == FrameGeometry(7 + 2 * 4, 8)
    with pytest.raises(layout.FeatureCacheError, match="convolution front end"):
        FrameGeometry.of_encoder(torch.nn.Linear(4, 4))


@pytest.mark.parametrize("samples", [100, 399, 400, 401, 719, 720, 16000, 16319, 16320, 21920, 33761])
def test_frame_estimates_are_the_encoders_frame_counts(samples):
    encoder = tiny_encoder()
    geometry = FrameGeometry.of_encoder(encoder)
    with torch.no_grad():
        frames = encoder(torch.zeros(1, samples))[0].shape[1]
    assert geometry.frames(samples / 16000, 16000) == frames
    assert geometry.frames(samples / 24000, 24000) == frames


def test_shards_are_consecutive_runs_of_about_the_shard_size():
    frames = [10, 3, 7, 1, 1, 1, 20, 4]
    assert layout.assign_shards(frames, frame_bytes=2, shard_bytes=1) == [range(i, i + 1) for i in range(8)]
    assert layout.assign_shards(frames, frame_bytes=2, shard_bytes=10**6) == [range(0, 8)]
    # A shard is closed once it holds shard_bytes or more
    assert layout.assign_shards(frames, frame_bytes=2, shard_bytes=20) == [
        range(0, 1),
        range(1, 3),
        range(3, 7),
        range(7, 8),
    ]
    assert layout.assign_shards([5], frame_bytes=4, shard_bytes=1) == [range(0, 1)]


def test_file_names(tmp_path):
    key = "0123456789abcdef" + "f" * 48
    folder = layout.cache_folder(tmp_path, "train", key)
    assert folder == tmp_path / "train-0123456789abcdef"
    assert (
        layout.shard_file(folder, 7).name == "shard-00007.bin"
        and layout.marker_file(folder, 7).name == "shard-00007.json"
    )
    assert layout.other_caches(tmp_path, "train", key) == []
    for name in ("train-0123456789abcdef", "train-aaaaaaaaaaaaaaaa", "train-bbbbbbbbbbbbbbbb", "valid-cccc"):
        (tmp_path / name).mkdir()
    (tmp_path / "train-file").touch()
    assert layout.other_caches(tmp_path, "train", key) == [
        tmp_path / "train-aaaaaaaaaaaaaaaa",
        tmp_path / "train-bbbbbbbbbbbbbbbb",
    ]
