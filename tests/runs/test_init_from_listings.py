"""Full-size builds of every ``--init_from`` target: each module a stage initialises from a released codec
(the stage's trained parts, ``trained_parts`` of its Brain, and its frozen encoder where
``init_from_encoder`` says so) has exactly the keys and shapes of that codec's part in the released listings
(tests/data/state_dict/), so that ``--init_from lucadellalib/<name>`` loads strictly in every stage."""

import pytest
from helpers.recipe_runner import load_hparams
from helpers.reference import read_listing

from utils.training.recipe import read_overrides
from utils.training.stages.decoder import DecoderStage
from utils.training.stages.encoder import EncoderStage
from utils.training.stages.joint import JointStage
from utils.training.stages.posemb import PosembStage
from utils.training.stages.quantizer import QuantizerStage

NON_CAUSAL = ["FocalCodec_50hz", "FocalCodec_25hz", "FocalCodec_12_5hz"]
CAUSAL = ["FocalCodec_50hz_2k_causal", "FocalCodec_50hz_4k_causal", "FocalCodec_50hz_65k_causal"]
# YAML, override file, Brain, the released listings of the codecs it fine-tunes from
STAGES = [
    ("vocos.yaml", None, DecoderStage, NON_CAUSAL),
    *((variant, "hparams/release/bsq.yaml", QuantizerStage, [listing])
      for variant, listing in zip(("bsq.yaml", "bsq_25hz.yaml", "bsq_12_5hz.yaml"), NON_CAUSAL, strict=True)),
    ("stream/wavenext.yaml", None, DecoderStage, CAUSAL),
    ("stream/conv_posemb.yaml", None, PosembStage, CAUSAL),
    ("stream/wavlm.yaml", None, EncoderStage, CAUSAL),
    *(("stream/bsq.yaml", f"hparams/stream/codebook_{size}.yaml", QuantizerStage, [listing])
      for size, listing in zip(("2k", "4k", "65k"), CAUSAL, strict=True)),
    *(("stream/joint.yaml", f"hparams/stream/codebook_{size}.yaml", JointStage, [listing])
      for size, listing in zip(("2k", "4k", "65k"), CAUSAL, strict=True)),
]  # fmt: skip
PREFIX = {"posemb": "encoder.encoder.positional_embedding"}  # a part inside the encoder


def expected_shapes(listing, part: str, module) -> dict[str, tuple]:
    """The listing's keys and shapes of ``part``; a decompressor without a refiner (stage 4) leaves the
    codec's refiner out, the one difference a stage may have by name."""
    prefix = PREFIX.get(part, part) + "."
    shapes = {
        key[len(prefix) :]: shape for key, (shape, _) in listing.entries.items() if key.startswith(prefix)
    }
    if part == "decompressor" and not any(key.startswith("refiner.") for key in module.state_dict()):
        shapes = {key: shape for key, shape in shapes.items() if not key.startswith("refiner.")}
    return shapes


@pytest.mark.slow
@pytest.mark.parametrize(("hparams_file", "overrides", "brain", "listings"), STAGES)
def test_every_init_from_target_matches_the_released_listings(hparams_file, overrides, brain, listings):
    hparams = load_hparams(hparams_file, read_overrides(f"overrides_file: {overrides}") if overrides else {})
    targets = {key: part for part, key in brain.trained_parts.items()}
    if hparams["init_from_encoder"] == "encoder":
        targets["encoder"] = "encoder"
    for name in listings:
        listing = read_listing(name)
        for key, part in targets.items():
            if part == "quantizer":  # no weights: its size
                codebook = listing.kwargs["quantizer_config"]["codebook_size"]
                assert 2 ** hparams["quantizer_code_dim"] == codebook, name
                continue
            shapes = {key: tuple(value.shape) for key, value in hparams[key].state_dict().items()}
            expected = expected_shapes(listing, part, hparams[key])
            assert shapes == expected, (name, key, sorted(set(shapes) ^ set(expected))[:5])
