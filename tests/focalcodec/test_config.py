"""Modules remember their constructor config (focalcodec/config.py): ``type(m)(**m.config)`` rebuilds them."""

import json
import warnings

import pytest
import torch

from focalcodec.bsq import BinarySphericalQuantizer
from focalcodec.focalnet import FocalDecoder, FocalEncoder
from focalcodec.vocos import Vocos
from focalcodec.wavenext import WaveNeXt
from focalcodec.wavlm import WavLM

SMALL = {
    WavLM: {
        "hidden_dims": (8,) * 7,
        "num_layers": 1,
        "dim": 16,
        "ffn_dim": 32,
        "num_heads": 2,
        "conv_pos": 4,
        "conv_pos_groups": 2,
    },
    FocalEncoder: {
        "input_dim": 16,
        "output_dim": 5,
        "hidden_dims": [12, 8, 8],
        "downscale_factors": (2, 1, 1),
    },
    FocalDecoder: {
        "input_dim": 5,
        "output_dim": 16,
        "hidden_dims": [8, 8, 12],
        "causal": True,
        "lookahead_size": 1,
    },
    Vocos: {"input_dim": 16, "num_layers": 1, "dim": 8, "ffn_dim": 16},
    WaveNeXt: {"input_dim": 16, "num_layers": 1, "dim": 8, "ffn_dim": 16, "causal": True},
    BinarySphericalQuantizer: {"codebook_size": 256},
}


@pytest.mark.parametrize("cls", list(SMALL), ids=lambda cls: cls.__name__)
def test_config_rebuilds_the_module(cls):
    module = cls(**SMALL[cls])
    assert set(SMALL[cls]) <= set(module.config)  # given arguments, and every default filled in
    assert json.loads(json.dumps(module.config)) == module.config  # JSON as is (tuples became lists)
    rebuilt = cls(**module.config)
    assert rebuilt.config == module.config
    shapes = {key: tuple(value.shape) for key, value in module.state_dict().items()}
    assert {key: tuple(value.shape) for key, value in rebuilt.state_dict().items()} == shapes
    assert "config" not in dict(module.named_buffers()) and "config" not in module.state_dict()


def test_positional_arguments_and_aliases_are_recorded():
    assert BinarySphericalQuantizer(64).config == {"codebook_size": 64}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        vocos = Vocos(input_channels=24, num_layers=1, dim=8, ffn_dim=16)
        rebuilt = Vocos(**vocos.config)
    assert vocos.config["input_channels"] == 24 and rebuilt.backbone.embedding.in_channels == 24
    assert rebuilt(torch.randn(1, 3, 24))[0].shape == (1, 3 * 320)
