"""A training script that kills itself (SIGKILL) at a chosen point, for the chaos tests
(tests/scripts/test_chaos.py).

Run it like the script, naming the script in ``$PROBE_SCRIPT`` and the point in ``$CHAOS_KILL``:

* ``step:N``: right after optimizer step N (counted over the whole run: a resumed run goes on counting);
* ``save:N:K``: inside the first checkpoint save at or after optimizer step N, once K of its files are
  written (before it is published);
* ``valid:E``: inside the validation of epoch E, after its first batch.

Without ``$CHAOS_KILL`` the script runs as it is. Either way every checkpoint holds an empty ``chaos.ckpt``
(the file the probe writes while saving), so that checkpoints of killed and uninterrupted runs compare.
"""

import importlib
import os
import signal
import sys
from pathlib import Path

import speechbrain as sb
from speechbrain.utils.checkpoints import mark_as_loader, mark_as_saver, register_checkpoint_hooks

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


@register_checkpoint_hooks
class SaveKiller:
    """A recoverable saved among the others: kills the process in the save chosen by ``save:N:K``."""

    def __init__(self, brain, step: int | None) -> None:
        self.brain, self.step = brain, step

    @mark_as_saver
    def save(self, path: Path) -> None:
        Path(path).write_bytes(b"")
        if self.step is not None and self.brain.optimizer_step >= self.step:
            kill()

    @mark_as_loader
    def load(self, path: Path, end_of_epoch: bool) -> None:
        pass


def chaotic(brain_class: type, point: list[str]) -> type:
    """``brain_class`` killing its process at ``point`` (``$CHAOS_KILL`` split at ``:``)."""

    class Chaotic(brain_class):
        def on_fit_start(self) -> None:
            super().on_fit_start()
            step, files = (int(point[1]), int(point[2])) if point[0] == "save" else (None, 0)
            killer = SaveKiller(self, step)
            recoverables = self.checkpointer.recoverables
            names = list(recoverables)
            self.checkpointer.add_recoverable("chaos", killer)
            order = [*names[:files], "chaos", *names[files:]]  # saved after the first ``files`` ones
            reordered = {name: recoverables[name] for name in order}
            recoverables.clear()
            recoverables.update(reordered)

        def fit_batch(self, batch):
            loss = super().fit_batch(batch)
            if point[0] == "step" and self.optimizer_step == int(point[1]):
                kill()
            return loss

        def evaluate_batch(self, batch, stage):
            loss = super().evaluate_batch(batch, stage)
            if (
                point[0] == "valid"
                and stage == sb.Stage.VALID
                and self.hparams.epoch_counter.current == int(point[1])
            ):
                kill()
            return loss

    return Chaotic


if __name__ == "__main__":
    script = importlib.import_module(os.environ["PROBE_SCRIPT"])
    kill_point = os.environ.get("CHAOS_KILL", "none").split(":")
    train_and_test = script.train_and_test
    script.train_and_test = lambda brain_class, *args, **kwargs: train_and_test(
        chaotic(brain_class, kill_point), *args, **kwargs
    )
    script.main(sys.argv[1:])
