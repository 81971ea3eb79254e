"""The stages' Brain base class (utils/training/brain.py): the opt-in compiled step and its fallback, and the
valid/test audio (scored as written)."""

import logging

import numpy as np
import pytest
import soundfile as sf
import speechbrain as sb
import torch
import yaml
from helpers.recipe_runner import ROOT, build_brain, load_hparams, padded_batch
from helpers.run_helpers import speech
from speechbrain.dataio.batch import PaddedBatch
from torch import nn
from torch.nn.utils import spectral_norm

from utils.evaluation import read_scores
from utils.metrics import QualityMetrics
from utils.training.brain import compile_module
from utils.training.stages.decoder import DecoderStage
from utils.training.stages.quantizer import QuantizerStage

STAGES = {"quantizer": ("bsq.yaml", QuantizerStage), "decoder": ("vocos.yaml", DecoderStage)}


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
    eager_brain, eager = steps(stage)
    brain, compiled = steps(stage, compile=True, compile_backend="aot_eager", compile_module_keys=None)
    for name, module in brain.modules.items():  # the discriminator's spectral-normalised layers stay eager
        optimized = isinstance(module, torch._dynamo.eval_frame.OptimizedModule)
        assert optimized == (name != "discriminator")
        module = getattr(module, "_orig_mod", module)
        assert list(module.state_dict()) == list(eager_brain.modules[name].state_dict())
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-6)


class SpectralNormalised(nn.Module):
    """A spectral-normalised layer and plain ones, as in the HiFi-GAN multi-scale discriminator."""

    def __init__(self):
        super().__init__()
        conv = nn.Sequential(nn.Conv1d(4, 4, 3), nn.LeakyReLU(0.1))
        self.layers = nn.ModuleList([spectral_norm(nn.Conv1d(1, 4, 3)), conv])
        self.post = nn.Conv1d(4, 1, 3)

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return self.post(x)


def test_inductor_compiles_around_spectral_norm():
    """Called on real then generated audio before one backward (the discriminator's step), a module
    compiled whole by inductor fails on spectral norm's in-place update; compile_module leaves those
    layers eager and compiles the others in place: same gradients, same state-dict keys."""
    torch.manual_seed(0)
    eager = SpectralNormalised()
    compiled = SpectralNormalised()
    compiled.load_state_dict(eager.state_dict())
    compiled = compile_module(compiled, {"backend": "inductor", "dynamic": None})
    assert compiled.layers[0]._compiled_call_impl is None
    assert compiled.layers[1]._compiled_call_impl is not None
    assert compiled.post._compiled_call_impl is not None
    real = torch.randn(2, 1, 50)
    gradients = []
    for module in (eager, compiled):
        generated = torch.randn(2, 1, 50, generator=torch.Generator().manual_seed(1), requires_grad=True)
        loss = module(real).relu().mean() + (1 - module(generated)).relu().mean()
        loss.backward()
        gradients.append([parameter.grad for parameter in module.parameters()])
    torch.testing.assert_close(gradients[1], gradients[0])
    assert list(compiled.state_dict()) == list(eager.state_dict())


def test_a_module_that_cannot_compile_runs_eagerly(caplog):
    with caplog.at_level(logging.WARNING):
        brain, losses = steps("quantizer", compile=True, compile_backend="no-such-backend")
    assert "running it eagerly" in caplog.text
    assert not any(
        isinstance(module, torch._dynamo.eval_frame.OptimizedModule) for module in brain.modules.values()
    )
    assert all(torch.isfinite(torch.tensor(losses)))


class Louder(nn.Module):
    """A generator whose output is 20 times louder: some samples leave [-1, 1]."""

    def __init__(self, generator: nn.Module):
        super().__init__()
        self.generator = generator

    def forward(self, feats):
        return (20 * self.generator(feats)[0],)


def test_the_written_audio_is_the_scored_audio(tmp_path, caplog):
    """A test stage scores its audio as the WAV files hold it (16-bit, clipped): the written _hyp and _ref
    files, read back and scored, give exactly the figures the stage reports; the clipped samples are
    counted in a warning. Beside metrics.txt: every utterance's score and the listening report."""
    overrides = {**tiny("decoder"), "output_folder": str(tmp_path), "metrics": ["sim_resemblyzer"]}
    torch.manual_seed(0)
    brain = build_brain(DecoderStage, load_hparams("vocos.yaml", {**overrides, "compute_metrics": True}))
    brain.modules.generator = Louder(brain.modules.generator)
    sig = speech()[0]
    # ids of a folder corpus hold "/" (the files go to subfolders)
    batch = PaddedBatch([{"id": "spk1/a", "sig": sig}, {"id": "spk2/b", "sig": sig[:20000]}])
    brain.on_stage_start(sb.Stage.TEST)
    brain.evaluate_batch(batch, sb.Stage.TEST)
    with caplog.at_level(logging.WARNING):
        reported = brain.quality_stats(sb.Stage.TEST)["Sim-Resemblyzer"]
    clipped = int(caplog.text.split("were clipped (")[1].split(" of hyp")[0])
    assert clipped > 100

    folder = tmp_path / "audios" / "epoch0000"
    rescored = QualityMetrics(metrics="sim_resemblyzer")
    for utt_id in batch.id:
        hyp, ref = (sf.read(folder / f"{utt_id}_{name}.wav", dtype="float32")[0] for name in ("hyp", "ref"))
        assert np.abs(hyp).max() == 1.0  # clipped
        rescored.append([utt_id], torch.from_numpy(hyp)[None], torch.from_numpy(ref)[None])
    assert rescored.summarize("Sim-Resemblyzer") == reported
    assert read_scores(tmp_path / "scores.csv") == {"decoder": rescored.utterance_scores()}
    report = (tmp_path / "report.html").read_text()
    for utt_id in batch.id:  # the reference first, then the resynthesis
        assert report.index(f'src="audios/epoch0000/{utt_id}_ref.wav"') < report.index(f"{utt_id}_hyp.wav")
    assert "| decoder |" in (tmp_path / "results.md").read_text()
