"""The quantizer stage end to end through its real command line (train_quantizer.py), on generated
LibriTTS-layout corpora (the Brain step by step: tests/training/test_quantizer_stage.py)."""

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import soundfile as sf
import torch
import yaml
from helpers.ddp_probe import digest
from helpers.recipe_runner import (
    DDP_PROBE,
    assert_test_loss_is_batch_mean,
    kill_mid_epoch,
    recipe_command,
    run_recipe,
    run_torchrun,
)
from helpers.reference import TINY_ENCODER

from focalcodec.wavlm import WavLM
from utils.corpus.samples import make_bad_files, make_sample_corpus
from utils.runs import read_run
from utils.training.train_logger import parse_train_log

SPLITS = [
    "--train_split",
    "[train-clean-100]",
    "--valid_split",
    "[dev-clean]",
    "--test_split",
    "[test-clean]",
]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """A small synthetic LibriTTS-layout corpus (24 kHz, like LibriTTS)."""
    return make_sample_corpus(tmp_path_factory.mktemp("libritts"), engine="synthetic")


def checkpoints(output_folder: Path) -> list[Path]:
    return sorted((output_folder / "save").glob("CKPT+*"))


def test_end_to_end(corpus, tmp_path):
    out = tmp_path / "bsq"
    run_recipe("train_quantizer.py", "bsq.yaml", corpus, out, *SPLITS)

    rows = parse_train_log(out / "train_log.txt")
    assert [row["epoch"] for row in rows[:-1]] == [1, 2]
    for row in rows[:-1]:
        for key in (
            "train loss",
            "valid loss",
            "valid rec_loss",
            "valid code_usage",
            "valid code_entropy",
            "lr",
        ):
            assert key in row, (key, row)
        assert 0 < row["valid code_usage"] <= 100 and 0 <= row["valid code_entropy"] <= 100
    assert "test loss" in rows[-1] and rows[-1]["Epoch loaded"] == 2

    for name in ("train.json", "valid.json", "test.json"):
        assert (out / "save" / name).is_file()
    ckpt = checkpoints(out)
    assert ckpt, "no checkpoint saved"
    for name in ("compressor", "quantizer", "decompressor", "scheduler", "counter", "optimizer", "brain"):
        assert (ckpt[-1] / f"{name}.ckpt").is_file(), name

    # Without a trained decoder only the reference audio is written (2 per stage, tiny YAML)
    audios = sorted((out / "audios").rglob("*.wav"))
    assert audios and all(path.name.endswith("_ref.wav") for path in audios)
    assert len(list((out / "audios" / "epoch0001").glob("*.wav"))) == 2
    info = sf.info(str(audios[0]))
    assert info.samplerate == 16000 and info.channels == 1


def test_training_loss_goes_down(corpus, tmp_path):
    out = tmp_path / "bsq"
    run_recipe("train_quantizer.py", "bsq.yaml", corpus, out, *SPLITS, "--num_epochs", "5", "--lr", "0.002")
    rows = [row for row in parse_train_log(out / "train_log.txt") if "train rec_loss" in row]
    losses = [row["train rec_loss"] for row in rows]
    assert len(losses) == 5
    assert losses[-1] < 0.7 * losses[0], losses


def _hash_tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file()
    }


def test_bad_corpus_prepares_trains_and_stays_untouched(tmp_path):
    corpus = make_sample_corpus(tmp_path / "libritts", engine="synthetic")
    make_bad_files(corpus / "train-clean-100")
    make_bad_files(corpus / "dev-clean")
    before = _hash_tree(corpus)
    out = tmp_path / "bsq"
    result = run_recipe("train_quantizer.py", "bsq.yaml", corpus, out, *SPLITS, "--num_epochs", "1")
    assert _hash_tree(corpus) == before
    report = (out / "save" / "prepare_report.json").read_text()
    for kind in ("empty_file", "truncated", "not_audio"):
        assert kind in report, kind
    assert "skipped" in (result.stdout + result.stderr)


def test_resume_after_sigkill(corpus, tmp_path):
    out = tmp_path / "bsq"
    args = [*SPLITS, "--num_epochs", "3", "--ckpt_interval_steps", "2"]
    # Killed as soon as the first intra-epoch checkpoint of epoch 2 exists (epoch 1 is done then)
    kill_mid_epoch(recipe_command("train_quantizer.py", "bsq.yaml", corpus, out, *args), out)
    killed_log = (out / "train_log.txt").read_text()
    assert "epoch: 3" not in killed_log

    run_recipe("train_quantizer.py", "bsq.yaml", corpus, out, *args)
    epochs = [row["epoch"] for row in parse_train_log(out / "train_log.txt") if "epoch" in row]
    assert epochs == [1, 2, 3], epochs  # each epoch logged once: continued, not restarted
    brain = yaml.safe_load((checkpoints(out)[-1] / "brain.ckpt").read_text())
    batches_per_epoch = -(-len(list((corpus / "train-clean-100").rglob("*.wav"))) // 4)
    assert brain["optimizer_step"] == 3 * batches_per_epoch
    # AdamW's own step count too: its moments were restored, not restarted
    optimizer = torch.load(checkpoints(out)[-1] / "optimizer.ckpt")
    assert int(optimizer["state"][0]["step"]) == 3 * batches_per_epoch


def test_two_process_ddp_gloo_with_an_encoder_file(corpus, tmp_path):
    """Two gloo processes, the encoder weights from a file (not the random init): both processes load them,
    train on different utterances and hold the same weights after a step."""
    torch.manual_seed(1234)
    encoder_state = WavLM(**TINY_ENCODER).state_dict()
    torch.save(encoder_state, tmp_path / "wavlm6.pt")
    out = tmp_path / "bsq"
    extra = [
        "--num_epochs",
        "1",
        "--encoder_random_init",
        "False",
        "--encoder_checkpoint",
        tmp_path / "wavlm6.pt",
    ]
    command = recipe_command(str(DDP_PROBE), "bsq.yaml", corpus, out, *SPLITS, *map(str, extra))
    result = run_torchrun(command, port=29533)
    assert result.returncode == 0, result.stderr[-5000:]
    rows = parse_train_log(out / "train_log.txt")
    assert rows[0]["epoch"] == 1 and "test loss" in rows[-1]

    probes = [json.loads((out / f"probe-{rank}.json").read_text()) for rank in (0, 1)]
    assert probes[0]["encoder"] == probes[1]["encoder"] == digest(encoder_state)
    ids = [set(probe["ids"]) for probe in probes]
    assert ids[0] and ids[1] and not ids[0] & ids[1]
    assert len(ids[0] | ids[1]) == len(list((corpus / "train-clean-100").rglob("*.wav")))
    assert probes[0]["weights_after_step_1"] == probes[1]["weights_after_step_1"]


def test_bf16_on_cpu(corpus, tmp_path):
    out = tmp_path / "bsq"
    run_recipe(
        "train_quantizer.py", "bsq.yaml", corpus, out, *SPLITS, "--num_epochs", "1", "--precision", "bf16"
    )
    assert "test loss" in parse_train_log(out / "train_log.txt")[-1]


def test_missing_data_folder_is_a_clear_error(tmp_path):
    result = run_recipe("train_quantizer.py", "bsq.yaml", tmp_path / "nowhere", tmp_path / "out", check=False)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert str(tmp_path / "nowhere") in output and "train-clean-100" in output


def test_missing_split_is_a_clear_error(corpus, tmp_path):
    data = tmp_path / "libritts"
    shutil.copytree(corpus, data)
    shutil.rmtree(data / "test-clean")
    result = run_recipe("train_quantizer.py", "bsq.yaml", data, tmp_path / "out", *SPLITS, check=False)
    assert result.returncode != 0
    assert f"--test_split [test-clean]: no folder test-clean in {data}" in result.stderr  # before any work


@pytest.mark.slow
def test_stream_stage_end_to_end(stream_bsq_run, wavlm_run):
    rows = parse_train_log(stream_bsq_run / "train_log.txt")
    assert {"train rec_loss", "valid loss", "valid code_usage", "lr"} <= rows[0].keys()
    assert "test loss" in rows[-1]
    run = read_run(stream_bsq_run)
    assert run.stage == "quantizer" and run.parts["encoder"].config["causal"] and run.teacher is None
    # The frozen encoder is the best student of the stage-3 run it was given
    assert run.encoder_weights == {
        "checkpoint": str(read_run(wavlm_run).checkpoint() / "student_encoder.ckpt")
    }
    assert run.parts["quantizer"].config == {"codebook_size": 4096}
    checkpoint = run.checkpoint()
    assert not any(key.startswith("refiner.") for key in torch.load(checkpoint / "decompressor.ckpt"))
    for kind in ("hyp", "rec", "ref"):
        files = sorted((stream_bsq_run / "audios" / "epoch0001").glob(f"*_{kind}.wav"))
        assert len(files) == 2 * 2 and all(sf.info(str(path)).samplerate == 16000 for path in files), kind


@pytest.mark.slow
@pytest.mark.parametrize("run", ["quantizer_run", "stream_bsq_run"])
def test_logged_test_loss_is_the_batch_mean(run, request):
    assert_test_loss_is_batch_mean(request.getfixturevalue(run))
