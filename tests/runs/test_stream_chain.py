"""utils/runs/stream_chain.py: how a FocalCodec-Stream stage starts from the previous stage's run folder (the
stage-2 -> 3 hand-over is tested with stage 3, the stage-4 -> 5 one with stage 5:
tests/training/test_encoder_stage.py, test_joint_stage.py)."""

import pytest
import torch
from helpers.reference import TINY_ENCODER

from focalcodec.focalnet import FocalDecoder
from focalcodec.wavlm import WavLM
from utils.runs import (
    PretrainedMismatchError,
    RunFolderError,
    distilled_encoder_file,
    load_frozen_encoder,
    load_with_new_refiner,
    read_run,
)

DECOMPRESSOR = {"input_dim": 12, "output_dim": 64, "hidden_dims": [32, 32, 32], "focal_window": 14,
                "focal_factor": 4, "causal": True}  # fmt: skip


def decompressor(lookahead: int, seed: int = 0) -> FocalDecoder:
    torch.manual_seed(seed)
    return FocalDecoder(**DECOMPRESSOR, lookahead_size=lookahead).eval()


def test_a_new_refiner_starts_as_the_identity_or_random():
    stage4 = decompressor(lookahead=0)
    codes = torch.randn(2, 17, 12).sign() / 12**0.5
    with torch.no_grad():
        expected = stage4(codes)[0]
        for init in ("identity", "random"):
            stage5 = decompressor(lookahead=3, seed=1)
            load_with_new_refiner(stage5, stage4.state_dict(), init)
            assert torch.equal(stage5(codes)[0], expected) == (init == "identity"), init
    # Every other weight is loaded strictly; a state with a refiner is loaded as it is
    with pytest.raises(RuntimeError, match="Unexpected key"):
        load_with_new_refiner(decompressor(3), {**stage4.state_dict(), "extra": torch.zeros(1)}, "identity")
    with pytest.raises(RuntimeError, match="Missing key"):
        state = stage4.state_dict()
        state.pop("in_proj.weight")
        load_with_new_refiner(decompressor(3), state, "identity")
    trained = decompressor(3, seed=2)
    target = decompressor(3, seed=3)
    load_with_new_refiner(target, trained.state_dict(), "identity")
    assert torch.equal(target.refiner.out_proj.weight, trained.refiner.out_proj.weight)
    with pytest.raises(ValueError, match="identity or random"):
        load_with_new_refiner(decompressor(3), stage4.state_dict(), "zeros")


@pytest.mark.slow
def test_stage_4_takes_the_stage_3_output_folder(wavlm_run, posemb_run):
    run = read_run(wavlm_run)
    file = distilled_encoder_file(wavlm_run, WavLM(**{**TINY_ENCODER, "causal": True}))
    assert file == run.checkpoint() / "student_encoder.ckpt"
    encoder = WavLM(**{**TINY_ENCODER, "causal": True})
    record = load_frozen_encoder(encoder, checkpoint=str(wavlm_run))
    assert record == {"checkpoint": str(file.resolve())}
    assert not any(p.requires_grad for p in encoder.parameters())
    with pytest.raises(PretrainedMismatchError, match="encoder_causal: True"):
        distilled_encoder_file(wavlm_run, WavLM(**TINY_ENCODER))  # a non-causal encoder
    with pytest.raises(RunFolderError, match="not an encoder-stage run"):
        distilled_encoder_file(posemb_run, encoder)
