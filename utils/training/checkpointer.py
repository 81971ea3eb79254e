"""Saving checkpoints so that a kill never leaves a broken one, a damaged one is never loaded, and several
processes agree on them (picking one for the tools after training is :mod:`utils.runs.checkpoints`)."""

import errno
import logging
import os
import shutil
from pathlib import Path

import yaml
from speechbrain.utils.checkpoints import METAFNAME, Checkpoint, Checkpointer, ckpt_recency
from speechbrain.utils.distributed import ddp_barrier, if_main_process, main_process_only

from utils.runs.checkpoints import FILES_KEY, checkpoint_problems, file_records

__all__ = ["AtomicCheckpointer"]

logger = logging.getLogger(__name__)

PENDING_METAFNAME = METAFNAME + ".pending"


class AtomicCheckpointer(Checkpointer):
    """SpeechBrain's Checkpointer, with checkpoints that only count once completely written, that are
    verified before they are loaded, and a fallback kept.

    * Atomic: SpeechBrain writes a checkpoint's ``CKPT.yaml`` first and the parameter files after it, so a
      run killed while saving left a folder that looked valid and failed to load on resume. Here the meta
      file is written under another name, completed with the size and SHA-256 of every file
      (``files``, :mod:`utils.runs.checkpoints`) and renamed last; half-written folders are removed at the
      next save. A write error (a full disk) removes the half-written checkpoint and stops the run with a
      message: the previous checkpoint stays intact.
    * Verified: :meth:`recover_if_possible` (resume, and the test stage's best checkpoint) loads the first
      checkpoint whose files all match their record; a damaged one is named and skipped ("falling back
      to ..."). When none is intact the run stops, saying how to start over.
    * Gathered: a recoverable with a ``before_save()`` method has it called on every process before each
      save (SpeechBrain calls the savers on the main process only), e.g. to collect every process's random
      generators (:class:`utils.training.resume.ResumePoint`).
    * A fallback: deleting old checkpoints always keeps the newest intact one before the one just saved,
      whatever ``num_to_keep`` says, so that a checkpoint damaged later has one to fall back to.

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
        """Save every recoverable, record their checksums, then publish the checkpoint (rename its meta)."""
        if if_main_process():
            self._remove_incomplete()
        for recoverable in self.recoverables.values():  # e.g. every process's random generators
            before_save = getattr(recoverable, "before_save", None)
            if before_save is not None:
                before_save()
        try:
            checkpoint = super().save_checkpoint(meta or {}, end_of_epoch, name, verbosity)
            ddp_barrier()  # every process has written its files
            if checkpoint is not None:
                checkpoint = _publish(checkpoint)
        except OSError as error:
            self._stop_after_write_error(error)
        ddp_barrier()  # published before any process goes on (and may list the folder)
        return checkpoint

    def _stop_after_write_error(self, error: OSError) -> None:
        """Remove the half-written checkpoint and stop, naming the intact one a new run resumes from."""
        if if_main_process():
            self._remove_incomplete()
        previous = self.find_checkpoint()
        what = "the disk is full" if error.errno == errno.ENOSPC else "it could not be written"
        kept = f"the previous checkpoint {previous.path} is intact" if previous else "no earlier checkpoint"
        raise SystemExit(
            f"error: cannot save a checkpoint in {self.checkpoints_dir}: {what} ({error}). The half-written "
            f"checkpoint was removed; {kept}. Free some space and run the same command again: it resumes "
            "from there."
        ) from error

    def recover_if_possible(self, importance_key=None, max_key=None, min_key=None, ckpt_predicate=None):
        """Load the first intact checkpoint in SpeechBrain's order (the most recent, or the best by a key);
        a damaged one is named and skipped. ``None`` when there is none yet; stops when none is intact."""
        damaged = [f"{path.name}: {problem}" for path, problem in self._unreadable()]
        for checkpoint in self.find_checkpoints(importance_key, max_key, min_key, ckpt_predicate):
            problems = checkpoint_problems(checkpoint.path, checkpoint.meta)
            if not problems:
                if damaged:
                    logger.warning(f"Falling back to {checkpoint.path}, the newest intact checkpoint")
                self.load_checkpoint(checkpoint)
                return checkpoint
            damaged.append(f"{checkpoint.path.name}: {'; '.join(problems)}")
            logger.error(f"Checkpoint {checkpoint.path} is damaged, not loaded: {'; '.join(problems)}")
        if damaged:
            raise SystemExit(
                f"error: no intact checkpoint in {self.checkpoints_dir} ({' | '.join(damaged)}). To start "
                f"over, move the checkpoints away (mv {self.checkpoints_dir}/CKPT+* <elsewhere>) and run the "
                "same command again: training restarts from epoch 1 (the manifests and the feature cache "
                "are kept); or give a new --output_folder."
            )
        logger.info("Would load a checkpoint here, but none found yet.")
        return None

    def list_checkpoints(self) -> list[Checkpoint]:
        """SpeechBrain's, without the checkpoints whose ``CKPT.yaml`` cannot be read (:meth:`_unreadable`)."""
        unreadable = {path for path, _ in self._unreadable()}
        folders = [path for path in self._list_checkpoint_dirs() if path not in unreadable]
        return self._construct_checkpoint_objects(folders)

    def _unreadable(self) -> list[tuple[Path, str]]:
        """Published checkpoints whose meta cannot be read, with what is wrong."""
        found = []
        for path in self._list_checkpoint_dirs():
            try:
                with open(path / METAFNAME, encoding="utf-8") as stream:
                    if not isinstance(yaml.safe_load(stream), dict):
                        raise ValueError("not a mapping")
            except (OSError, ValueError, yaml.YAMLError) as error:
                found.append((path, f"{METAFNAME}: unreadable ({' '.join(str(error).split())[:200]})"))
        return found

    def delete_checkpoints(self, *, ckpt_predicate=None, **kwargs) -> None:
        """SpeechBrain's ``delete_checkpoints`` (same keywords), decided and done by the main process alone
        on the folder as it sees it; the other processes wait for it (one collective call on each). The
        newest intact checkpoint before the newest one is kept (a fallback)."""
        fallback = self._fallback() if if_main_process() else None

        def deletable(checkpoint: Checkpoint) -> bool:
            return checkpoint.path != fallback and (ckpt_predicate is None or ckpt_predicate(checkpoint))

        main_process_only(super().delete_checkpoints)(ckpt_predicate=deletable, **kwargs)

    def _fallback(self) -> Path | None:
        """The newest intact checkpoint after the most recent one."""
        for checkpoint in sorted(self.list_checkpoints(), key=ckpt_recency, reverse=True)[1:]:
            if not checkpoint_problems(checkpoint.path, checkpoint.meta):
                return checkpoint.path
        return None

    def _remove_incomplete(self) -> None:
        if not self.checkpoints_dir.is_dir():
            return
        for folder in self.checkpoints_dir.glob("CKPT+*"):
            if folder.is_dir() and not (folder / METAFNAME).exists():
                logger.info(f"Removing the incomplete checkpoint {folder}")
                shutil.rmtree(folder, ignore_errors=True)


def _publish(checkpoint: Checkpoint) -> Checkpoint:
    """Record the size and SHA-256 of every file in the pending meta, then rename it ``CKPT.yaml``."""
    pending = checkpoint.path / PENDING_METAFNAME
    meta = {**checkpoint.meta, FILES_KEY: file_records(checkpoint.path, exclude=[PENDING_METAFNAME])}
    with open(pending, "w", encoding="utf-8") as stream:
        stream.write(yaml.dump(meta))
        stream.flush()
        os.fsync(stream.fileno())
    os.replace(pending, checkpoint.path / METAFNAME)
    return checkpoint._replace(meta=meta)
