"""The run folder's ``parts.json``: writing it (:func:`write_run_folder`, on the main process before training)
and the :class:`RunFolder` that export, evaluation, fine-tuning, ``--decoder_checkpoint`` and the next
FocalCodec-Stream stage read instead of the YAML (read with :func:`utils.runs.read_run`). Each part is in
the official ``FocalCodec`` form; ``encoder_weights`` and ``encoder_sha256`` describe the stage's frozen
encoder (the ``teacher`` when the stage trains the encoder part). The format and its JSON schema:
docs/run-folder.md.
"""

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from focalcodec.checkpoint import load_state_dict_file
from focalcodec.codec import REGISTRY
from focalcodec.files import atomic_write, atomic_write_json
from utils.runs.checkpoints import find_checkpoint
from utils.runs.encoder_weights import encoder_state_dict
from utils.runs.fingerprint import encoder_fingerprint

__all__ = [
    "ENCODER_FILE",
    "PARTS_FILE",
    "Part",
    "RunFolder",
    "RunFolderError",
    "is_run",
    "part_of",
    "write_run_folder",
]


PARTS_FILE = "parts.json"
ENCODER_FILE = "encoder.safetensors"
FORMAT = 1


class RunFolderError(ValueError):
    """A run folder is not what a tool needs (another stage, incomplete, or inconsistent)."""


@dataclass(frozen=True)
class Part:
    """One part of the codec: its class name in ``focalcodec.codec.REGISTRY`` and constructor config."""

    name: str
    config: dict[str, Any]
    recoverable: str | None = None

    def build(self) -> nn.Module:
        return REGISTRY[self.name](**self.config)


def is_run(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a training run's output folder, or a folder or file inside one (its save folder,
    a ``CKPT+*`` folder, a checkpoint file)."""
    path = Path(path)
    return path.exists() and any(
        (folder / PARTS_FILE).is_file() or (folder / "hyperparams.yaml").is_file()
        for folder in (path, *path.parents[:3])
    )


def part_of(module: nn.Module, recoverable: str | None = None) -> Part:
    """The :class:`Part` of a built module (SpeechBrain's training BSQ maps to the inference BSQ)."""
    if hasattr(module, "config"):
        return Part(type(module).__name__, dict(module.config), recoverable)
    if hasattr(module, "code_dim"):  # speechbrain.lobes.models.bsq.BinarySphericalQuantizer
        return Part("BinarySphericalQuantizer", {"codebook_size": 2**module.code_dim}, recoverable)
    raise TypeError(f"{type(module).__name__} does not record its constructor config")


def write_run_folder(
    folder: str | os.PathLike,
    stage: str,
    parts: dict[str, Part],
    encoder: nn.Module,
    encoder_weights: dict[str, Any],
    best: dict[str, str],
    teacher: Part | None = None,
) -> Path:
    """Write ``parts.json`` (and ``encoder.safetensors`` for a random encoder) into a run's output folder.
    ``encoder`` is the frozen encoder (the ``teacher`` part when given, else the ``encoder`` part)."""
    folder = Path(folder)
    if encoder_weights.get("random_init"):
        state = {key: value.detach().cpu().contiguous() for key, value in encoder.state_dict().items()}
        atomic_write(folder / ENCODER_FILE, lambda tmp: save_file(state, tmp))
        encoder_weights = {"random_init": True, "file": ENCODER_FILE}
    record = {
        "format": FORMAT,
        "stage": stage,
        "parts": {name: _part_json(part) for name, part in parts.items()},
        **({"teacher": _part_json(teacher)} if teacher is not None else {}),
        "encoder_weights": encoder_weights,
        "encoder_sha256": encoder_fingerprint(encoder),
        "best": best,
    }
    return atomic_write_json(folder / PARTS_FILE, record, indent=2)


def _part_json(part: Part) -> dict[str, Any]:
    record: dict[str, Any] = {"name": part.name, "config": part.config}
    if part.recoverable is not None:
        record["recoverable"] = part.recoverable
    return record


@dataclass
class RunFolder:
    """A training run's output folder, as later tools see it (read with :func:`utils.runs.read_run`)."""

    folder: Path
    path: Path  # what the user named: the folder, its save folder, one CKPT+ folder or a file inside
    stage: str
    parts: dict[str, Part]
    encoder_weights: dict[str, Any]
    encoder_sha256: str | None
    best: dict[str, str] = field(default_factory=dict)
    teacher: Part | None = None  # the frozen encoder when the encoder part is trained

    @classmethod
    def from_parts_file(cls, folder: Path, path: Path) -> "RunFolder":
        """The run whose ``parts.json`` is in ``folder`` (``path``: what the user named)."""
        record = json.loads((folder / PARTS_FILE).read_text())
        parts = {name: Part(**part) for name, part in record["parts"].items()}
        teacher = Part(**record["teacher"]) if "teacher" in record else None
        return cls(folder, path, record["stage"], parts, record["encoder_weights"],
                   record.get("encoder_sha256"), record.get("best", {}), teacher)  # fmt: skip

    @property
    def random_encoder(self) -> bool:
        return bool(self.encoder_weights.get("random_init"))

    @property
    def frozen_encoder(self) -> Part:
        """The frozen encoder whose weights ``encoder_weights`` gives: the teacher, or the encoder part."""
        return self.teacher or self.parts["encoder"]

    def require_stage(self, *stages: str) -> None:
        """Raise a clear error unless this is a run of one of ``stages``."""
        if self.stage not in stages:
            article = {stage: "an" if stage[0] in "aeiou" else "a" for stage in (self.stage, *stages)}
            wanted = " or ".join(f"{article[stage]} {stage}-stage run" for stage in stages)
            raise RunFolderError(
                f"{self.folder} is {article[self.stage]} {self.stage}-stage run, not {wanted} "
                "(did you swap two runs?)"
            )

    def checkpoint(self, which: str = "best") -> Path:
        """The ``CKPT+*`` folder to take: the one named by the user, else the best (the stage's own test
        choice) or the most recent (``which="latest"``) of the complete ones holding every trained part."""
        files = [f"{part.recoverable}.ckpt" for part in self.parts.values() if part.recoverable]
        return find_checkpoint(self.path, files, which, **self.best)

    def load_part(self, name: str, module: nn.Module, checkpoint: Path | None = None) -> nn.Module:
        """Load a trained part's weights (strictly) from ``checkpoint`` (default: :meth:`checkpoint`)."""
        part = self.parts[name]
        file = (checkpoint or self.checkpoint()) / f"{part.recoverable}.ckpt"
        try:
            module.load_state_dict(load_state_dict_file(file), strict=True)
        except RuntimeError as error:
            raise RunFolderError(
                f"{file} does not fit the {name} recorded in {self.folder}:\n{error}"
            ) from error
        return module

    def encoder_state_dict(self) -> dict[str, torch.Tensor]:
        """The frozen encoder's weights as the run used them (downloaded or cached if from the Hub)."""
        weights = self.encoder_weights
        if "file" in weights:
            return load_state_dict_file(self.folder / weights["file"])
        if self.random_encoder:
            raise RunFolderError(
                f"{self.folder} was trained with a randomly initialised encoder whose weights this older run "
                f"folder did not keep: run its training command once more (it resumes from the last "
                f"checkpoint and writes {ENCODER_FILE} and {PARTS_FILE}), then try again"
            )
        return encoder_state_dict(self.frozen_encoder.build(), **weights)

    def check_encoder(self, state: dict[str, torch.Tensor], source: str) -> None:
        """Raise unless ``state`` is the encoder this run was trained on (if its fingerprint is recorded)."""
        encoder = self.frozen_encoder.build()
        encoder.load_state_dict(state, strict=True)
        if self.encoder_sha256 is not None and encoder_fingerprint(encoder) != self.encoder_sha256:
            raise RunFolderError(f"{source} are not the encoder weights {self.folder} was trained on")
