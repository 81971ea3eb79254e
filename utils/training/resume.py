"""Where a run was when it saved a checkpoint, beyond what SpeechBrain keeps (weights, optimizers,
schedulers, the epoch counter, the step and running loss, the position in the training loader, GradScaler):
every random generator of every process (Python, NumPy, torch CPU and each CUDA device), the running means
of the epoch, the non-finite loss count, and the length of the train log. Restored on resume, so that a run
killed at any point (between steps, inside an epoch, during a save) continues exactly as it would have: on
CPU, to the same weights and the same log (docs/training.md, "Resume").

Two subtleties:

* A DataLoader draws a seed from torch's generator whenever its iterator is made. An end-of-epoch
  checkpoint is restored at once: the next epoch's loader draws as it did. An intra-epoch checkpoint is
  restored once the resumed epoch's loader iterator exists (:class:`ResumingLoader`), so that this extra
  draw leaves the generators as they were at the save. The crops drawn inside the loader do not depend on
  its generators at all (:class:`utils.training.data.ItemSeeds`).
* The train log is cut back to its length at the checkpoint: lines written after it come from work the
  resumed run does again (and writes again).
"""

import logging
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from speechbrain.utils.checkpoints import mark_as_loader, mark_as_saver, register_checkpoint_hooks
from speechbrain.utils.distributed import if_main_process

__all__ = ["ResumePoint", "ResumingLoader", "make_deterministic", "random_states", "set_random_states"]

logger = logging.getLogger(__name__)


def random_states() -> dict[str, Any]:
    """The state of every random generator of this process (what ``torch.load(weights_only=True)`` reads)."""
    numpy_state = np.random.get_state(legacy=False)
    return {
        "python": random.getstate(),
        "numpy": {
            **numpy_state,
            "state": {**numpy_state["state"], "key": numpy_state["state"]["key"].tolist()},
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_random_states(states: dict[str, Any]) -> None:
    """Restore :func:`random_states` (the CUDA ones when as many devices are visible)."""
    random.setstate(states["python"])
    numpy_state = states["numpy"]
    key = np.asarray(numpy_state["state"]["key"], dtype=np.uint32)
    np.random.set_state({**numpy_state, "state": {**numpy_state["state"], "key": key}})
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        if len(states["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states["cuda"])
        else:
            logger.warning("Resume: another number of CUDA devices; their random states start afresh")


def make_deterministic() -> None:
    """``--deterministic True``: deterministic algorithms only (an operation without one raises), cuDNN's
    deterministic kernels, no benchmark mode, and the cuBLAS workspace setting they need."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def _rank() -> int:
    return torch.distributed.get_rank() if torch.distributed.is_initialized() else 0


def _gathered(state: dict[str, Any]) -> list[dict[str, Any]]:
    """Every process's ``state``, in rank order (every process calls this at the same point)."""
    if not torch.distributed.is_initialized():
        return [state]
    states: list = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(states, state)
    return states


@register_checkpoint_hooks
class ResumePoint:
    """A checkpoint recoverable (``resume_point.ckpt``) holding where the run was (see the module docstring).

    Arguments
    ---------
    brain : the ``CodecBrain`` (its ``_sums``/``_counts`` running means, ``nonfinite_count`` and the
        ``train_logger``'s file).

    Loading does something only while ``armed`` (the resume at the start of ``fit``): the test stage's
    load of the best checkpoint leaves the generators and the log as they are.
    """

    def __init__(self, brain) -> None:
        self.brain = brain
        self.armed = False
        self.pending: dict[str, Any] | None = None
        self.gathered: list[dict[str, Any]] | None = None

    @property
    def train_log(self) -> Path:
        return Path(self.brain.hparams.train_logger.save_file)

    def before_save(self) -> None:
        """Gather every process's state (called on every process just before a checkpoint is saved, by
        :class:`~utils.training.checkpointer.AtomicCheckpointer`: SpeechBrain calls savers on the main
        process alone)."""
        brain = self.brain
        state = {
            "random": random_states(),
            "sums": dict(getattr(brain, "_sums", {})),
            "counts": dict(getattr(brain, "_counts", {})),
            "nonfinite_count": getattr(brain, "nonfinite_count", 0),
        }
        self.gathered = _gathered(state)

    @mark_as_saver
    def save(self, path: Path) -> None:
        """Write the gathered states and the train log's length (main process)."""
        if self.gathered is None:  # saved by a plain Checkpointer: this process only
            self.before_save()
        log_bytes = self.train_log.stat().st_size if self.train_log.exists() else 0
        torch.save({"processes": self.gathered, "train_log_bytes": log_bytes}, path)
        self.gathered = None

    @mark_as_loader
    def load(self, path: Path, end_of_epoch: bool) -> None:
        if not self.armed:
            return
        saved = torch.load(path, map_location="cpu", weights_only=True)
        processes = saved["processes"]
        if len(processes) != (
            torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
        ):
            logger.warning(
                "Resume: another number of processes than at the save; each takes the first's state"
            )
        state = processes[_rank() if _rank() < len(processes) else 0]
        if if_main_process():
            self.cut_train_log(saved["train_log_bytes"])
        if end_of_epoch:
            set_random_states(state["random"])
        else:
            self.pending = state

    def apply_pending(self) -> None:
        """Restore an intra-epoch checkpoint's state (once the resumed epoch's loader iterator exists)."""
        if self.pending is None:
            return
        state, self.pending = self.pending, None
        set_random_states(state["random"])
        self.brain._sums.update(state["sums"])
        self.brain._counts.update(state["counts"])
        self.brain.nonfinite_count = state["nonfinite_count"]

    def cut_train_log(self, length: int) -> None:
        """Cut the train log back to ``length`` bytes (what it held at the checkpoint being resumed)."""
        size = self.train_log.stat().st_size if self.train_log.exists() else 0
        if size > length:
            with open(self.train_log, "r+b") as stream:
                cut = stream.read()[length:].count(b"\n")
                stream.truncate(length)
            logger.info(f"Resume: {cut} line(s) of {self.train_log} written after the checkpoint removed")
        elif size < length:
            logger.warning(
                f"Resume: {self.train_log} is shorter than at the checkpoint (edited?): kept as is"
            )


class ResumingLoader:
    """The training loader, restoring a pending intra-epoch resume point once its iterator is made (after
    the seed the iterator draws from torch's generator: see the module docstring)."""

    def __init__(self, loader, resume_point: ResumePoint) -> None:
        self.loader = loader
        self.resume_point = resume_point

    def __iter__(self):
        iterator = iter(self.loader)
        self.resume_point.apply_pending()
        return iterator

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name: str):
        """The loader's own attributes (a shard loader's ``set_epoch``, a DataLoader's ``batch_size``...)."""
        if name == "loader":  # not set yet (unpickling)
            raise AttributeError(name)
        return getattr(self.loader, name)
