"""Where a FocalCodec checkpoint lives, and fetching its files.

A checkpoint is a folder (or a Hugging Face Hub repository) holding ``config.json`` (the ten constructor
arguments) and ``model.safetensors`` (or ``model.pt``), a flat float32 state_dict. It can be named as:

* a local folder;
* a local ``*.json`` config file (weights in the same folder);
* a local path *stem* ``dir/name`` for ``dir/name.json`` + ``dir/name.safetensors`` (the upstream package's
  local convention, e.g. ``my_codec/model``);
* a Hub repo id ``namespace/name``, optionally followed by ``/<file>.json``.
"""

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CONFIG_FILE",
    "UPSTREAM_CONFIG_FILE",
    "WEIGHT_FILES",
    "Location",
    "locate",
    "looks_like_hub_id",
    "weight_file",
]

CONFIG_FILE = "config.json"
UPSTREAM_CONFIG_FILE = "model.json"
"""The config again, beside ``model.safetensors``: upstream's loader reads ``<stem>.json`` (local stem)."""
WEIGHT_FILES = ("model.safetensors", "model.pt")
"""Weight files of a checkpoint, in order of preference."""


@dataclass(frozen=True)
class Location:
    """A checkpoint: a local ``folder`` or a Hub ``repo_id``, and the names of its config and weight files."""

    folder: Path | None
    repo_id: str
    config_file: str = CONFIG_FILE
    weight_files: tuple[str, ...] = WEIGHT_FILES

    def fetch(self, filenames: Sequence[str], **hf_kwargs) -> Path:
        """Local path of the first of ``filenames`` present (downloaded from the Hub for a repo id).

        Raises FileNotFoundError (local) or OSError (Hub) naming what was tried and how to work offline.
        """
        if self.folder is not None:
            for filename in filenames:
                if (self.folder / filename).is_file():
                    return self.folder / filename
            raise FileNotFoundError(f"{self.folder} holds none of {', '.join(filenames)}")
        return _download_first(self.repo_id, filenames, hf_kwargs)


def _download_first(repo_id: str, filenames: Sequence[str], hf_kwargs: dict) -> Path:
    from huggingface_hub import hf_hub_download

    errors = []
    for filename in filenames:
        try:
            return Path(hf_hub_download(repo_id, filename, **hf_kwargs))
        except Exception as error:  # any hub or network failure (their types vary with the HTTP backend)
            errors.append(f"{filename}: {type(error).__name__}: {str(error).splitlines()[0]}")
    raise OSError(
        f"'{repo_id}' is not a local folder or .json file, and {' / '.join(filenames)} could not be "
        f"fetched from the Hugging Face Hub repository '{repo_id}' ({'; '.join(errors)}).\n"
        f"Without network access, copy config.json and model.safetensors of "
        f"https://huggingface.co/{repo_id} into a folder and pass that folder instead, e.g. "
        f"FocalCodec.from_pretrained('/path/to/folder')."
    )


def locate(config: str | os.PathLike) -> Location:
    """The :class:`Location` a checkpoint name stands for (see the module docstring)."""
    path = Path(config)
    if path.is_dir():
        return Location(path, "")
    if path.suffix == ".json" and path.is_file():
        return Location(path.parent, "", path.name)
    if path.with_name(path.name + ".json").is_file():
        return Location(path.parent, "", path.name + ".json", (f"{path.name}.safetensors", f"{path.name}.pt"))
    location = os.fspath(config)
    if location.endswith(".json"):
        repo_id, _, filename = location.rpartition("/")
        return Location(None, repo_id, filename)
    return Location(None, location)


def looks_like_hub_id(location: str | os.PathLike) -> bool:
    """``namespace/name`` (optionally ``/<file>.json``) rather than a relative or absolute path."""
    location = os.fspath(location)
    parts = location.split("/")
    return (
        not location.startswith((".", "/", "~"))
        and "\\" not in location
        and (len(parts) <= 2 or (len(parts) == 3 and parts[2].endswith(".json")))
        and all(parts)
    )


def weight_file(path: str | os.PathLike) -> Path:
    """A weight file itself, or the weight file inside a checkpoint folder."""
    path = Path(path)
    if path.is_dir():
        return Location(path, "").fetch(WEIGHT_FILES)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    return path
