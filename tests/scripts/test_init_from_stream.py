"""``--init_from`` in FocalCodec-Stream stages 1-4 through their real command line: each starts from a causal
codec written locally in the released format (small settings, the format of
lucadellalib/focalcodec_50hz_*_causal), and its modules hold that codec's weights at its first step
(tests/helpers/ddp_probe.py's ``modules_at_start``). Stage 5: tests/scripts/test_train_joint.py."""

import json

import pytest
import torch
import yaml
from helpers.ddp_probe import digest
from helpers.recipe_runner import QUANTIZER_ARGS, RUN_ARGS, run_recipe, tiny_overrides
from helpers.run_helpers import official_codec

TINY_JOINT = yaml.safe_load(tiny_overrides("stream/joint.yaml").read_text())
POSEMB = "encoder.positional_embedding."

# stage -> script, YAML, options, {module of the stage: what of the codec it starts as}
STAGES = {
    "1": ("train_decoder.py", "stream/wavenext.yaml", RUN_ARGS, {"generator": "decoder"}),
    "2": ("train_posemb.py", "stream/conv_posemb.yaml", QUANTIZER_ARGS, {"student_posemb": "posemb"}),
    "3": ("train_encoder.py", "stream/wavlm.yaml", QUANTIZER_ARGS, {"student_encoder": "encoder"}),
    "4": (
        "train_quantizer.py",
        "stream/bsq.yaml",
        QUANTIZER_ARGS,
        {
            "encoder": "encoder",
            "compressor": "compressor",
            "decompressor": "decompressor",
            "decoder": "decoder",
        },
    ),
}


@pytest.fixture(scope="module")
def causal_codec(tmp_path_factory):
    """A random causal codec with the small settings of every stream stage (its encoder the student's)."""
    return official_codec(
        tmp_path_factory.mktemp("causal"), "stream/joint.yaml", TINY_JOINT, "student_encoder"
    )


def expected_state(codec, part: str) -> dict[str, torch.Tensor]:
    """What a stage's module starts as: the codec's part; ``posemb``, its encoder's positional embedding;
    stage 4's decompressor (no refiner) the codec's without its refiner."""
    if part == "posemb":
        state = codec.encoder.state_dict()
        return {key[len(POSEMB) :]: value for key, value in state.items() if key.startswith(POSEMB)}
    state = getattr(codec, part).state_dict()
    return {key: value for key, value in state.items() if not key.startswith("refiner.")}


@pytest.mark.slow
@pytest.mark.parametrize("stage", list(STAGES))
def test_each_stream_stage_starts_from_a_causal_codec(stage, causal_codec, small_corpus, tmp_path):
    codec, folder = causal_codec
    script, hparams, options, modules = STAGES[stage]
    out = tmp_path / "run"
    run_recipe(script, hparams, small_corpus, out, *options, "--init_from", str(folder), probe=True)
    start = json.loads((out / "probe-0.json").read_text())["modules_at_start"]
    for module, part in modules.items():
        assert start[module] == digest(expected_state(codec, part)), module
    record = json.loads((out / "init_from.json").read_text())
    assert not record["partial"] and record["loaded_share"] <= 1.0
    dropped = {name: report["dropped"] for name, report in record["modules"].items()}
    refiner = [
        "refiner.in_proj.weight",
        "refiner.in_proj.bias",
        "refiner.out_proj.weight",
        "refiner.out_proj.bias",
    ]
    assert dropped == {name: refiner if name == "decompressor" else [] for name in dropped}
    assert all(not report["new"] and not report["reshaped"] for report in record["modules"].values())
