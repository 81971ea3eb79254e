"""FocalCodec-Stream stage 5 (train_joint.py) through its real command line: one and two processes, killed and
resumed, initialised from a causal codec (the Brain step by step: tests/training/test_joint_stage.py)."""

import json

import pytest
import soundfile as sf
import torch
import yaml
from helpers.ddp_probe import digest
from helpers.recipe_runner import (
    QUANTIZER_ARGS,
    assert_test_loss_is_batch_mean,
    load_hparams,
    parse_train_log,
    resume_after_kill,
    run_ddp_probe,
    run_recipe,
    tiny_overrides,
)
from helpers.run_helpers import official_codec

from focalcodec.checkpoint import load_state_dict_file
from utils.runs import read_run

FROZEN = ("encoder.positional_embedding.", "encoder.relative_embedding.")


def stage_args(stream_bsq_run, *extra: str) -> list[str]:
    return [*QUANTIZER_ARGS, "--quantizer_checkpoint", str(stream_bsq_run), *extra]


@pytest.mark.slow
def test_end_to_end(joint_run, wavlm_run):
    rows = parse_train_log(joint_run / "train_log.txt")
    for key in ("train loss", "train rec_loss", "train aux_loss", "valid loss", "valid code_usage", "lr"):
        assert key in rows[0], key
    assert rows[-1]["Epoch loaded"] == 1 and "test code_entropy" in rows[-1]
    run = read_run(joint_run)
    assert run.stage == "joint" and not run.teacher.config["causal"]
    assert {name: part.recoverable for name, part in run.parts.items()} == {
        "encoder": "student_encoder",
        "compressor": "compressor",
        "quantizer": "quantizer",
        "decompressor": "decompressor",
    }
    assert run.parts["decompressor"].config["lookahead_size"] == 3
    checkpoint = run.checkpoint()
    assert any(key.startswith("refiner.") for key in load_state_dict_file(checkpoint / "decompressor.ckpt"))
    # The frozen embeddings are still stage 3's; the rest of the encoder was trained
    student = load_state_dict_file(checkpoint / "student_encoder.ckpt")
    stage3 = load_state_dict_file(read_run(wavlm_run).checkpoint() / "student_encoder.ckpt")
    for key, value in stage3.items():
        assert torch.equal(student[key], value) == key.startswith(FROZEN), key
    # Listening through the stage-1 decoder: its 24 kHz output is written at 16 kHz, as the input
    for kind in ("hyp", "rec", "ref"):
        files = list((joint_run / "audios" / "epoch0001").glob(f"*_{kind}.wav"))
        assert len(files) == 2 * 2 and all(sf.info(str(path)).samplerate == 16000 for path in files), kind
    hyp, ref = sorted((joint_run / "audios" / "epoch0001").glob("*_hyp.wav"))[0], None
    ref = hyp.with_name(hyp.name.replace("_hyp", "_ref"))
    assert sf.info(str(hyp)).frames == sf.info(str(ref)).frames


@pytest.mark.slow
def test_two_process_ddp_gloo(small_corpus, stream_bsq_run, tmp_path):
    """Two gloo processes train on different utterances and hold the same weights after a step: the encoder
    too (the original called it outside its DDP wrapper, so its gradients were not averaged)."""
    run_ddp_probe("train_joint.py", "stream/joint.yaml", small_corpus, tmp_path / "joint",
                  *stage_args(stream_bsq_run), port=29562)  # fmt: skip


@pytest.mark.slow
def test_resume_after_sigkill(small_corpus, stream_bsq_run, tmp_path):
    args = stage_args(stream_bsq_run, "--ckpt_interval_steps", "1")
    args[args.index("--num_epochs") + 1] = "2"
    resume_after_kill(
        "train_joint.py", "stream/joint.yaml", small_corpus, tmp_path / "joint", *args, steps=2 * 3
    )  # 6 utterances in batches of 2


@pytest.mark.slow
def test_logged_test_loss_is_the_batch_mean(joint_run):
    assert_test_loss_is_batch_mean(joint_run)


TINY = {**yaml.safe_load(tiny_overrides("stream/joint.yaml").read_text()), "quantizer_checkpoint": "unused"}


def causal_codec(tmp_path):
    """A released-format causal codec with the tiny stage-5 settings (a small stand-in for
    lucadellalib/focalcodec_50hz_4k_causal): its encoder has the student's settings."""
    return official_codec(tmp_path / "causal", "stream/joint.yaml", TINY, encoder="student_encoder")


@pytest.mark.slow
def test_init_from_a_causal_codec_loads_each_part_where_it_belongs(small_corpus, tmp_path):
    codec, folder = causal_codec(tmp_path)
    torch.manual_seed(7)
    teacher = load_hparams("stream/joint.yaml", TINY)["encoder"].state_dict()  # non-causal, other weights
    torch.save(teacher, tmp_path / "teacher.pt")
    out = tmp_path / "joint"
    extra = ["--init_from", str(folder), "--encoder_random_init", "False"]
    extra += ["--encoder_checkpoint", str(tmp_path / "teacher.pt")]
    run_recipe("train_joint.py", "stream/joint.yaml", small_corpus, out, *QUANTIZER_ARGS, *extra, probe=True)
    start = json.loads((out / "probe-0.json").read_text())["modules_at_start"]
    assert start["encoder"] == digest(teacher)  # the teacher is the one given, not the codec's encoder
    parts = {"student_encoder": "encoder", "compressor": "compressor", "decompressor": "decompressor"}
    for module, part in {**parts, "decoder": "decoder"}.items():
        assert start[module] == digest(getattr(codec, part).state_dict()), module


@pytest.mark.slow
def test_a_causal_encoder_is_refused_as_the_teacher(small_corpus, tmp_path):
    _, folder = causal_codec(tmp_path)
    extra = [
        "--init_from",
        str(folder),
        "--encoder_random_init",
        "False",
        "--encoder_checkpoint",
        str(folder),
    ]
    result = run_recipe(
        "train_joint.py", "stream/joint.yaml", small_corpus, tmp_path / "joint", *QUANTIZER_ARGS, *extra,
        check=False,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "holds a causal WavLM encoder, but this stage's frozen teacher" in output
    assert "is non-causal" in output and "lucadellalib/focalcodec_50hz" in output
