"""Picking a checkpoint of a run, verified: the best one by its meta, or the latest complete one (a checkpoint
counts once its ``CKPT.yaml`` exists: see :mod:`utils.training.checkpointer`, which writes it last).

A checkpoint's ``CKPT.yaml`` records the size and SHA-256 of every other file of it (``files``), written
when it was saved; a checkpoint is read only once every file matches. A damaged one (a truncated copy, a
full disk, bit rot, a missing file) is named with what is wrong, and the next best intact checkpoint is
taken instead, with a warning. Checkpoints saved before the checksums were recorded are not verified.
"""

import functools
import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from ruamel.yaml import YAML
from speechbrain.utils.checkpoints import METAFNAME

__all__ = [
    "FILES_KEY",
    "DamagedCheckpointError",
    "checkpoint_meta",
    "checkpoint_problems",
    "file_records",
    "find_checkpoint",
    "verify_checkpoint",
]

logger = logging.getLogger(__name__)

FILES_KEY = "files"
"""Key of ``CKPT.yaml``: ``{file name: {"bytes": size, "sha256": hex digest}}`` of every other file."""


class DamagedCheckpointError(RuntimeError):
    """A checkpoint (or every candidate checkpoint) fails its verification; the message names the files."""


def checkpoint_meta(folder: Path) -> dict:
    """The meta (``CKPT.yaml``) of a checkpoint folder."""
    meta = YAML(typ="safe", pure=True).load((folder / METAFNAME).read_text())
    return meta if isinstance(meta, dict) else {}


def _sha256(path: Path) -> str:
    with open(path, "rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def file_records(folder: Path, exclude: Sequence[str] = ()) -> dict[str, dict]:
    """``{name: {"bytes", "sha256"}}`` of every file of a checkpoint folder but its meta and ``exclude``."""
    skip = {METAFNAME, *exclude}
    files = sorted(path for path in Path(folder).iterdir() if path.is_file() and path.name not in skip)
    return {path.name: {"bytes": path.stat().st_size, "sha256": _sha256(path)} for path in files}


@functools.lru_cache(maxsize=32)
def _file_problem(path: Path, size: int, sha256: str, stamp: tuple[int, int]) -> str | None:
    """What is wrong with one file against its record (cached while its size and time stamp stay)."""
    if stamp[0] != size:
        return f"{path.name}: {stamp[0]} bytes, {size} when saved (truncated or overwritten)"
    if _sha256(path) != sha256:
        return f"{path.name}: its content differs from what was saved (SHA-256 mismatch: bit rot, overwrite)"
    return None


def checkpoint_problems(folder: Path, meta: dict | None = None) -> list[str]:
    """Each file of a checkpoint that is missing or differs from its record, as ``"<file>: <what>"``; empty
    when all are intact (or nothing was recorded). An unreadable ``CKPT.yaml`` is a problem too."""
    folder = Path(folder)
    try:
        meta = checkpoint_meta(folder) if meta is None else meta
    except (OSError, ValueError) as error:  # ruamel's errors are ValueErrors
        return [f"{METAFNAME}: unreadable ({' '.join(str(error).split())[:200]})"]
    problems = []
    for name, record in (meta.get(FILES_KEY) or {}).items():
        path = folder / name
        if not path.is_file():
            problems.append(f"{name}: missing")
            continue
        stat = path.stat()
        problem = _file_problem(path, record["bytes"], record["sha256"], (stat.st_size, stat.st_mtime_ns))
        problems.extend([problem] if problem else [])
    return problems


def verify_checkpoint(folder: Path, meta: dict | None = None) -> None:
    """Raise :class:`DamagedCheckpointError` naming the damaged or missing files of a checkpoint."""
    problems = checkpoint_problems(folder, meta)
    if problems:
        raise DamagedCheckpointError(f"checkpoint {folder} is damaged: {'; '.join(problems)}")


def _complete(folder: Path, files: Sequence[str]) -> bool:
    return (folder / METAFNAME).is_file() and all((folder / name).is_file() for name in files)


def _ranked(complete: list[Path], which: str, min_key: str | None, max_key: str | None) -> list[Path]:
    """The complete checkpoints, the one to take first: best by ``min_key``/``max_key`` (those with the
    key), else the most recent. Unreadable metas rank last (their verification names them)."""
    metas = {}
    for folder in complete:
        try:
            metas[folder] = checkpoint_meta(folder)
        except (OSError, ValueError):
            metas[folder] = None
    recent = sorted(complete, key=lambda folder: (metas[folder] or {}).get("unixtime", -1.0), reverse=True)
    key = min_key or max_key
    if which == "latest" or key is None:
        return recent
    scored = [folder for folder in recent if key in (metas[folder] or {})]
    if not scored and all(metas.values()):
        raise FileNotFoundError(
            f"No checkpoint of {complete[0].parent} has a '{key}' (only intra-epoch ones); use which='latest'"
        )
    scored.sort(key=lambda folder: metas[folder][key], reverse=max_key is not None)
    return scored + [folder for folder in recent if metas[folder] is None]


def find_checkpoint(
    path: str | os.PathLike,
    files: Sequence[str],
    which: str = "best",
    min_key: str | None = None,
    max_key: str | None = None,
) -> Path:
    """The ``CKPT+*`` folder to use, verified (:func:`checkpoint_problems`).

    Arguments
    ---------
    path : a checkpoint folder (or a file in one: then that folder is used, and must be intact), or a run's
        output or save folder (then the first intact one of its complete checkpoints holding all ``files``
        is chosen; a damaged one is named in a warning).
    files : the files a checkpoint must hold (e.g. ``["generator.ckpt"]``).
    which : ``"best"`` (lowest ``min_key`` / highest ``max_key`` of the meta, as the stage's own test
        chooses; the most recent when neither is given) or ``"latest"``.
    """
    if which not in ("best", "latest"):
        raise ValueError(f"which must be 'best' or 'latest', got {which!r}")
    path = Path(path)
    for folder in (path, path.parent):
        if _complete(folder, files):
            verify_checkpoint(folder)
            return folder
    save_folder = path / "save" if (path / "save").is_dir() else path
    complete = [folder for folder in sorted(save_folder.glob("CKPT+*")) if _complete(folder, files)]
    if not complete:
        raise FileNotFoundError(
            f"No complete checkpoint in {save_folder} holding {', '.join(files)} (has the stage finished an "
            "epoch there? give its output folder, e.g. results/bsq/0, or one of its CKPT+ folders)"
        )
    damaged = []
    for folder in _ranked(complete, which, min_key, max_key):
        problems = checkpoint_problems(folder)
        if not problems:
            if damaged:
                logger.warning(f"Taking {folder} instead, the next intact checkpoint")
            return folder
        damaged.append(f"{folder.name}: {'; '.join(problems)}")
        logger.warning(f"Checkpoint {folder} is damaged ({'; '.join(problems)}): not used")
    raise DamagedCheckpointError(f"No intact checkpoint in {save_folder}: {' | '.join(damaged)}")
