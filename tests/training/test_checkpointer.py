"""Writing checkpoints (utils/training/checkpointer.py): a checkpoint survives a kill while it is being
written (which one a tool takes: tests/runs/test_checkpoints.py)."""

import signal
import subprocess
import sys

import torch
from helpers.recipe_runner import ROOT
from speechbrain.utils.checkpoints import METAFNAME

from utils.training.checkpointer import AtomicCheckpointer

# Saves checkpoint 1 (weights 1.0), then starts checkpoint 2 (weights 2.0) with a recoverable whose save
# writes half a file and blocks until the process is killed.
SAVE_THEN_BLOCK = """
import sys, time
from pathlib import Path
import torch
from speechbrain.utils.checkpoints import mark_as_loader, mark_as_saver, register_checkpoint_hooks
from utils.training.checkpointer import AtomicCheckpointer

@register_checkpoint_hooks
class Blocker:
    block = False

    @mark_as_saver
    def save(self, path):
        Path(path).write_text("half of a file")
        if self.block:
            print("saving", flush=True)
            time.sleep(600)

    @mark_as_loader
    def load(self, path, end_of_epoch):
        pass

model, blocker = torch.nn.Linear(2, 2), Blocker()
checkpointer = AtomicCheckpointer(sys.argv[1], recoverables={"blocker": blocker, "model": model})
torch.nn.init.constant_(model.weight, 1.0)
checkpointer.save_checkpoint(meta={"step": 1})
torch.nn.init.constant_(model.weight, 2.0)
blocker.block = True
checkpointer.save_checkpoint(meta={"step": 2})
"""


def test_a_kill_inside_save_leaves_the_last_complete_checkpoint(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-c", SAVE_THEN_BLOCK, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout.readline().strip() == "saving"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    folders = sorted(tmp_path.glob("CKPT+*"))
    assert len(folders) == 2
    assert not (folders[1] / "model.ckpt").exists()  # killed before the weights were written

    model = torch.nn.Linear(2, 2)
    checkpointer = AtomicCheckpointer(tmp_path, recoverables={"model": model})
    checkpoint = checkpointer.recover_if_possible()
    assert checkpoint is not None and checkpoint.meta["step"] == 1
    assert torch.equal(model.weight, torch.ones(2, 2))

    checkpointer.save_checkpoint(meta={"step": 3})  # the next save clears the half-written folder first
    assert sorted(checkpoint.meta["step"] for checkpoint in checkpointer.list_checkpoints()) == [1, 3]
    remaining = sorted(tmp_path.glob("CKPT+*"))
    assert len(remaining) == 2 and all((folder / METAFNAME).is_file() for folder in remaining)
    assert all((folder / "model.ckpt").is_file() for folder in remaining)
