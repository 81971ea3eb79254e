"""The YAML files: the token-rate variants (override files of bsq.yaml) resolve to the hyperparameters of the
full copies they replaced, shared settings agree, and the full-size defaults train."""

import math

import pytest
import speechbrain as sb
import torch
import yaml
from helpers.recipe_runner import ROOT, build_brain, load_hparams, padded_batch
from helpers.reference import assert_matches_listing_part, read_listing
from ruamel.yaml import YAML

from utils.training.recipe import load_hparams as load_hparams_file
from utils.training.recipe import read_overrides
from utils.training.stages.quantizer import QuantizerStage

TINY = yaml.safe_load((ROOT / "hparams" / "tiny" / "bsq.yaml").read_text())
TINY_VOCOS = yaml.safe_load((ROOT / "hparams" / "tiny" / "vocos.yaml").read_text())
# YAML -> (compressor downscale factors, decompressor upscale factors, frames per token)
VARIANTS = {
    "bsq.yaml": ([1, 1, 1], [1, 1, 1], 1),
    "bsq_25hz.yaml": ([2, 1, 1], [1, 1, 2], 2),
    "bsq_12_5hz.yaml": ([2, 2, 1], [1, 2, 2], 4),
}


def top_level_values(name: str) -> dict[str, str]:
    """The top-level entries of a YAML file as text (tags kept: ``!ref <encoder_dim>``), building nothing."""
    document = YAML().load((ROOT / "hparams" / name).read_text())
    tags = {key: getattr(getattr(value, "tag", None), "value", None) for key, value in document.items()}
    return {key: f"{tags[key]} {value}" if tags[key] else str(value) for key, value in document.items()}


def resolved(hparams: dict) -> dict:
    """Loaded hyperparameters in comparable form: a module as its class, config and weight shapes; another
    object as its class; plain values as they are."""

    def comparable(value):
        if isinstance(value, torch.nn.Module):
            shapes = {key: tuple(tensor.shape) for key, tensor in value.state_dict().items()}
            return type(value).__qualname__, getattr(value, "config", None), shapes
        if isinstance(value, list | tuple):
            return [comparable(item) for item in value]
        if isinstance(value, dict):
            return {key: comparable(item) for key, item in value.items()}
        if isinstance(value, str | int | float | bool | type(None)):
            return value
        return type(value).__qualname__

    return {key: comparable(value) for key, value in hparams.items()}


@pytest.mark.parametrize("variant", ["bsq_25hz.yaml", "bsq_12_5hz.yaml"])
def test_token_rate_variants_resolve_to_the_copies_they_replaced(variant, tmp_path):
    """``hparams/<variant>`` is now a few overrides of bsq.yaml; loaded as the scripts load it, every key has
    the value the full copy it replaced gave (tests/data/hparams-before/, today's files at the change).
    Keys added to bsq.yaml since then come from bsq.yaml."""
    overrides = {**TINY, "output_folder": str(tmp_path / "out")}
    before = tmp_path / variant
    before.write_text((ROOT / "tests" / "data" / "hparams-before" / variant).read_text())
    torch.manual_seed(0)
    old = resolved(load_hparams_file(str(before), {"data_folder": "unused", **overrides}))
    torch.manual_seed(0)
    new = resolved(load_hparams(variant, overrides))
    for key, value in old.items():
        assert new[key] == value, key
    base = resolved(load_hparams("bsq.yaml", overrides))
    assert {key: new[key] for key in new.keys() - old.keys()} == {
        key: base[key] for key in new.keys() - old.keys()
    }
    down, up, _ = VARIANTS[variant]
    assert (new["compressor_downscale_factors"], new["decompressor_upscale_factors"]) == (down, up)


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


def test_overrides_files_apply_in_order_and_the_command_line_wins():
    """--overrides_file [tiny, original]: the original mode over the small models (its full-width
    discriminator over tiny's 1/8), the command line over both; one file alone as before."""
    files = "overrides_file: [hparams/tiny/vocos.yaml, hparams/original/vocos.yaml]"
    overrides = read_overrides(f"{files}\nlr: 0.001")
    hparams = load_hparams("vocos.yaml", overrides)
    assert (
        hparams["generator_dim"]
        == TINY_VOCOS["generator_dim"]
        != load_hparams("vocos.yaml", {})["generator_dim"]
    )
    assert (
        hparams["discriminator_channels_divisor"] == 1 and TINY_VOCOS["discriminator_channels_divisor"] == 8
    )
    assert hparams["pcm16_audio"] is True and hparams["max_grad_norm"] is None and hparams["lr"] == 0.001
    hparams = load_hparams(
        "bsq.yaml", read_overrides("overrides_file: [hparams/tiny/bsq.yaml, hparams/original/bsq.yaml]")
    )
    assert hparams["pcm16_audio"] is True and hparams["scheduler"].sign_safe is False
    assert hparams["compressor_hidden_dims"] == TINY["compressor_hidden_dims"]
    assert read_overrides("overrides_file: hparams/tiny/bsq.yaml") == TINY


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_token_rate_variant_trains_at_its_rate(variant):
    torch.manual_seed(0)
    hparams = load_hparams(variant, TINY)
    brain = build_brain(QuantizerStage, hparams)
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
    brain = build_brain(QuantizerStage, hparams)
    compressor = hparams["compressor"]
    assert compressor.layers[0].focal_block.modulation.layers[1][0].weight.shape == (1024, 1, 9)  # window 7/2
    before = compressor.out_proj.weight.detach().clone()
    torch.manual_seed(0)
    loss = brain.fit_batch(padded_batch(0.1 * torch.randn(32000), 0.1 * torch.randn(24000)))
    assert torch.isfinite(loss)
    assert not torch.equal(before, compressor.out_proj.weight)
    assert sum(p.numel() for p in hparams["encoder"].parameters()) == 88_708_240


# --------------------------------------------------------------------------------------------------
# FocalCodec-Stream (hparams/stream/)

STREAM = ("wavenext", "conv_posemb", "wavlm", "bsq", "joint")
# the settings main() resolves from the previous stage's output folder
PLACEHOLDERS = {
    "wavlm": {"student_encoder_posemb_checkpoint": "unused"},
    "bsq": {"encoder_checkpoint": "unused"},
    "joint": {"quantizer_checkpoint": "unused"},
}


def stream_values(name: str) -> dict[str, str]:
    return top_level_values(f"stream/{name}.yaml")


def test_the_stream_stages_share_their_settings():
    """One teacher for stages 1, 2, 3 and 5; stage 4's encoder is stage 3's student; stage 5's compressor,
    quantizer and decompressor are stage 4's (plus the refiner); both listen through stage 1's decoder."""
    values = {name: stream_values(name) for name in STREAM}
    teacher = {key: value for key, value in values["wavlm"].items() if key.startswith("encoder_")}
    for name in ("wavenext", "conv_posemb", "joint"):
        assert {key: values[name][key] for key in teacher} == teacher, name
    student = {
        key: values["wavlm"][f"student_{key}"] for key in teacher if f"student_{key}" in values["wavlm"]
    }
    assert student["encoder_causal"] == "True" == values["bsq"]["encoder_causal"]
    for key, value in teacher.items():
        if key not in (
            "encoder_causal",
            "encoder_max_cached_steps",
            "encoder_checkpoint",
            "encoder_random_init",
        ):
            assert values["bsq"][key] == value, key
    assert (
        values["wavlm"]["student_encoder_max_cached_steps"]
        == values["joint"]["student_encoder_max_cached_steps"]
    )
    shared = [
        key
        for key in values["bsq"]
        if key.startswith(("compressor_", "quantizer_", "decompressor_", "decoder_"))
    ]
    differing = {key for key in shared if values["bsq"][key] != values["joint"][key]}
    assert differing == {"decompressor_lookahead_size"}  # 0 in stage 4, 3 in stage 5 (the new refiner)
    for key in (key for key in shared if key.startswith("decoder_") and key != "decoder_checkpoint"):
        assert values["bsq"][key] == values["wavenext"][key.replace("decoder_", "generator_")], key
    for name in STREAM:  # every stage in its own folder under results/stream/ (none in the first recipe's)
        assert values[name]["output_folder"] == "!ref results/stream/<experiment_name>/<seed>"
    assert len({values[name]["experiment_name"] for name in STREAM}) == 5
    # The small settings of stages 4 and 5 fit each other too (stage 5 starts from stage 4)
    tiny = {
        name: yaml.safe_load((ROOT / "hparams" / "tiny" / "stream" / f"{name}.yaml").read_text())
        for name in ("bsq", "joint")
    }
    assert {k: v for k, v in tiny["bsq"].items() if k.startswith(("compressor_", "decompressor_"))} == {
        k: v for k, v in tiny["joint"].items() if k.startswith(("compressor_", "decompressor_"))
    }


@pytest.mark.parametrize("size", ["2k", "4k", "65k"])
def test_codebook_configs_build_the_released_causal_architectures(size):
    """bsq.yaml and joint.yaml with hparams/stream/codebook_<size>.yaml, read as the scripts read them: the
    joint stage's full-size encoder, compressor and decompressor (and stage 1's decoder) have the keys and
    shapes of lucadellalib/focalcodec_50hz_<size>_causal, in folders of their own."""
    overrides = read_overrides(f"overrides_file: hparams/stream/codebook_{size}.yaml")
    listing = read_listing(f"FocalCodec_50hz_{size}_causal")
    bits = {"2k": 11, "4k": 12, "65k": 16}[size]
    for name in ("bsq", "joint"):
        hparams = load_hparams(f"stream/{name}.yaml", {**overrides, **PLACEHOLDERS[name]})
        assert hparams["quantizer_code_dim"] == bits and hparams["quantizer"].code_dim == bits
        assert hparams["output_folder"] == f"results/stream/{name}_{size}/0"
        assert_matches_listing_part(hparams["compressor"], listing, "compressor")
    assert_matches_listing_part(hparams["student_encoder"], listing, "encoder")
    assert_matches_listing_part(hparams["decompressor"], listing, "decompressor")
    if size == "4k":  # the decoder does not depend on the codebook
        assert_matches_listing_part(load_hparams("stream/wavenext.yaml", {})["generator"], listing, "decoder")
