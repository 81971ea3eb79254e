"""Reading run folders written before ``parts.json`` existed (see :mod:`utils.runs.folder`), from their
``hyperparams.yaml``: the constructor arguments are the keyword arguments of its ``compressor:
!new:focalcodec.focalnet.FocalEncoder`` etc. entries, read without building anything.

A randomly initialised encoder cannot be recovered this way (its weights were never saved): such a run
must be resumed once with the current recipe, which writes ``parts.json`` and ``encoder.safetensors``.
"""

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.constructor import SafeConstructor
from ruamel.yaml.nodes import MappingNode, SequenceNode

from utils.runs.folder import Part, RunFolder, RunFolderError

__all__ = ["HPARAMS_FILE", "legacy_run_folder"]

logger = logging.getLogger(__name__)

HPARAMS_FILE = "hyperparams.yaml"
# YAML entry -> (part, accepted classes, recoverable)
QUANTIZER_PARTS = {
    "encoder": ("encoder", ("focalcodec.wavlm.WavLM",), None),
    "compressor": ("compressor", ("focalcodec.focalnet.FocalEncoder",), "compressor"),
    "decompressor": ("decompressor", ("focalcodec.focalnet.FocalDecoder",), "decompressor"),
}
DECODER_PARTS = {
    "encoder": ("encoder", ("focalcodec.wavlm.WavLM",), None),
    "generator": ("decoder", ("focalcodec.vocos.Vocos",), "generator"),
}
TRAINING_BSQ = "speechbrain.lobes.models.bsq.BinarySphericalQuantizer"


@dataclass(frozen=True)
class Tagged:
    """A YAML node with a hyperpyyaml tag, e.g. ``!new:focalcodec.wavlm.WavLM`` and its kwargs."""

    tag: str
    value: Any


class _TaggedConstructor(SafeConstructor):
    """Safe YAML constructor that keeps every ``!tag`` node as a :class:`Tagged` (a subclass, so that
    ruamel's own SafeConstructor is left alone)."""


def _construct_tagged(constructor: SafeConstructor, suffix: str, node) -> Tagged:
    if isinstance(node, MappingNode):
        value = dict(constructor.construct_mapping(node, deep=True))
    elif isinstance(node, SequenceNode):
        value = constructor.construct_sequence(node, deep=True)
    else:
        value = constructor.construct_scalar(node)
    return Tagged(f"!{suffix}", value)


_TaggedConstructor.add_multi_constructor("!", _construct_tagged)


def _read_yaml(path: Path) -> dict:
    yaml = YAML(typ="safe", pure=True)
    yaml.Constructor = _TaggedConstructor
    data = yaml.load(path.read_text())
    if not isinstance(data, dict):
        raise RunFolderError(f"{path} does not hold a YAML mapping")
    return data


def _module(hparams: dict, key: str, classes: tuple[str, ...], file: Path) -> tuple[str, dict]:
    """``(class path, kwargs)`` of the YAML entry ``key: !new:<class> {kwargs}``."""
    entry = hparams.get(key)
    if not isinstance(entry, Tagged) or not entry.tag.startswith("!new:"):
        raise RunFolderError(f"{file} has no '{key}: !new:...' module entry")
    class_path = entry.tag.removeprefix("!new:")
    if class_path not in classes:
        raise RunFolderError(f"{file}: '{key}' is a {class_path}; expected {' or '.join(classes)}")
    return class_path, dict(entry.value) if isinstance(entry.value, dict) else {}


def _plain(hparams: dict, key: str) -> Any:
    value = hparams.get(key)
    return None if isinstance(value, Tagged) else value


def legacy_run_folder(folder: Path, path: Path) -> RunFolder:
    """A :class:`RunFolder` from a run's ``hyperparams.yaml`` (runs made before ``parts.json``)."""
    file = folder / HPARAMS_FILE
    hparams = _read_yaml(file)
    stage = "quantizer" if isinstance(hparams.get("compressor"), Tagged) else "decoder"
    logger.warning(f"{folder} has no parts.json (an older run): reading its parts from {HPARAMS_FILE}")
    entries = QUANTIZER_PARTS if stage == "quantizer" else DECODER_PARTS
    parts = {}
    for key, (part, classes, recoverable) in entries.items():
        class_path, kwargs = _module(hparams, key, classes, file)
        parts[part] = Part(class_path.rsplit(".", 1)[1], kwargs, recoverable)
    if stage == "quantizer":
        class_path, kwargs = _module(hparams, "quantizer", (TRAINING_BSQ,), file)
        parts["quantizer"] = Part(
            "BinarySphericalQuantizer", {"codebook_size": 2 ** kwargs["code_dim"]}, "quantizer"
        )
    if _plain(hparams, "encoder_random_init"):
        weights: dict[str, Any] = {"random_init": True}
    elif _plain(hparams, "encoder_checkpoint") is not None:
        weights = {"checkpoint": _plain(hparams, "encoder_checkpoint")}
    else:
        weights = {"hub": _plain(hparams, "encoder_hub") or "lucadellalib/focalcodec_50hz"}
    best = {"min_key": "loss"} if stage == "quantizer" else {"max_key": "epoch"}
    return RunFolder(folder, path, stage, parts, weights, None, best)
