"""Saving checkpoints so that a kill never leaves a broken one, and so that several processes agree on them
(picking one to load is :mod:`utils.runs.checkpoints`)."""

import logging
import os
import shutil
from pathlib import Path

from speechbrain.utils.checkpoints import METAFNAME, Checkpointer
from speechbrain.utils.distributed import ddp_barrier, if_main_process, main_process_only

__all__ = ["AtomicCheckpointer"]

logger = logging.getLogger(__name__)

PENDING_METAFNAME = METAFNAME + ".pending"


class AtomicCheckpointer(Checkpointer):
    """SpeechBrain's Checkpointer, with checkpoints that only count once completely written.

    SpeechBrain writes a checkpoint's ``CKPT.yaml`` first and the parameter files after it, so a run
    killed while saving left a folder that looked valid and failed to load on resume. Here the meta
    file is written under another name and renamed last; half-written folders are removed at the
    next save.

    With several processes, the main process alone publishes, lists and deletes checkpoints, and every
    process waits until it has: SpeechBrain's ``delete_checkpoints`` lists the folder on every process and
    then makes one collective call per checkpoint it deletes, so two processes that listed the folder at
    different moments (one before the rename above, one after) made different numbers of collective calls
    and the run hung at the next checkpoint.
    """

    def _save_checkpoint_metafile(self, fpath, meta_to_include=None, end_of_epoch=True):
        return super()._save_checkpoint_metafile(
            Path(fpath).with_name(PENDING_METAFNAME), meta_to_include or {}, end_of_epoch
        )

    def save_checkpoint(self, meta=None, end_of_epoch=True, name=None, verbosity=logging.INFO):
        """Save every recoverable, then publish the checkpoint by renaming its meta file."""
        if if_main_process():
            self._remove_incomplete()
        checkpoint = super().save_checkpoint(meta or {}, end_of_epoch, name, verbosity)
        if checkpoint is not None:
            os.replace(checkpoint.path / PENDING_METAFNAME, checkpoint.path / METAFNAME)
        ddp_barrier()  # published before any process goes on (and may list the folder)
        return checkpoint

    def delete_checkpoints(self, **kwargs) -> None:
        """SpeechBrain's ``delete_checkpoints`` (same keywords), decided and done by the main process alone
        on the folder as it sees it; the other processes wait for it (one collective call on each)."""
        main_process_only(super().delete_checkpoints)(**kwargs)

    def _remove_incomplete(self) -> None:
        if not self.checkpoints_dir.is_dir():
            return
        for folder in self.checkpoints_dir.glob("CKPT+*"):
            if folder.is_dir() and not (folder / METAFNAME).exists():
                logger.info(f"Removing the incomplete checkpoint {folder}")
                shutil.rmtree(folder, ignore_errors=True)
