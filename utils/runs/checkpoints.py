"""Picking a checkpoint of a run: the best one by its meta, or the latest complete one (a checkpoint counts
once its ``CKPT.yaml`` exists: see :mod:`utils.training.checkpointer`, which writes it last)."""

import os
from collections.abc import Sequence
from pathlib import Path

from ruamel.yaml import YAML
from speechbrain.utils.checkpoints import METAFNAME

__all__ = ["checkpoint_meta", "find_checkpoint"]


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
