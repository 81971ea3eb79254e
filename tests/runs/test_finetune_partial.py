"""Fine-tuning into another architecture (``--init_from_partial True``, utils/runs/partial.py): every tensor
whose name and shape match is loaded, the others are listed in the log and in ``init_from.json``; strictly
(the default) the same source is refused. And 50 -> 25 Hz through the real command line, exported as a
25 Hz codec that loads strictly."""

import json

import pytest
import torch
import yaml
from helpers.recipe_runner import QUANTIZER_ARGS, run_recipe, tiny_overrides
from helpers.run_helpers import assert_same_weights, export, official_codec, recipe_modules

from focalcodec.codec import FocalCodec
from train_joint import Refinement
from utils.runs import PretrainedMismatchError, codec_from_runs, init_stage, pretrained_codec, read_run
from utils.training.stages.quantizer import QuantizerStage

TINY_JOINT = yaml.safe_load(tiny_overrides("stream/joint.yaml").read_text())
NON_CAUSAL = {"compressor_causal": False, "decompressor_causal": False, "student_encoder_causal": False}


def focal_block_keys(*names: str) -> list[str]:
    return [f"layers.{layer}.focal_block.{name}" for layer in range(3) for name in names]


# A causal focal block normalises with DynamicTanh (alpha) and has a global-context convolution; a
# non-causal one normalises with LayerNorm (weight, bias)
CAUSAL_ONLY = focal_block_keys(
    "modulation_norm.alpha",
    "modulation.layers.2.0.weight",
    "modulation.layers.2.0.bias",
    "feed_forward_norm.alpha",
)
NON_CAUSAL_ONLY = focal_block_keys(
    "modulation_norm.weight", "modulation_norm.bias", "feed_forward_norm.weight", "feed_forward_norm.bias"
)
REFINER = [
    "refiner.in_proj.weight",
    "refiner.in_proj.bias",
    "refiner.out_proj.weight",
    "refiner.out_proj.bias",
]


def stage(tmp_path, yaml_file: str, overrides: dict, **changes) -> dict:
    hparams = recipe_modules(yaml_file, {**overrides, **changes}, tmp_path / "stage")
    (tmp_path / "out").mkdir(exist_ok=True)
    hparams["output_folder"] = str(tmp_path / "out")
    return hparams


def test_a_non_causal_codec_goes_into_the_causal_joint_stage_only_partially(tmp_path):
    codec, folder = official_codec(
        tmp_path / "codec", "stream/joint.yaml", {**TINY_JOINT, **NON_CAUSAL}, "student_encoder"
    )
    pretrained = pretrained_codec(folder)
    hparams = stage(tmp_path, "stream/joint.yaml", TINY_JOINT)
    with pytest.raises(PretrainedMismatchError) as error:
        init_stage(pretrained, hparams, Refinement.trained_parts)
    assert "compressor_causal: False  # YAML has True" in str(error.value)
    assert "--init_from_partial True" in str(error.value)

    # the small models' new global-context convolutions (window 512) weigh more than their other weights
    hparams.update(init_from_partial=True, init_from_min_loaded=0.4)
    record = init_stage(pretrained, hparams, Refinement.trained_parts)
    reports = {report.module: report for report in record.reports}
    assert reports["student_encoder"].new == reports["student_encoder"].dropped == []  # same names, shapes
    assert_same_weights(hparams["student_encoder"], codec.encoder)
    assert reports["compressor"].new == CAUSAL_ONLY and reports["compressor"].dropped == NON_CAUSAL_ONLY
    assert reports["decompressor"].new == CAUSAL_ONLY + REFINER
    assert reports["decompressor"].dropped == NON_CAUSAL_ONLY
    # the new refiner starts as the identity; every loaded tensor is the codec's
    assert not hparams["decompressor"].refiner.out_proj.weight.any()
    state = codec.compressor.state_dict()
    for key, value in hparams["compressor"].state_dict().items():
        assert key in CAUSAL_ONLY or torch.equal(value, state[key]), key
    written = json.loads((tmp_path / "out" / "init_from.json").read_text())
    assert written["partial"] and written["settings"] == record.settings
    assert written["modules"]["decompressor"]["new"] == CAUSAL_ONLY + REFINER
    assert written["modules"]["compressor"]["dropped"] == NON_CAUSAL_ONLY
    loaded = sum(report.loaded_elements for report in record.reports)
    assert written["loaded_share"] == pytest.approx(
        loaded / sum(report.elements for report in record.reports)
    )


def test_more_codes_reshape_the_two_projections_and_too_little_is_refused(tmp_path):
    """4096 -> 65536 codes: the compressor's output and the decompressor's input projections are the only
    tensors that do not fit; a source that gives less than init_from_min_loaded is refused."""
    _, folder = official_codec(tmp_path / "codec", "stream/joint.yaml", TINY_JOINT, "student_encoder")
    pretrained = pretrained_codec(folder)
    tiny = yaml.safe_load(tiny_overrides("stream/bsq.yaml").read_text())
    hparams = stage(tmp_path, "stream/bsq.yaml", tiny, quantizer_code_dim=16)
    with pytest.raises(PretrainedMismatchError, match="quantizer_code_dim: 12  # YAML has 16"):
        init_stage(pretrained, hparams, QuantizerStage.trained_parts)
    hparams["init_from_partial"] = True
    record = init_stage(pretrained, hparams, QuantizerStage.trained_parts)
    reports = {report.module: report for report in record.reports}
    assert reports["compressor"].reshaped == {
        "out_proj.weight": ([12, 32], [16, 32]),
        "out_proj.bias": ([12], [16]),
    }
    assert reports["decompressor"].reshaped == {"in_proj.weight": ([32, 12], [32, 16])}
    assert reports["decompressor"].dropped == REFINER  # stage 4 trains no refiner
    assert 0.9 < record.loaded_share < 1.0

    hparams["init_from_min_loaded"] = 0.999
    with pytest.raises(PretrainedMismatchError, match=r"init_from\.json"):
        init_stage(pretrained, hparams, QuantizerStage.trained_parts)


@pytest.mark.slow
def test_50_to_25_hz_trains_and_exports_a_25_hz_codec(quantizer_run, decoder_run, small_corpus, tmp_path):
    """A 50 Hz codec (the session's tiny runs, exported) fine-tuned at 25 Hz with the partial option (and
    an EMA of the weights): the run lists the two reshaped tensors, and its export with the decoder run is a
    25 Hz codec that loads strictly, holding the averaged weights (the trained ones with --raw_weights)."""
    assert export("--quantizer", quantizer_run, "--decoder", decoder_run, "--output", tmp_path / "50hz",
                  "--allow_random_encoder").returncode == 0  # fmt: skip
    out = tmp_path / "bsq_25hz"
    extra = ["--init_from", str(tmp_path / "50hz"), "--init_from_partial", "True"]
    extra += ["--ema_decay", "0.5", "--ema_log_raw", "True"]
    run_recipe("train_quantizer.py", "bsq_25hz.yaml", small_corpus, out, *QUANTIZER_ARGS, *extra)
    record = json.loads((out / "init_from.json").read_text())
    assert record["modules"]["compressor"]["reshaped"] == {
        "layers.0.downscale.downscale.weight": {"pretrained": [48, 64, 1], "module": [48, 64, 2]}
    }
    assert record["modules"]["decompressor"]["reshaped"] == {
        "layers.2.upscale.upscale.weight": {"pretrained": [48, 64, 1], "module": [48, 64, 2]}
    }
    assert "raw_loss" in (out / "train_log.txt").read_text()  # both weights validated

    for name, raw in (("ema", False), ("raw", True)):
        args = ["--quantizer", out, "--decoder", decoder_run, "--output", tmp_path / name]
        result = export(*args, *(["--raw_weights"] if raw else []))
        assert result.returncode == 0, result.stderr
        codec = FocalCodec.from_pretrained(tmp_path / name)  # strict
        assert codec.token_rate == 25
        run = read_run(out)
        expected = run.weights_file("compressor", ema=not raw)
        assert expected.name == ("compressor.ckpt" if raw else "ema_compressor.ckpt")
        assert_same_weights(codec.compressor, torch.load(expected))
    averaged, trained = (torch.load(run.weights_file("compressor", ema=ema)) for ema in (True, False))
    assert any(not torch.equal(averaged[key], trained[key]) for key in trained)
    assert_same_weights(codec_from_runs(out, decoder_run, ema=False).compressor, trained)
