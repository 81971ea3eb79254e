"""The quantizer stage's Brain (utils/training/stages/quantizer.py) step by step: resuming inside an
epoch, and FocalCodec-Stream stage 4 on the frozen distilled encoder (its runs through train_quantizer.py:
tests/scripts/test_train_quantizer.py; the token-rate variants and the full-size defaults of bsq.yaml:
tests/scripts/test_hparams.py)."""

import contextlib

import pytest
import torch
import yaml
from helpers.recipe_runner import (
    ROOT,
    build_brain,
    fit_brain,
    load_hparams,
    padded_batch,
    recipe_brain,
    tiny_overrides,
)
from helpers.run_helpers import quantizer_steps_on_speech

from utils.runs import load_decoder, load_frozen_encoder
from utils.training.stages.quantizer import QuantizerStage

pytestmark = pytest.mark.slow


class KilledError(Exception):
    """Stands for the kill of a run in the middle of a batch."""


def test_resume_inside_an_epoch_runs_only_its_remaining_batches(tmp_path, monkeypatch):
    """Killed during batch 5 of 10 with a checkpoint every 2 batches, a new run does batches 5 to 10 of
    that epoch only: the 4 done are not repeated and none is missed."""
    tiny = yaml.safe_load((ROOT / "hparams" / "tiny" / "bsq.yaml").read_text())
    overrides = {**tiny, "output_folder": str(tmp_path), "num_epochs": 1}
    generator = torch.Generator().manual_seed(0)
    train = [0.1 * torch.randn(8000 + 160 * i, generator=generator) for i in range(10)]

    def run(stop_at: int | None) -> list[str]:
        brain = recipe_brain(QuantizerStage, load_hparams("bsq.yaml", overrides), ckpt_interval_steps=2)
        seen, fit_batch = [], brain.fit_batch

        def counting_fit_batch(batch):
            seen.extend(batch.id)
            if len(seen) == stop_at:
                raise KilledError
            return fit_batch(batch)

        monkeypatch.setattr(brain, "fit_batch", counting_fit_batch)
        with contextlib.suppress(KilledError):
            fit_brain(brain, train, train[:2])
        return seen

    first = run(stop_at=5)
    resumed = run(stop_at=None)
    assert len(resumed) == 10 - 4
    assert sorted(first[:4] + resumed) == sorted(f"utt{i}" for i in range(10))
    assert first[4] == resumed[0]  # the interrupted batch is done again, from its start


# --------------------------------------------------------------------------------------------------
# FocalCodec-Stream stage 4 (hparams/stream/bsq.yaml): causal modules on the frozen distilled encoder of
# stage 3, listening through stage 1's 24 kHz WaveNeXt

STREAM_TINY = {
    **yaml.safe_load(tiny_overrides("stream/bsq.yaml").read_text()),
    "encoder_checkpoint": "unused",
}


def test_stream_steps_reduce_the_loss_on_the_frozen_distilled_encoder(wavlm_run, wavenext_run):
    torch.manual_seed(0)
    hparams = load_hparams("stream/bsq.yaml", {**STREAM_TINY, "lr": 0.002})
    load_frozen_encoder(hparams["encoder"], checkpoint=str(wavlm_run))
    hparams["decoder"] = load_decoder(wavenext_run, hparams["decoder"], hparams["encoder"])
    quantizer_steps_on_speech(build_brain(QuantizerStage, hparams))  # encoder and decoder stay as they are


@pytest.mark.slow
def test_stream_full_size_default_config_trains_one_step():
    hparams = load_hparams("stream/bsq.yaml", {"encoder_checkpoint": "unused"})
    hparams["decoder"] = None
    brain = build_brain(QuantizerStage, hparams)
    compressor = hparams["compressor"]
    before = compressor.out_proj.weight.detach().clone()
    loss = brain.fit_batch(padded_batch(0.1 * torch.randn(16000), 0.1 * torch.randn(12000)))
    assert torch.isfinite(loss) and not torch.equal(before, compressor.out_proj.weight)
    counts = [sum(p.numel() for p in hparams[name].parameters()) for name in ("compressor", "decompressor")]
    assert counts == [42_630_171, 42_631_183]  # the original's sizes (no refiner in this stage)
