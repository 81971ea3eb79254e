"""Chaos tests: a run killed with SIGKILL at seeded random points (inside an epoch, inside a checkpoint save,
during validation) and resumed each time ends exactly as the same run uninterrupted: every checkpoint file
of the last epoch equal tensor by tensor (weights, optimizers, random states, counters) and the train logs
equal line by line (utils/training/resume.py, docs/training.md "Resume").

Three stages with small models (2 epochs of 3 steps, an intra-epoch checkpoint every 2 steps) through the
real command line and tests/helpers/chaos_probe.py: the decoder stage (random crops drawn in the training
step), the quantizer stage with waveform augmentation (torch and Python generators), and FocalCodec-Stream
stage 1 with the feature cache and two loader processes (crops drawn in the loader, utils/training/data.py
ItemSeeds). The quantizer run also has its newest checkpoint truncated before its last resume: the run
names the file, falls back to the previous intact checkpoint, and still ends as the run never damaged.
"""

import random
import subprocess
from pathlib import Path
from typing import NamedTuple

import pytest
import torch
import yaml
from helpers.recipe_runner import ROOT, recipe_command, recipe_env

ARGS = ["--train_split", "[train-clean-100]", "--train_batch_size", "2", "--valid_size", "2"]
ARGS += ["--num_epochs", "2", "--ckpt_interval_steps", "2", "--use_tensorboard", "False"]
ARGS += ["--save_audios", "False"]  # no test report to draw: ~8 s less per finished run


def kill_points(seed: int, validation: bool) -> list[str]:
    """Seeded random kill points, in run order (6 utterances in batches of 2: steps 1-3 are epoch 1, 4-6
    epoch 2): right after a step inside an epoch (not its last), inside the first save from step 4 or 5 on
    (two checkpoints are published by then) once 1 to 4 of its files are written, and optionally during
    the last validation."""
    rng = random.Random(seed)
    step = rng.choice([1, 2, 4])
    points = [f"step:{step}", f"save:{rng.randint(max(step + 1, 4), 5)}:{rng.randint(1, 4)}"]
    return points + (["valid:2"] if validation else [])


class Started(NamedTuple):
    """A run started by :func:`start`."""

    process: subprocess.Popen
    kill: str | None
    log: Path


def start(script: str, hparams: str, corpus: Path, output: Path, *extra: str, kill: str | None = None):
    """The stage through tests/helpers/chaos_probe.py, to be killed at ``kill`` or to run to the end; its
    console output goes to ``<output>.log`` (a file: a run beside the others never waits for a reader)."""
    env = {**recipe_env(), "PROBE_SCRIPT": Path(script).stem, **({"CHAOS_KILL": kill} if kill else {})}
    command = recipe_command("tests/helpers/chaos_probe.py", hparams, corpus, output, *ARGS, *extra)
    log = output.with_suffix(".log")
    with open(log, "w") as stream:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=stream, stderr=subprocess.STDOUT)
    return Started(process, kill, log)


def finish(run: Started) -> str:
    """Wait for a :func:`start`ed run: it must die of its kill (SIGKILL) or end well; its output."""
    run.process.wait(timeout=600)
    output = run.log.read_text()
    expected = -9 if run.kill else 0
    assert run.process.returncode == expected, f"{run.kill}: {run.process.returncode}\n{output[-4000:]}"
    return output


def metas(output: Path) -> dict[Path, dict]:
    return {
        meta.parent: yaml.safe_load(meta.read_text()) for meta in (output / "save").glob("CKPT+*/CKPT.yaml")
    }


def newest(output: Path, end_of_epoch: bool = False) -> Path:
    """The most recent checkpoint (of an epoch's end)."""
    found = {
        folder: meta for folder, meta in metas(output).items() if meta["end-of-epoch"] or not end_of_epoch
    }
    return max(found, key=lambda folder: found[folder]["unixtime"])


def assert_equal(a, b, where: str) -> None:
    """Nested checkpoint contents equal: tensors by dtype, shape and value, everything else by ``==``."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            assert_equal(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, list | tuple):
        assert type(a) is type(b) and len(a) == len(b), where
        for index, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_equal(x, y, f"{where}[{index}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def read(path: Path):
    """A checkpoint file: a torch file, else its text (SpeechBrain's counters and positions)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception:  # not a torch file
        return path.read_text()


def assert_same_run(reference: Path, resumed: Path) -> None:
    ours, theirs = newest(resumed, end_of_epoch=True), newest(reference, end_of_epoch=True)
    files = sorted(path.name for path in theirs.iterdir() if path.name != "CKPT.yaml")
    assert files == sorted(path.name for path in ours.iterdir() if path.name != "CKPT.yaml")
    assert "resume_point.ckpt" in files and ("generator.ckpt" in files or "compressor.ckpt" in files)
    for name in files:
        assert_equal(read(theirs / name), read(ours / name), name)
    log, reference_log = (resumed / "train_log.txt").read_text(), (reference / "train_log.txt").read_text()
    assert log.splitlines() == reference_log.splitlines()
    assert "Epoch loaded: 2 - test loss" in log


def chaos(script, hparams, corpus, tmp_path, *extra, seed, validation=False, damage=False) -> None:
    """The run uninterrupted (beside the others: it shares nothing with them) and the same run killed at
    each point and resumed; with ``damage``, its newest checkpoint truncated before the last resume."""
    reference, resumed = tmp_path / "uninterrupted", tmp_path / "killed"
    uninterrupted = start(script, hparams, corpus, reference, *extra)
    for point in kill_points(seed, validation):
        finish(start(script, hparams, corpus, resumed, *extra, kill=point))
    if damage:
        damaged = newest(resumed)
        biggest = max(damaged.glob("*.ckpt"), key=lambda path: path.stat().st_size)
        biggest.write_bytes(biggest.read_bytes()[:100])  # a truncated copy
    output = finish(start(script, hparams, corpus, resumed, *extra))
    if damage:
        assert f"Checkpoint {damaged} is damaged, not loaded: {biggest.name}: 100 bytes" in output
        assert "Falling back to" in output
    finish(uninterrupted)
    assert_same_run(reference, resumed)


@pytest.mark.slow
def test_decoder_stage_killed_three_times_ends_as_uninterrupted(small_corpus, tmp_path):
    chaos(
        "train_decoder.py",
        "vocos.yaml",
        small_corpus,
        tmp_path,
        "--progress_metrics",
        "[mel_distance]",
        seed=23,
        validation=True,
    )


@pytest.mark.slow
def test_quantizer_stage_killed_and_damaged_ends_as_uninterrupted(small_corpus, tmp_path):
    chaos("train_quantizer.py", "bsq.yaml", small_corpus, tmp_path, "--augment", "True", seed=5, damage=True)


@pytest.mark.slow
def test_stream_decoder_with_cached_crops_in_two_workers_ends_as_uninterrupted(small_corpus, tmp_path):
    extra = ["--feature_cache", "True", "--dataloader_workers", "2", "--progress_metrics", "[mel_distance]"]
    chaos("train_decoder.py", "stream/wavenext.yaml", small_corpus, tmp_path, *extra, seed=1)
