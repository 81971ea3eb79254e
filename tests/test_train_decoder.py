"""The decoder stage: crop alignment, GAN steps, and end-to-end runs through the real command line."""

import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import soundfile as sf
import speechbrain as sb
import torch
import yaml
from recipe_runner import (
    ROOT,
    build_brain,
    load_hparams,
    padded_batch,
    recipe_command,
    recipe_env,
    run_recipe,
    run_torchrun,
)

from focalcodec.wavlm import WavLM
from train_decoder import Resynthesis
from utils.crop import min_crop_samples, random_feature_crop
from utils.sample_corpus import make_sample_corpus
from utils.train_logger import parse_train_log

# Small enough for the full-size HiFi-GAN discriminator on 2 CPU cores
SPLITS = {"train-clean-100": (2, 3), "dev-clean": (1, 2), "test-clean": (1, 2)}
ARGS = ["--train_batch_size", "2", "--valid_size", "2"]
TINY = yaml.safe_load((ROOT / "hparams" / "tiny" / "vocos.yaml").read_text())


def test_crop_frames_and_samples_are_aligned():
    torch.manual_seed(0)
    hop, frames, num_frames = 320, 40, 22
    sig = torch.arange(2 * frames * hop, dtype=torch.float).reshape(2, -1)  # sample value = its index
    feats = torch.arange(frames, dtype=torch.float)[None, :, None].expand(2, -1, 3)  # frame value = index
    lens = torch.tensor([1.0, 0.7])
    for _ in range(50):
        feats_crop, sig_crop = random_feature_crop(feats, sig, lens, num_frames, hop)
        assert feats_crop.shape == (2, num_frames, 3) and sig_crop.shape == (2, num_frames * hop)
        for b in range(2):
            start = int(feats_crop[b, 0, 0])
            assert torch.equal(feats_crop[b, :, 0], torch.arange(start, start + num_frames).float())
            # frame i of the crop covers samples [i*hop, (i+1)*hop) of the waveform crop
            expected = sig[b, start * hop : (start + num_frames) * hop]
            assert torch.equal(sig_crop[b], expected)
            assert start + num_frames <= max(num_frames, int(torch.ceil(frames * lens[b])))


def test_crop_never_starts_past_the_valid_frames():
    feats = torch.zeros(1, 30, 2)
    sig = torch.zeros(1, 30 * 320)
    starts = set()
    for _ in range(200):
        cropped, _ = random_feature_crop(
            feats + torch.arange(30.0)[None, :, None], sig, torch.tensor([0.8]), 22, 320
        )
        starts.add(int(cropped[0, 0, 0]))
    assert starts == {0, 1, 2}  # ceil(0.8 * 30) = 24 valid frames: starts 0..2, all reachable
    with pytest.raises(ValueError, match="cannot crop"):
        random_feature_crop(torch.zeros(1, 10, 2), torch.zeros(1, 3200), torch.ones(1), 22, 320)


def test_min_crop_samples_matches_the_encoder():
    encoder = WavLM(
        hidden_dims=[8] * 7, num_layers=1, dim=16, ffn_dim=16, num_heads=2, conv_pos=4, conv_pos_groups=2
    )
    samples = min_crop_samples(22, [10, 3, 3, 3, 3, 2, 2], [5, 2, 2, 2, 2, 2, 2])
    assert samples == 7120
    with torch.no_grad():
        assert encoder(torch.zeros(1, samples))[0].shape[1] == 22
        assert encoder(torch.zeros(1, samples - 1))[0].shape[1] == 21


def test_gan_steps_on_a_fixed_batch_reduce_the_mel_loss():
    torch.manual_seed(0)
    hparams = load_hparams("vocos.yaml", {**TINY, "generator_dim": 64, "generator_ffn_dim": 128, "lr": 0.001})
    brain = build_brain(Resynthesis, hparams)
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
    brain = build_brain(Resynthesis, hparams)
    assert brain.training_ctx.context.fast_dtype == torch.bfloat16
    weights = {
        name: next(hparams[name].parameters()).detach().clone() for name in ("generator", "discriminator")
    }
    loss = brain.fit_batch(padded_batch(0.1 * torch.randn(8000), 0.1 * torch.randn(7600)))
    assert torch.isfinite(loss)
    for name, before in weights.items():
        after = next(hparams[name].parameters())
        assert after.dtype == torch.float32 and not torch.equal(before, after), name


@pytest.mark.slow
def test_full_size_default_config_trains_one_step():
    hparams = load_hparams("vocos.yaml", {"encoder_random_init": True})
    brain = build_brain(Resynthesis, hparams)
    generator = hparams["generator"]
    before = generator.backbone.embedding.weight.detach().clone()
    torch.manual_seed(0)
    loss = brain.fit_batch(padded_batch(0.1 * torch.randn(16000), 0.1 * torch.randn(12000)))
    assert torch.isfinite(loss)
    assert not torch.equal(before, generator.backbone.embedding.weight)
    assert sum(p.numel() for p in generator.parameters()) == 16_843_266


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return make_sample_corpus(tmp_path_factory.mktemp("libritts"), splits=SPLITS, engine="synthetic")


@pytest.fixture(scope="module")
def decoder_run(corpus, tmp_path_factory) -> Path:
    """One complete decoder-stage run, shared by the tests that inspect its outputs. The test stage scores
    UTMOS and Sim: offline, their models cannot load, so the fallbacks must step in."""
    out = tmp_path_factory.mktemp("runs") / "vocos"
    metrics = ["--compute_metrics", "True", "--metrics", "[utmos, sim]"]
    run_recipe("train_decoder.py", "vocos.yaml", corpus, out, *ARGS, "--num_epochs", "1", *metrics)
    return out


def checkpoints(output_folder: Path) -> list[Path]:
    return sorted((output_folder / "save").glob("CKPT+*"))


@pytest.mark.slow
def test_end_to_end(decoder_run):
    rows = parse_train_log(decoder_run / "train_log.txt")
    assert rows[0]["epoch"] == 1
    for key in ("train loss", "train D_loss", "train mel_loss", "valid loss", "valid mel_loss", "lr"):
        assert key in rows[0], key
    assert rows[-1]["Epoch loaded"] == 1 and "test loss" in rows[-1]
    # Offline: UTMOS and Sim are unavailable, their fallbacks are reported under their own names
    assert 1 < rows[-1]["test DNSMOS-OVRL"] < 5 and -1 <= rows[-1]["test Sim-Resemblyzer"] <= 1
    assert "test UTMOS" not in rows[-1] and "test Sim" not in rows[-1]
    report = (decoder_run / "metrics.txt").read_text()
    assert "UTMOS: unavailable" in report and "Sim: unavailable" in report
    ckpt = checkpoints(decoder_run)
    assert len(ckpt) == 1
    for name in (
        "generator",
        "discriminator",
        "optimizer_generator",
        "optimizer_discriminator",
        "counter",
        "brain",
    ):
        assert (ckpt[0] / f"{name}.ckpt").is_file(), name
    audios = sorted((decoder_run / "audios" / "epoch0001").glob("*.wav"))
    names = {path.name.rsplit("_", 1)[1] for path in audios}
    assert names == {"hyp.wav", "ref.wav"} and len(audios) == 2 * 2 * 2  # valid + test share the folder
    for path in audios:
        info = sf.info(str(path))
        assert info.samplerate == 16000 and info.frames > 16000


@pytest.mark.slow
def test_tensorboard_and_curves(decoder_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(decoder_run / "tensorboard"), size_guidance={"audio": 0, "images": 0})
    events.Reload()
    tags = events.Tags()
    for scalar in ("train/loss", "train/mel_loss", "train/D_loss", "valid/loss", "lr", "test/DNSMOS-OVRL"):
        assert scalar in tags["scalars"], scalar
    assert any(tag.startswith("valid/") and tag.endswith("/hyp") for tag in tags["audio"])
    assert any(tag.startswith("valid/") and tag.endswith("/ref") for tag in tags["audio"])
    assert any(tag.startswith("valid/") and tag.endswith("/mel") for tag in tags["images"])
    assert (decoder_run / "training_curves.png").stat().st_size > 1000


@pytest.mark.slow
def test_quantizer_reads_the_decoder_checkpoint(corpus, decoder_run, tmp_path):
    out = tmp_path / "bsq"
    splits = ["--train_split", "[train-clean-100]", "--num_epochs", "1", "--train_batch_size", "2"]
    run_recipe(
        "train_quantizer.py", "bsq.yaml", corpus, out, *splits, "--decoder_checkpoint", str(decoder_run)
    )
    written = {path.name.rsplit("_", 1)[1] for path in (out / "audios").rglob("*.wav")}
    assert written == {"hyp.wav", "rec.wav", "ref.wav"}
    # The same checkpoint given as a file works; a mismatching decoder config is an error, not a warning
    generator = next(checkpoints(decoder_run)[0].glob("generator.ckpt"))
    result = run_recipe(
        "train_quantizer.py", "bsq.yaml", corpus, tmp_path / "bad", *splits,
        "--decoder_checkpoint", str(generator), "--decoder_dim", "48", check=False,
    )  # fmt: skip
    assert result.returncode != 0 and "does not fit the decoder_* settings" in result.stdout + result.stderr


@pytest.mark.slow
def test_resume_after_sigkill(corpus, tmp_path):
    out = tmp_path / "vocos"
    args = [*ARGS, "--num_epochs", "2", "--ckpt_interval_steps", "1"]
    process = subprocess.Popen(
        recipe_command("train_decoder.py", "vocos.yaml", corpus, out, *args),
        cwd=ROOT, env=recipe_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.time() + 600
    while time.time() < deadline and process.poll() is None:
        metas = []
        for folder in checkpoints(out):
            try:
                metas.append(yaml.safe_load((folder / "CKPT.yaml").read_text()))
            except FileNotFoundError:
                continue
        ends = [m["unixtime"] for m in metas if m["end-of-epoch"]]
        if ends and any(not m["end-of-epoch"] and m["unixtime"] > max(ends) for m in metas):
            break
        time.sleep(0.05)
    assert process.poll() is None, "the run finished before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()

    run_recipe("train_decoder.py", "vocos.yaml", corpus, out, *args)
    epochs = [row["epoch"] for row in parse_train_log(out / "train_log.txt") if "epoch" in row]
    assert epochs == [1, 2], epochs
    ckpt = checkpoints(out)[-1]
    brain = yaml.safe_load((ckpt / "brain.ckpt").read_text())
    assert brain["optimizer_step"] == 2 * 3  # 6 utterances, batches of 2
    for name in ("optimizer_generator", "optimizer_discriminator"):
        state = torch.load(ckpt / f"{name}.ckpt")
        assert int(state["state"][0]["step"]) == 6, name


@pytest.mark.slow
def test_two_process_ddp_gloo(corpus, tmp_path):
    out = tmp_path / "vocos"
    command = recipe_command("train_decoder.py", "vocos.yaml", corpus, out, *ARGS, "--num_epochs", "1")
    result = run_torchrun(command, port=29534)
    assert result.returncode == 0, result.stderr[-5000:]
    rows = parse_train_log(out / "train_log.txt")
    assert rows[0]["epoch"] == 1 and "test loss" in rows[-1]


@pytest.mark.slow
def test_debug_mode(corpus, tmp_path):
    out = tmp_path / "vocos"
    run_recipe(
        "train_decoder.py",
        "vocos.yaml",
        corpus,
        out,
        *ARGS,
        "--debug",
        "--debug_persistently",
        "--debug_batches",
        "1",
        "--debug_epochs",
        "1",
    )
    assert "test loss" in parse_train_log(out / "train_log.txt")[-1]
    shutil.rmtree(out)
