"""utils/runs/fingerprint.py: the fingerprint of a module's weights, what a run folder records of its frozen
encoder and what the feature cache is keyed by (tests/feature_cache/test_feature_cache_key.py)."""

import torch
from helpers.feature_cache_helpers import tiny_encoder
from helpers.reference import TINY_ENCODER

from focalcodec.wavlm import WavLM
from utils.runs import encoder_fingerprint


def test_encoder_fingerprint_covers_the_class_and_every_weight():
    encoder = tiny_encoder()
    digest = encoder_fingerprint(encoder)
    assert encoder_fingerprint(tiny_encoder()) == digest and len(digest) == 64

    class Subclass(WavLM):
        pass

    other = Subclass(**TINY_ENCODER)
    other.load_state_dict(encoder.state_dict())
    assert encoder_fingerprint(other) != digest
    with torch.no_grad():
        for name, tensor in encoder.state_dict().items():  # the tensors share the module's storage
            saved = tensor.view(-1)[0].clone()
            tensor.view(-1)[0] += 1
            assert encoder_fingerprint(encoder) != digest, name
            tensor.view(-1)[0] = saved
    assert encoder_fingerprint(encoder) == digest
