"""FocalCodec-Stream stage 3 (train_encoder.py): the causal WavLM6 distilled layer by layer, through its real
command line (one and two processes, killed and resumed) and step by step."""

import json

import pytest
import torch
import yaml
from recipe_runner import (
    QUANTIZER_ARGS,
    build_brain,
    kill_mid_epoch,
    load_hparams,
    padded_batch,
    parse_train_log,
    recipe_command,
    recipe_env,
    run_recipe,
    run_torchrun,
    tiny_overrides,
)
from run_helpers import speech

from focalcodec.checkpoint import load_state_dict_file
from train_encoder import EncoderDistillation
from utils.distillation import freeze_positions
from utils.run_folder import RunFolder, RunFolderError
from utils.stream_chain import init_student_encoder

# The placeholder is resolved by main() (init_student_encoder), not at load time
TINY = {
    **yaml.safe_load(tiny_overrides("stream/wavlm.yaml").read_text()),
    "student_encoder_posemb_checkpoint": "unused",
}
FROZEN = ("encoder.positional_embedding.", "encoder.relative_embedding.")


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in module.state_dict().items()}


@pytest.mark.slow
def test_end_to_end(wavlm_run, posemb_run):
    rows = parse_train_log(wavlm_run / "train_log.txt")
    for key in ("train loss", "valid loss", "valid layer1_mse", "valid layer2_mse", "lr"):
        assert key in rows[0], key
    assert rows[-1]["Epoch loaded"] == 1 and "test layer2_mse" in rows[-1]
    run = RunFolder.read(wavlm_run)
    assert run.stage == "encoder" and run.parts["encoder"].recoverable == "student_encoder"
    assert run.parts["encoder"].config["causal"] and not run.teacher.config["causal"]
    student = load_state_dict_file(run.checkpoint() / "student_encoder.ckpt")
    # Frozen through training: the stage-2 positional embedding and the teacher's relative embedding
    posemb = RunFolder.read(posemb_run)
    stage2 = load_state_dict_file(posemb.checkpoint() / "student_posemb.ckpt")
    for key, value in stage2.items():
        assert torch.equal(student[f"encoder.positional_embedding.{key}"], value), key
    teacher = run.encoder_state_dict()
    assert torch.equal(
        student["encoder.relative_embedding.weight"], teacher["encoder.relative_embedding.weight"]
    )
    assert not torch.equal(student["feature_proj.weight"], teacher["feature_proj.weight"])  # trained


def test_every_layer_moves_towards_the_teacher_and_the_frozen_parts_stay(posemb_run):
    torch.manual_seed(0)
    hparams = load_hparams("stream/wavlm.yaml", {**TINY, "lr": 0.001})
    teacher, student = hparams["encoder"].requires_grad_(False).eval(), hparams["student_encoder"]
    init_student_encoder(student, teacher, posemb_run)
    brain = build_brain(EncoderDistillation, hparams)
    teacher_before, student_before = snapshot(teacher), snapshot(student)
    sig = speech()[0]
    batch = padded_batch(sig, sig[:20000])
    layer_mse = []
    for _ in range(10):
        brain.on_stage_start(brain.stage, 1)  # fresh running means: this step's figures
        brain.fit_batch(batch)
        layer_mse.append([brain.tracked_means()[f"layer{i}_mse"] for i in (1, 2)])
    for layer in range(2):
        assert layer_mse[-1][layer] < 0.8 * layer_mse[0][layer], layer_mse
    for key, value in snapshot(teacher).items():
        assert torch.equal(value, teacher_before[key]), key
    for key, value in snapshot(student).items():
        assert torch.equal(value, student_before[key]) == key.startswith(FROZEN), key


def test_a_positional_embedding_from_another_teacher_is_refused(posemb_run, wavlm_run):
    hparams = load_hparams("stream/wavlm.yaml", {**TINY, "seed": 1})  # another random teacher
    with pytest.raises(RunFolderError, match="distilled from another teacher"):
        init_student_encoder(hparams["student_encoder"], hparams["encoder"], posemb_run)
    with pytest.raises(RunFolderError, match="not a posemb-stage run"):
        init_student_encoder(hparams["student_encoder"], hparams["encoder"], wavlm_run)


@pytest.mark.slow
def test_resume_after_sigkill(small_corpus, posemb_run, tmp_path):
    out = tmp_path / "wavlm"
    args = [
        *QUANTIZER_ARGS,
        "--ckpt_interval_steps",
        "1",
        "--student_encoder_posemb_checkpoint",
        str(posemb_run),
    ]
    args[args.index("--num_epochs") + 1] = "2"
    kill_mid_epoch(recipe_command("train_encoder.py", "stream/wavlm.yaml", small_corpus, out, *args), out)
    run_recipe("train_encoder.py", "stream/wavlm.yaml", small_corpus, out, *args)
    epochs = [row["epoch"] for row in parse_train_log(out / "train_log.txt") if "epoch" in row]
    assert epochs == [1, 2], epochs  # each epoch logged once: continued, not restarted
    checkpoint = max((out / "save").glob("CKPT+*"))
    assert yaml.safe_load((checkpoint / "brain.ckpt").read_text())["optimizer_step"] == 2 * 3
    assert int(torch.load(checkpoint / "optimizer.ckpt")["state"][0]["step"]) == 2 * 3


@pytest.mark.slow
def test_two_process_ddp_gloo(small_corpus, posemb_run, tmp_path):
    """Two gloo processes train on different utterances and hold the same student after a step; the teacher
    is unchanged."""
    out = tmp_path / "wavlm"
    args = [*QUANTIZER_ARGS, "--student_encoder_posemb_checkpoint", str(posemb_run)]
    command = recipe_command("tests/ddp_probe.py", "stream/wavlm.yaml", small_corpus, out, *args)
    env = {**recipe_env(), "PROBE_SCRIPT": "train_encoder", "PROBE_BRAIN": "EncoderDistillation"}
    result = run_torchrun(command, port=29561, env=env)
    assert result.returncode == 0, result.stderr[-5000:]
    assert "test loss" in parse_train_log(out / "train_log.txt")[-1]
    probes = [json.loads((out / f"probe-{rank}.json").read_text()) for rank in (0, 1)]
    assert probes[0]["weights_after_step_1"] == probes[1]["weights_after_step_1"]
    assert {probe["encoder_after_step_1"] for probe in probes} == {probes[0]["encoder"]}
    ids = [set(probe["ids"]) for probe in probes]
    assert ids[0] and ids[1] and not ids[0] & ids[1]


@pytest.mark.slow
def test_full_size_default_config_trains_one_step():
    hparams = load_hparams("stream/wavlm.yaml", {"student_encoder_posemb_checkpoint": "unused"})
    teacher, student = hparams["encoder"].requires_grad_(False).eval(), hparams["student_encoder"]
    student.load_state_dict(teacher.state_dict())
    freeze_positions(student)
    brain = build_brain(EncoderDistillation, hparams)
    before = snapshot(student)
    loss = brain.fit_batch(padded_batch(0.1 * torch.randn(16000), 0.1 * torch.randn(12000)))
    assert torch.isfinite(loss)
    for key, value in snapshot(student).items():
        assert torch.equal(value, before[key]) == key.startswith(FROZEN), key
    trainable = sum(p.numel() for p in student.parameters() if p.requires_grad)
    assert (trainable, sum(p.numel() for p in student.parameters())) == (80_313_488, 88_708_240)
