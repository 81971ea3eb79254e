"""Verified checkpoints: every file's size and SHA-256 recorded at save and checked before loading; a damaged
or missing file named, the newest intact checkpoint taken instead (one is always kept), a clear stop when
none is intact or when the disk fills up during a save."""

import errno
import logging
import shutil

import pytest
import torch
import yaml
from helpers.recipe_runner import ROOT
from speechbrain.utils.checkpoints import METAFNAME

import evaluate_codec
import export_codec
from utils.runs import DamagedCheckpointError, find_checkpoint, pretrained_codec
from utils.runs.checkpoints import FILES_KEY
from utils.training.checkpointer import AtomicCheckpointer


def saved(
    folder, weights: list[float], keep: int | None = None
) -> tuple[torch.nn.Linear, AtomicCheckpointer]:
    """A checkpointer of a Linear layer that saved a checkpoint per weight (``keep``: save_and_keep_only)."""
    model = torch.nn.Linear(2, 2)
    checkpointer = AtomicCheckpointer(folder, recoverables={"model": model})
    for step, weight in enumerate(weights, 1):
        torch.nn.init.constant_(model.weight, weight)
        meta = {"step": step, "unixtime": float(step)}  # distinct times, whatever the clock says
        if keep is None:
            checkpointer.save_checkpoint(meta=meta)
        else:
            checkpointer.save_and_keep_only(meta=meta, num_to_keep=keep)
    return model, checkpointer


def folders(path) -> list:
    return sorted(
        path.glob("CKPT+*"), key=lambda folder: yaml.safe_load((folder / METAFNAME).read_text())["step"]
    )


def truncate(path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_every_file_is_recorded_at_save(tmp_path):
    saved(tmp_path, [1.0])
    meta = yaml.safe_load((folders(tmp_path)[0] / METAFNAME).read_text())
    record = meta[FILES_KEY]["model.ckpt"]
    assert (
        record["bytes"] == (folders(tmp_path)[0] / "model.ckpt").stat().st_size
        and len(record["sha256"]) == 64
    )


def test_a_truncated_file_is_named_and_the_previous_checkpoint_loaded(tmp_path, caplog):
    _, checkpointer = saved(tmp_path, [1.0, 2.0])
    truncate(folders(tmp_path)[1] / "model.ckpt")
    model = torch.nn.Linear(2, 2)
    checkpointer = AtomicCheckpointer(tmp_path, recoverables={"model": model})
    with caplog.at_level(logging.INFO):
        checkpoint = checkpointer.recover_if_possible()
    assert checkpoint.meta["step"] == 1 and torch.equal(model.weight, torch.ones(2, 2))
    assert "model.ckpt:" in caplog.text and "truncated" in caplog.text and "Falling back to" in caplog.text


def test_bit_rot_a_missing_file_and_an_unreadable_meta_are_named(tmp_path):
    saved(tmp_path, [1.0, 2.0, 3.0])
    first, second, third = folders(tmp_path)
    data = bytearray((third / "model.ckpt").read_bytes())
    data[-10] ^= 0xFF  # same size, one byte flipped
    (third / "model.ckpt").write_bytes(bytes(data))
    (second / "model.ckpt").unlink()
    (first / METAFNAME).write_text("files: [unclosed\n")
    model = torch.nn.Linear(2, 2)
    with pytest.raises(SystemExit) as stop:
        AtomicCheckpointer(tmp_path, recoverables={"model": model}).recover_if_possible()
    message = str(stop.value)
    assert (
        "SHA-256 mismatch" in message
        and "model.ckpt: missing" in message
        and "CKPT.yaml: unreadable" in message
    )
    assert "To start over, move the checkpoints away" in message and "--output_folder" in message


def steps(path) -> list[int]:
    return [yaml.safe_load((folder / METAFNAME).read_text())["step"] for folder in folders(path)]


def test_keep_one_still_keeps_the_last_intact_checkpoint(tmp_path):
    _, checkpointer = saved(tmp_path, [1.0, 2.0, 3.0, 4.0], keep=1)
    assert steps(tmp_path) == [3, 4]  # the newest, and the one before it
    truncate(folders(tmp_path)[1] / "model.ckpt")  # damaged later: the next save keeps the last intact one
    checkpointer.save_and_keep_only(meta={"step": 5, "unixtime": 5.0}, num_to_keep=1)
    assert steps(tmp_path) == [3, 5]


def test_a_full_disk_during_a_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model, checkpointer = saved(tmp_path, [1.0])

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    torch.nn.init.constant_(model.weight, 2.0)
    with pytest.raises(SystemExit) as stop:
        checkpointer.save_checkpoint(meta={"step": 2, "unixtime": 2.0})
    assert "the disk is full" in str(stop.value) and str(folders(tmp_path)[0]) in str(stop.value)
    assert len(list(tmp_path.glob("CKPT+*"))) == 1  # the half-written one removed
    monkeypatch.undo()
    restored = torch.nn.Linear(2, 2)
    assert (
        AtomicCheckpointer(tmp_path, recoverables={"model": restored}).recover_if_possible().meta["step"] == 1
    )
    assert torch.equal(restored.weight, torch.ones(2, 2))


def test_tools_take_the_best_intact_checkpoint(tmp_path, caplog):
    model = torch.nn.Linear(2, 2)
    checkpointer = AtomicCheckpointer(tmp_path / "save", recoverables={"compressor": model})
    for step, loss in enumerate([0.5, 0.2, 0.9], 1):
        checkpointer.save_checkpoint(meta={"loss": loss, "unixtime": float(step)})
    best = find_checkpoint(tmp_path, ["compressor.ckpt"], min_key="loss")
    truncate(best / "compressor.ckpt")
    with caplog.at_level(logging.WARNING):
        taken = find_checkpoint(tmp_path, ["compressor.ckpt"], min_key="loss")
    assert yaml.safe_load((taken / METAFNAME).read_text())["loss"] == 0.5  # the next best
    assert f"{best} is damaged (compressor.ckpt:" in caplog.text and f"Taking {taken} instead" in caplog.text
    with pytest.raises(DamagedCheckpointError, match=r"compressor.ckpt: \d+ bytes, \d+ when saved"):
        find_checkpoint(best, ["compressor.ckpt"])  # named by the user: no other is taken
    for folder in (tmp_path / "save").glob("CKPT+*"):
        (folder / "compressor.ckpt").unlink()
        (folder / "compressor.ckpt").write_bytes(b"")
    with pytest.raises(DamagedCheckpointError, match="No intact checkpoint in"):
        find_checkpoint(tmp_path, ["compressor.ckpt"], min_key="loss")


@pytest.mark.slow
def test_export_evaluation_and_init_from_name_a_damaged_file(quantizer_run, decoder_run, tmp_path, capsys):
    """Copies of the session's two runs (one checkpoint each), the decoder's generator.ckpt truncated: export
    stops naming it (exit 1), evaluation skips the model naming it (no model left: exit 1), and --init_from
    of the damaged run stops naming it."""
    quantizer, decoder = tmp_path / "bsq", tmp_path / "vocos"
    shutil.copytree(quantizer_run, quantizer)
    shutil.copytree(decoder_run, decoder)
    (generator,) = (decoder / "save").glob("CKPT+*/generator.ckpt")
    truncate(generator)
    runs = ["--quantizer", str(quantizer), "--decoder", str(decoder), "--allow_random_encoder"]
    assert export_codec.main([*runs, "--output", str(tmp_path / "codec")]) == 1
    error = capsys.readouterr().err
    assert "No intact checkpoint in" in error and "generator.ckpt: " in error and "when saved" in error
    clip = tmp_path / "speech"
    shutil.copytree(ROOT / "tests" / "data" / "real-speech", clip)
    model = ["--model", f"runs={quantizer}+{decoder}", "--metrics", "", "--allow_random_encoder"]
    assert evaluate_codec.main(["--data", str(clip), "--output", str(tmp_path / "eval"), *model]) == 1
    assert f"model runs ({quantizer}+{decoder}): DamagedCheckpointError" in capsys.readouterr().out
    with pytest.raises(DamagedCheckpointError, match=r"generator\.ckpt: "):
        pretrained_codec(decoder)
