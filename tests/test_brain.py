"""The stages' Brain base class (utils/brain.py): the opt-in compiled step and its fallback."""

import logging

import pytest
import torch
import yaml
from recipe_runner import ROOT, build_brain, load_hparams, padded_batch

from train_decoder import Resynthesis
from train_quantizer import Quantization

STAGES = {"quantizer": ("bsq.yaml", Quantization), "decoder": ("vocos.yaml", Resynthesis)}


def tiny(stage: str) -> dict:
    yaml_file = STAGES[stage][0]
    return yaml.safe_load((ROOT / "hparams" / "tiny" / yaml_file).read_text())


def fixed_batch():
    generator = torch.Generator().manual_seed(0)
    return padded_batch(
        0.1 * torch.randn(8000, generator=generator), 0.1 * torch.randn(7600, generator=generator)
    )


def steps(stage: str, **overrides) -> tuple[object, list[float]]:
    """The stage's Brain after two training steps on a fixed batch, and their losses."""
    yaml_file, brain_class = STAGES[stage]
    torch.manual_seed(0)
    brain = build_brain(brain_class, load_hparams(yaml_file, {**tiny(stage), **overrides}))
    losses = [float(brain.fit_batch(fixed_batch())) for _ in range(2)]
    return brain, losses


@pytest.mark.slow
@pytest.mark.parametrize("stage", list(STAGES))
def test_a_compiled_step_gives_the_eager_losses(stage):
    """torch.compile of the trained modules (traced with the aot_eager backend here: inductor's C++ build
    takes minutes on this CPU; the benchmark measures inductor) gives the eager losses."""
    _, eager = steps(stage)
    brain, compiled = steps(stage, compile=True, compile_backend="aot_eager")
    assert all(
        isinstance(module, torch._dynamo.eval_frame.OptimizedModule) for module in brain.modules.values()
    )
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-6)


def test_a_module_that_cannot_compile_runs_eagerly(caplog):
    with caplog.at_level(logging.WARNING):
        brain, losses = steps("quantizer", compile=True, compile_backend="no-such-backend")
    assert "running it eagerly" in caplog.text
    assert not any(
        isinstance(module, torch._dynamo.eval_frame.OptimizedModule) for module in brain.modules.values()
    )
    assert all(torch.isfinite(torch.tensor(losses)))
