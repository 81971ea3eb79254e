"""Reading a run folder, whichever way it was written: ``parts.json`` (:mod:`utils.runs.folder`), or the
``hyperparams.yaml`` of a run made before it existed (:mod:`utils.runs.legacy`)."""

import os
from pathlib import Path

from utils.runs.folder import PARTS_FILE, RunFolder
from utils.runs.legacy import HPARAMS_FILE, legacy_run_folder

__all__ = ["read_run"]


def read_run(path: str | os.PathLike) -> RunFolder:
    """The run holding ``path`` (its output folder, save folder, a ``CKPT+*`` folder or a file in one)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    for folder in [path, *path.parents][:4]:
        if (folder / PARTS_FILE).is_file():
            return RunFolder.from_parts_file(folder, path)
        if (folder / HPARAMS_FILE).is_file():
            return legacy_run_folder(folder, path)
    raise FileNotFoundError(
        f"{path} is not a training run: no {PARTS_FILE} (or {HPARAMS_FILE}) there or in its parent "
        "folders (give the output folder of train_quantizer.py / train_decoder.py, e.g. results/bsq/0)"
    )
