"""Checkpoints: saving them so that a kill never leaves a broken one, and finding the one to use."""

import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from ruamel.yaml import YAML
from speechbrain.utils.checkpoints import METAFNAME, Checkpointer
from speechbrain.utils.distributed import ddp_barrier, if_main_process, main_process_only

__all__ = ["AtomicCheckpointer", "checkpoint_meta", "find_checkpoint"]

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


def checkpoint_meta(folder: Path) -> dict:
    """The meta (``CKPT.yaml``) of a checkpoint folder."""
    meta = YAML(typ="safe", pure=True).load((folder / METAFNAME).read_text())
    return meta if isinstance(meta, dict) else {}


def _complete(folder: Path, files: Sequence[str]) -> bool:
    return (folder / METAFNAME).is_file() and all((folder / name).is_file() for name in files)


def find_checkpoint(
    path: str | os.PathLike,
    files: Sequence[str],
    which: str = "best",
    min_key: str | None = None,
    max_key: str | None = None,
) -> Path:
    """The ``CKPT+*`` folder to use.

    Arguments
    ---------
    path : a checkpoint folder (or a file in one: then that folder is used), or a run's output or save
        folder (then a complete checkpoint holding all ``files`` is chosen).
    files : the files a checkpoint must hold (e.g. ``["generator.ckpt"]``).
    which : ``"best"`` (lowest ``min_key`` / highest ``max_key`` of the meta, as the stage's own test
        chooses; the most recent when neither is given) or ``"latest"``.
    """
    if which not in ("best", "latest"):
        raise ValueError(f"which must be 'best' or 'latest', got {which!r}")
    path = Path(path)
    for folder in (path, path.parent):
        if _complete(folder, files):
            return folder
    save_folder = path / "save" if (path / "save").is_dir() else path
    complete = [folder for folder in sorted(save_folder.glob("CKPT+*")) if _complete(folder, files)]
    if not complete:
        raise FileNotFoundError(
            f"No complete checkpoint in {save_folder} holding {', '.join(files)} (has the stage finished an "
            "epoch there? give its output folder, e.g. results/bsq/0, or one of its CKPT+ folders)"
        )
    metas = {folder: checkpoint_meta(folder) for folder in complete}
    key = min_key or max_key
    if which == "latest" or key is None:
        return max(complete, key=lambda folder: metas[folder].get("unixtime", 0.0))
    scored = [folder for folder in complete if key in metas[folder]]
    if not scored:
        raise FileNotFoundError(
            f"No checkpoint of {save_folder} has a '{key}' (only intra-epoch ones); use which='latest'"
        )
    choose = min if min_key else max
    return choose(scored, key=lambda folder: metas[folder][key])
