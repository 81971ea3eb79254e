"""Checkpoints: saving them so that a kill never leaves a broken one, and finding and loading trained
weights across the two stages (the decoder stage's generator)."""

import logging
import os
import shutil
from pathlib import Path

import torch
from speechbrain.utils.checkpoints import METAFNAME, Checkpointer
from speechbrain.utils.distributed import if_main_process

from focalcodec.checkpoint import load_state_dict_file

__all__ = ["AtomicCheckpointer", "find_generator_checkpoint", "load_decoder"]

logger = logging.getLogger(__name__)

GENERATOR_FILE = "generator.ckpt"
PENDING_METAFNAME = METAFNAME + ".pending"


class AtomicCheckpointer(Checkpointer):
    """SpeechBrain's Checkpointer, with checkpoints that only count once completely written.

    SpeechBrain writes a checkpoint's ``CKPT.yaml`` first and the parameter files after it, so a run
    killed while saving left a folder that looked valid and failed to load on resume. Here the meta
    file is written under another name and renamed last; half-written folders are removed at the
    next save.
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
        return checkpoint

    def _remove_incomplete(self) -> None:
        if not self.checkpoints_dir.is_dir():
            return
        for folder in self.checkpoints_dir.glob("CKPT+*"):
            if folder.is_dir() and not (folder / METAFNAME).exists():
                logger.info(f"Removing the incomplete checkpoint {folder}")
                shutil.rmtree(folder, ignore_errors=True)


def find_generator_checkpoint(path: str | os.PathLike) -> Path:
    """Locate the decoder stage's trained Vocos weights.

    Arguments
    ---------
    path : a weight file (e.g. ``.../CKPT+.../generator.ckpt``), one ``CKPT+...`` folder, or the
        decoder stage's save folder or output folder (the checkpoint with the highest epoch is taken,
        as the decoder stage's own test does; the most recent one if none has an epoch).
    """
    path = Path(path)
    if path.is_file():
        return path
    if (path / GENERATOR_FILE).is_file():
        return path / GENERATOR_FILE
    save_folder = path / "save" if (path / "save").is_dir() else path
    if save_folder.is_dir():
        checkpointer = Checkpointer(save_folder)
        checkpoint = checkpointer.find_checkpoint(max_key="epoch") or checkpointer.find_checkpoint()
        if checkpoint is not None and (checkpoint.path / GENERATOR_FILE).is_file():
            return checkpoint.path / GENERATOR_FILE
    raise FileNotFoundError(
        f"No trained decoder found at {path}: expected a {GENERATOR_FILE} file, a CKPT+ folder holding "
        f"one, or the decoder stage's output/save folder (e.g. results/vocos/0)"
    )


def load_decoder(decoder: torch.nn.Module, path: str | os.PathLike) -> torch.nn.Module:
    """Load the decoder stage's generator into ``decoder`` (strictly: a wrong file is an error, not
    a warning as in the original) and freeze it."""
    file = find_generator_checkpoint(path)
    try:
        decoder.load_state_dict(load_state_dict_file(file), strict=True)
    except RuntimeError as error:
        raise RuntimeError(
            f"The decoder checkpoint {file} does not fit the decoder_* settings of this YAML "
            f"(they must equal the generator_* settings of the decoder stage):\n{error}"
        ) from error
    logger.info(f"Loaded the trained decoder from {file}")
    return decoder.requires_grad_(False).eval()
