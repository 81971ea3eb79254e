"""The decoder stage's Brain (utils/training/stages/decoder.py) step by step: GAN steps, mixed
precision, non-finite losses, gradient clipping, the logged epoch loss, crop alignment at 24 and 16 kHz
(FocalCodec-Stream stage 1) and the full-size defaults (its runs through train_decoder.py:
tests/scripts/test_train_decoder.py)."""

import pytest
import speechbrain as sb
import torch
import yaml
from helpers.recipe_runner import (
    ROOT,
    build_brain,
    fit_brain,
    fixed_batch_steps,
    load_hparams,
    padded_batch,
    recipe_brain,
    tiny_overrides,
)

from utils.training.stages.decoder import DecoderStage

TINY = yaml.safe_load((ROOT / "hparams" / "tiny" / "vocos.yaml").read_text())


def test_gan_steps_on_a_fixed_batch_reduce_the_mel_loss():
    torch.manual_seed(0)
    hparams = load_hparams("vocos.yaml", {**TINY, "generator_dim": 64, "generator_ffn_dim": 128, "lr": 0.001})
    brain = build_brain(DecoderStage, hparams)
    sig = torch.sin(torch.linspace(0, 2000, 8000)) * torch.linspace(0.1, 0.5, 8000)
    batch = padded_batch(sig, 0.5 * sig[:7500])
    history = []
    for _ in range(12):
        brain.on_stage_start(sb.Stage.TRAIN, 1)
        g_loss = float(brain.fit_batch(batch))
        means = brain.tracked_means()
        history.append((g_loss, means["D_loss"], means["mel_loss"]))
    g_losses, d_losses, mel_losses = zip(*history, strict=True)
    assert len(set(g_losses)) == len(g_losses) and len(set(d_losses)) == len(d_losses)
    assert sum(mel_losses[-3:]) / 3 < 0.8 * sum(mel_losses[:3]) / 3, mel_losses
    assert brain.optimizer_step == 12


def test_bf16_autocast_steps_both_optimizers():
    torch.manual_seed(0)
    hparams = load_hparams("vocos.yaml", {**TINY, "precision": "bf16"})
    brain = build_brain(DecoderStage, hparams)
    assert brain.training_ctx.context.fast_dtype == torch.bfloat16
    weights = {
        name: next(hparams[name].parameters()).detach().clone() for name in ("generator", "discriminator")
    }
    loss = brain.fit_batch(padded_batch(0.1 * torch.randn(8000), 0.1 * torch.randn(7600)))
    assert torch.isfinite(loss)
    for name, before in weights.items():
        after = next(hparams[name].parameters())
        assert after.dtype == torch.float32 and not torch.equal(before, after), name


def tiny_brain(**overrides) -> DecoderStage:
    torch.manual_seed(0)
    return build_brain(DecoderStage, load_hparams("vocos.yaml", {**TINY, **overrides}))


def fixed_batch():
    generator = torch.Generator().manual_seed(0)
    return padded_batch(
        0.1 * torch.randn(8000, generator=generator), 0.1 * torch.randn(7600, generator=generator)
    )


def weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The parameters (not the buffers: spectral norm updates its own in every training forward)."""
    return {key: value.detach().clone() for key, value in module.named_parameters()}


def unchanged(module: torch.nn.Module, before: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(value, before[key]) for key, value in module.named_parameters())


def test_a_non_finite_loss_skips_its_update_and_counts_towards_the_patience(monkeypatch):
    brain = tiny_brain(nonfinite_patience=2)
    brain.nonfinite_count = 0  # as Brain's training loop sets it at each epoch start
    generator, discriminator = brain.hparams.generator, brain.hparams.discriminator
    monkeypatch.setattr(
        brain, "discriminator_loss", lambda out: DecoderStage.discriminator_loss(brain, out) * float("nan")
    )
    for count in (1, 2):
        d_before, g_before = weights(discriminator), weights(generator)
        brain.fit_batch(fixed_batch())
        assert unchanged(discriminator, d_before)  # the NaN update is skipped...
        assert not unchanged(generator, g_before)  # ...the finite one is not
        assert brain.nonfinite_count == count
    with pytest.raises(ValueError, match="patience is exhausted"):
        brain.fit_batch(fixed_batch())


def gradient_norms_at_step(brain: DecoderStage, monkeypatch) -> dict[str, float]:
    """The total gradient norm each optimizer sees when it steps (filled by the next ``fit_batch``)."""
    norms: dict[str, float] = {}
    for name, optimizer in brain.optimizers_dict.items():

        def step(*args, _name=name, _optimizer=optimizer, _step=optimizer.step, **kwargs):
            grads = [
                p.grad for group in _optimizer.param_groups for p in group["params"] if p.grad is not None
            ]
            norms[_name] = float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])))
            return _step(*args, **kwargs)

        monkeypatch.setattr(optimizer, "step", step)
    return norms


def test_gradients_are_clipped_to_max_grad_norm(monkeypatch):
    unclipped = gradient_norms_at_step(brain := tiny_brain(max_grad_norm=1e9), monkeypatch)
    brain.fit_batch(fixed_batch())
    clipped = gradient_norms_at_step(brain := tiny_brain(max_grad_norm=1e-3), monkeypatch)
    brain.fit_batch(fixed_batch())
    assert set(clipped) == {"optimizer_generator", "optimizer_discriminator"}
    for name, norm in clipped.items():
        assert unclipped[name] > 1e-2  # clipping had work to do
        assert norm <= 1e-3 * (1 + 1e-4), name


def test_max_grad_norm_null_never_clips(monkeypatch):
    """The original mode's decoder step: both networks step on their gradients as computed."""
    norms = gradient_norms_at_step(brain := tiny_brain(max_grad_norm=None), monkeypatch)
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda *args, **kwargs: pytest.fail("clipped"))
    brain.fit_batch(fixed_batch())
    assert set(norms) == {"optimizer_generator", "optimizer_discriminator"}
    assert norms["optimizer_generator"] > 5.0  # the default max_grad_norm would have clipped it


def test_grad_accumulation_is_refused():
    hparams = load_hparams("vocos.yaml", TINY)
    brain = DecoderStage(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts={"device": "cpu", "grad_accumulation_factor": 2},
    )
    with pytest.raises(ValueError, match="grad_accumulation_factor"):
        brain.on_fit_start()


def recorded_fit(brain, monkeypatch, train: list) -> tuple[list[tuple[int, float]], list[float]]:
    """``fit_brain`` on ``train``: every step's (epoch, loss), and every train stage's logged loss."""
    losses: list[tuple[int, float]] = []
    logged: list[float] = []
    fit_batch, on_stage_end = brain.fit_batch, brain.on_stage_end

    def recording_fit_batch(batch):
        loss = fit_batch(batch)
        losses.append((brain.hparams.epoch_counter.current, float(loss)))
        return loss

    def recording_on_stage_end(stage, stage_loss, epoch=None):
        if stage == sb.Stage.TRAIN:
            logged.append(stage_loss)
        return on_stage_end(stage, stage_loss, epoch)

    monkeypatch.setattr(brain, "fit_batch", recording_fit_batch)
    monkeypatch.setattr(brain, "on_stage_end", recording_on_stage_end)
    fit_brain(brain, train, train[:1])
    return losses, logged


def test_the_logged_train_loss_is_the_epoch_mean(tmp_path, monkeypatch):
    """The original divided epoch e's summed loss by the global step count; here every epoch logs its mean,
    also the first epoch after a resume from an end-of-epoch checkpoint (which the stage saves with the
    epoch's step count)."""
    generator = torch.Generator().manual_seed(0)
    train = [0.1 * torch.randn(7200 + 100 * i, generator=generator) for i in range(3)]
    for epochs in (2, 3):  # 2 epochs, then the same run resumed for a third
        hparams = load_hparams("vocos.yaml", {**TINY, "output_folder": str(tmp_path), "num_epochs": epochs})
        losses, logged = recorded_fit(recipe_brain(DecoderStage, hparams), monkeypatch, train)
        first = 1 if epochs == 2 else 3
        for index, epoch in enumerate(range(first, epochs + 1)):
            epoch_losses = [loss for e, loss in losses if e == epoch]
            assert len(epoch_losses) == 3
            assert logged[index] == pytest.approx(sum(epoch_losses) / 3, rel=1e-5)


@pytest.mark.slow
def test_full_size_default_config_trains_one_step():
    hparams = load_hparams("vocos.yaml", {"encoder_random_init": True})
    brain = build_brain(DecoderStage, hparams)
    generator = hparams["generator"]
    before = generator.backbone.embedding.weight.detach().clone()
    torch.manual_seed(0)
    loss = brain.fit_batch(padded_batch(0.1 * torch.randn(16000), 0.1 * torch.randn(12000)))
    assert torch.isfinite(loss)
    assert not torch.equal(before, generator.backbone.embedding.weight)
    assert sum(p.numel() for p in generator.parameters()) == 16_843_266


# --------------------------------------------------------------------------------------------------
# FocalCodec-Stream stage 1 (hparams/stream/wavenext.yaml): a causal WaveNeXt on 24 kHz targets, the encoder
# on their 16 kHz resample

STREAM_TINY = yaml.safe_load(tiny_overrides("stream/wavenext.yaml").read_text())


class FrameStartSample(torch.nn.Module):
    """Stands for the 16 kHz encoder: WavLM's frame count, frame i = the sample at its start (320 i)."""

    sample_rate = 16000

    def forward(self, sig: torch.Tensor, length: torch.Tensor | None = None) -> tuple[torch.Tensor]:
        frames = (sig.shape[1] - 400) // 320 + 1
        return (sig[:, : 320 * frames : 320, None].expand(-1, -1, 64),)


def test_crops_are_aligned_at_24_and_16_khz():
    """A ramp (sample value = its time in seconds) at 24 kHz: the encoder gets its 16 kHz resample, and
    crop frame j (its first 16 kHz sample, 320 j) holds the time of the 24 kHz crop's sample 480 j."""
    hparams = load_hparams("stream/wavenext.yaml", STREAM_TINY)
    brain = build_brain(DecoderStage, hparams)
    brain.hparams.encoder = FrameStartSample()
    ramp = torch.arange(36000) / 24000  # 1.5 s
    batch = padded_batch(ramp, ramp[:30000])
    starts = set()
    for seed in range(30):
        torch.manual_seed(seed)
        feats, sig = brain._whole_or_cropped(batch, sb.Stage.TRAIN)
        assert feats.shape == (2, 40, 64) and sig.shape == (2, 40 * 480)
        for b, samples in enumerate((36000, 30000)):
            start = round(float(feats[b, 0, 0]) * 50)  # frame index of the crop's first frame
            starts.add((b, start))
            assert torch.equal(sig[b], ramp[start * 480 : (start + 40) * 480])  # 480 samples per frame
            inside = [
                j for j in range(40) if 320 * (start + j) < samples * 2 // 3 - 32
            ]  # off the resample edge
            torch.testing.assert_close(
                feats[b, inside, 0], sig[b, [480 * j for j in inside]], atol=1e-4, rtol=1e-3
            )
    assert len({start for b, start in starts if b == 0}) > 5  # random starts


def test_wavenext_gan_steps_reduce_the_mel_loss_and_the_encoder_stays():
    torch.manual_seed(0)
    hparams = load_hparams("stream/wavenext.yaml", {**STREAM_TINY, "lr": 0.003})
    brain = build_brain(DecoderStage, hparams)
    encoder = {key: value.clone() for key, value in hparams["encoder"].state_dict().items()}
    sig = torch.sin(torch.linspace(0, 3000, 24000)) * torch.linspace(0.1, 0.5, 24000)
    batch = padded_batch(sig, 0.5 * sig[:22000])
    mel_losses = [step["mel_loss"] for step in fixed_batch_steps(brain, batch, 10)]
    assert sum(mel_losses[-3:]) / 3 < 0.9 * sum(mel_losses[:3]) / 3, mel_losses  # a log-mel L1: slow
    for key, value in hparams["encoder"].state_dict().items():
        assert torch.equal(value, encoder[key]), key


@pytest.mark.slow
def test_wavenext_full_size_default_config_trains_one_step():
    hparams = load_hparams("stream/wavenext.yaml", {"encoder_random_init": True})
    brain = build_brain(DecoderStage, hparams)
    generator = hparams["generator"]
    before = generator.head.proj.weight.detach().clone()
    torch.manual_seed(0)
    loss = brain.fit_batch(padded_batch(0.1 * torch.randn(73000)))  # one 150-frame crop
    assert torch.isfinite(loss) and not torch.equal(before, generator.head.proj.weight)
    assert sum(p.numel() for p in generator.parameters()) == 41_506_272
