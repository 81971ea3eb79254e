"""The YAML files: token-rate variants stay in sync with bsq.yaml, and the full-size defaults train."""

import math

import pytest
import speechbrain as sb
import torch
import yaml
from helpers import assert_matches_listing_part, read_listing
from recipe_runner import ROOT, build_brain, load_hparams, padded_batch

from train_quantizer import Quantization
from utils.recipe import read_overrides

TINY = yaml.safe_load((ROOT / "hparams" / "tiny" / "bsq.yaml").read_text())
# YAML -> (compressor downscale factors, decompressor upscale factors, frames per token)
VARIANTS = {
    "bsq.yaml": ([1, 1, 1], [1, 1, 1], 1),
    "bsq_25hz.yaml": ([2, 1, 1], [1, 1, 2], 2),
    "bsq_12_5hz.yaml": ([2, 2, 1], [1, 2, 2], 4),
}


def top_level_values(name: str) -> dict[str, str]:
    """``key: value`` lines of a YAML file (top level, comments dropped), without building anything."""
    values = {}
    for line in (ROOT / "hparams" / name).read_text().splitlines():
        if line and not line[0].isspace() and not line.startswith("#") and ":" in line:
            key, value = line.split(":", 1)
            values[key] = value.split(" #")[0].strip()
    return values


@pytest.mark.parametrize("variant", ["bsq_25hz.yaml", "bsq_12_5hz.yaml"])
def test_token_rate_variants_differ_only_in_their_factors(variant):
    base, other = top_level_values("bsq.yaml"), top_level_values(variant)
    assert base.keys() == other.keys()
    differing = {key for key in base if base[key] != other[key]}
    assert differing == {"experiment_name", "compressor_downscale_factors", "decompressor_upscale_factors"}
    down, up, _ = VARIANTS[variant]
    assert other["compressor_downscale_factors"] == str(down)
    assert other["decompressor_upscale_factors"] == str(up)


def test_shared_settings_are_the_same_in_both_stages():
    bsq, vocos = top_level_values("bsq.yaml"), top_level_values("vocos.yaml")
    shared = [
        key
        for key in bsq
        if key.startswith("encoder_") or key in ("sample_rate", "valid_split", "test_split")
    ]
    assert shared and all(bsq[key] == vocos[key] for key in shared)
    decoder_keys = [key for key in bsq if key.startswith("decoder_") and key != "decoder_checkpoint"]
    for key in decoder_keys:
        assert bsq[key] == vocos[key.replace("decoder_", "generator_")], key


RELEASED = {
    "bsq.yaml": "FocalCodec_50hz",
    "bsq_25hz.yaml": "FocalCodec_25hz",
    "bsq_12_5hz.yaml": "FocalCodec_12_5hz",
}
LIBRITTS_960 = ["train-clean-100", "train-clean-360", "train-other-500"]


@pytest.mark.parametrize("variant", list(RELEASED))
def test_release_overrides_build_the_released_architecture(variant):
    """bsq*.yaml + hparams/release/bsq.yaml, read as the scripts read them: the full-size modules have the
    released checkpoint's keys and shapes (focal window 14, factor 4), in their own output folder."""
    hparams = load_hparams(variant, read_overrides("overrides_file: hparams/release/bsq.yaml"))
    listing = read_listing(RELEASED[variant])
    for part in ("encoder", "compressor", "decompressor", "decoder"):
        assert_matches_listing_part(hparams[part], listing, part)
    assert hparams["train_split"] == LIBRITTS_960
    assert hparams["output_folder"] == f"results/{variant.removesuffix('.yaml')}_release/0"


def test_release_overrides_train_the_decoder_on_libritts_960():
    hparams = load_hparams("vocos.yaml", read_overrides("overrides_file: hparams/release/vocos.yaml"))
    listing = read_listing("FocalCodec_50hz")
    assert_matches_listing_part(hparams["generator"], listing, "decoder")
    assert_matches_listing_part(hparams["encoder"], listing, "encoder")
    assert hparams["train_split"] == LIBRITTS_960
    assert hparams["output_folder"] == "results/vocos_release/0"


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_token_rate_variant_trains_at_its_rate(variant):
    torch.manual_seed(0)
    hparams = load_hparams(variant, TINY)
    brain = build_brain(Quantization, hparams)
    batch = padded_batch(0.1 * torch.randn(16000), 0.1 * torch.randn(12345))
    loss = brain.fit_batch(batch)
    assert torch.isfinite(loss)
    with torch.no_grad():
        out = brain.compute_forward(batch, sb.Stage.VALID)
    factor = VARIANTS[variant][2]
    assert out.feats.shape[1] == 49 and out.hyp_feats.shape == out.feats.shape
    assert out.toks.shape == (2, math.ceil(49 / factor))
    assert int(out.toks.max()) < 8192


@pytest.mark.slow
def test_full_size_default_config_trains_one_step():
    hparams = load_hparams("bsq.yaml", {"encoder_random_init": True})
    brain = build_brain(Quantization, hparams)
    compressor = hparams["compressor"]
    assert compressor.layers[0].focal_block.modulation.layers[1][0].weight.shape == (1024, 1, 9)  # window 7/2
    before = compressor.out_proj.weight.detach().clone()
    torch.manual_seed(0)
    loss = brain.fit_batch(padded_batch(0.1 * torch.randn(32000), 0.1 * torch.randn(24000)))
    assert torch.isfinite(loss)
    assert not torch.equal(before, compressor.out_proj.weight)
    assert sum(p.numel() for p in hparams["encoder"].parameters()) == 88_708_240
