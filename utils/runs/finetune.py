"""Fine-tuning: initialise recipe modules from a pretrained codec.

A pretrained codec is an official-format folder or Hugging Face Hub id (``config.json`` +
``model.safetensors``, e.g. ``lucadellalib/focalcodec_50hz`` or an ``export_codec.py`` output), a recipe run
folder (its trained parts and frozen encoder, :mod:`utils.runs.folder`) or ``QUANTIZER_RUN+DECODER_RUN``.
Each module is loaded strictly; when the recipe's hyperparameters are given, every ``<module>_*`` setting
that changes what the module computes must equal the pretrained one (an error lists the lines to set).
"""

import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from focalcodec.checkpoint import load_state_dict_file
from focalcodec.codec import FocalCodec
from focalcodec.hub import looks_like_hub_id
from utils.runs.decoder import load_decoder
from utils.runs.export import codec_from_runs
from utils.runs.folder import Part, RunFolder, is_run
from utils.runs.read import read_run

__all__ = [
    "PretrainedCodec",
    "PretrainedMismatchError",
    "init_from_pretrained",
    "listening_decoder",
    "pretrained_codec",
    "setting_mismatches",
]

logger = logging.getLogger(__name__)

# keyword -> (codec part, prefix of the YAML settings of that module)
MODULE_KEYWORDS = {
    "encoder": ("encoder", "encoder_"),
    "student_encoder": ("encoder", "student_encoder_"),  # a trained encoder (FocalCodec-Stream joint stage)
    "compressor": ("compressor", "compressor_"),
    "quantizer": ("quantizer", "quantizer_"),
    "decompressor": ("decompressor", "decompressor_"),
    "decoder": ("decoder", "decoder_"),
    "generator": ("decoder", "generator_"),
}
# Settings that only affect initialisation or training, not what a trained module computes
TRAINING_ONLY = {"dropout", "layerscale_init", "tanhscale_init", "max_cached_steps", "use_flex_attention"}


class PretrainedMismatchError(ValueError):
    """A recipe module does not fit the pretrained codec it should be initialised from."""


@dataclass
class PretrainedCodec:
    """The parts of a pretrained codec with their weights (``state`` per part name), and where its encoder
    weights come from in the form a run folder records (``None`` for a Hub id: the recipe then takes the
    encoder of ``encoder_hub``)."""

    source: str
    parts: dict[str, Part]
    state: dict[str, dict[str, torch.Tensor]]
    encoder_weights: dict[str, Any] | None


def pretrained_codec(
    source: str | os.PathLike, hf_kwargs: Mapping[str, Any] | None = None
) -> PretrainedCodec:
    """Read a pretrained codec (see the module docstring) as parts and weights."""
    source = os.fspath(source)
    if "+" in source and all(is_run(run) for run in source.split("+", 1)):
        codec = codec_from_runs(*source.split("+", 1), allow_random_encoder=True)
        return _from_codec(source, codec, _run_encoder_weights(read_run(source.split("+", 1)[0])))
    if is_run(source):
        run = read_run(source)
        checkpoint = run.checkpoint()
        state = {"encoder": run.encoder_state_dict()}
        for name, part in run.parts.items():
            if part.recoverable is not None:
                state[name] = load_state_dict_file(checkpoint / f"{part.recoverable}.ckpt")
        return PretrainedCodec(source, run.parts, state, _run_encoder_weights(run))
    if not Path(source).exists() and not looks_like_hub_id(source):
        raise FileNotFoundError(
            f"{source} does not exist: give an official-format folder (config.json + model.safetensors), a "
            "Hugging Face Hub repo id such as lucadellalib/focalcodec_50hz, a training run folder, or "
            "QUANTIZER_RUN+DECODER_RUN"
        )
    local = {"checkpoint": str(Path(source).resolve())} if Path(source).exists() else None
    return _from_codec(source, FocalCodec.from_pretrained(source, **dict(hf_kwargs or {})), local)


def _run_encoder_weights(run: RunFolder) -> dict[str, Any]:
    """A run's encoder record, as a run fine-tuned from it records it (a random encoder is saved again)."""
    return {"random_init": True} if run.random_encoder else dict(run.encoder_weights)


def _from_codec(source: str, codec: FocalCodec, encoder_weights: dict[str, Any] | None) -> PretrainedCodec:
    config = codec.to_config()
    names = ("encoder", "compressor", "quantizer", "decompressor", "decoder")
    parts = {name: Part(config[f"{name}_name"], config[f"{name}_config"]) for name in names}
    state = {name: getattr(codec, name).state_dict() for name in names}
    return PretrainedCodec(source, parts, state, encoder_weights)


def _yaml_settings(part: Part, prefix: str) -> dict[str, Any]:
    """A pretrained part's config as the recipe's YAML settings (``compressor_focal_window: 14`` ...)."""
    if prefix == "quantizer_":
        return {"quantizer_code_dim": int(math.log2(part.config["codebook_size"]))}
    settings = {}
    for key, value in part.config.items():
        key = {"input_channels": "input_dim"}.get(key, key)
        if key != "padding":
            settings[prefix + key] = value
    return settings


def setting_mismatches(
    part: Part, prefix: str, hparams: Mapping[str, Any], ignore: tuple[str, ...] = ()
) -> list[str]:
    """One line ``<prefix><setting>: <pretrained value>  # YAML has <value>`` per ``<prefix>*`` setting of
    ``hparams`` that changes what the module computes and differs from ``part``'s config (settings in
    ``ignore`` left out)."""
    mismatches = []
    for key, value in _yaml_settings(part, prefix).items():
        if key in hparams and key not in ignore and key.removeprefix(prefix) not in TRAINING_ONLY:
            current = list(hparams[key]) if isinstance(hparams[key], tuple) else hparams[key]
            if current != value:
                mismatches.append(f"{key}: {value!r}  # YAML has {hparams[key]!r}")
    return mismatches


def _load(keyword: str, module: torch.nn.Module, pretrained: PretrainedCodec) -> None:
    part_name, prefix = MODULE_KEYWORDS[keyword]
    part = pretrained.parts[part_name]
    if part_name == "quantizer":  # no weights: only its size must fit
        bits = int(math.log2(part.config["codebook_size"]))
        dims = [int(buffer.numel()) for name, buffer in module.named_buffers() if name == "mask"]
        if dims and dims[0] != bits:
            raise PretrainedMismatchError(
                f"The quantizer has {dims[0]} bits, the pretrained codec {pretrained.source} {bits}; set:\n"
                f"  quantizer_code_dim: {bits}"
            )
        return
    try:
        module.load_state_dict(pretrained.state[part_name], strict=True)
    except RuntimeError as error:
        settings = "\n  ".join(f"{key}: {value!r}" for key, value in _yaml_settings(part, prefix).items())
        raise PretrainedMismatchError(
            f"The {keyword} does not fit the {part_name} of the pretrained codec {pretrained.source}, whose "
            f"settings are:\n  {settings}\n{error}"
        ) from error
    logger.info(f"Initialised the {keyword} from the {part_name} of {pretrained.source}")


def init_from_pretrained(
    source: "str | os.PathLike | PretrainedCodec",
    hparams: Mapping[str, Any] | None = None,
    hf_kwargs: Mapping[str, Any] | None = None,
    **modules: torch.nn.Module,
) -> PretrainedCodec:
    """Initialise recipe modules with the weights of a pretrained codec (fine-tuning).

    Arguments
    ---------
    source : see the module docstring, or a :class:`PretrainedCodec` already read.
    hparams : the recipe's hyperparameters; when given, every ``<module>_*`` setting that changes what the
        module computes must equal the pretrained config (an error lists the lines to put in the YAML).
    hf_kwargs : passed to ``huggingface_hub.hf_hub_download`` (``revision``, ``cache_dir``, ...).
    **modules : which modules to initialise: ``encoder``, ``student_encoder`` (a trained encoder, its settings
        ``student_encoder_*``), ``compressor``, ``decompressor``, ``decoder`` (the quantizer stage's Vocos)
        or ``generator`` (the decoder stage's Vocos), each loaded strictly
        from the codec's weights of that part. ``quantizer`` (no weights) is only checked for its bits. A
        module whose part the source does not have (e.g. a decoder from a quantizer run) is an error.

    Returns
    -------
    The pretrained codec that was read.
    """
    unknown = sorted(set(modules) - set(MODULE_KEYWORDS))
    if unknown:
        raise ValueError(f"unknown modules {unknown}; expected some of {', '.join(MODULE_KEYWORDS)}")
    pretrained = source if isinstance(source, PretrainedCodec) else pretrained_codec(source, hf_kwargs)
    source = pretrained.source
    missing = [keyword for keyword in modules if MODULE_KEYWORDS[keyword][0] not in pretrained.parts]
    if missing:
        raise PretrainedMismatchError(f"{source} has no {', '.join(missing)} to initialise from")
    mismatches = []
    for keyword in modules:
        part_name, prefix = MODULE_KEYWORDS[keyword]
        if hparams is not None:
            mismatches += setting_mismatches(pretrained.parts[part_name], prefix, hparams)
    if mismatches:
        raise PretrainedMismatchError(
            f"The YAML settings do not match the pretrained codec {source}; set:\n  "
            + "\n  ".join(mismatches)
        )
    for keyword, module in modules.items():
        _load(keyword, module, pretrained)
    return pretrained


def listening_decoder(
    hparams: dict[str, Any], pretrained: PretrainedCodec | None
) -> dict[str, torch.nn.Module]:
    """Set ``hparams["decoder"]``, the frozen decoder a quantizer-like stage listens through at validation
    and test: the decoder stage's run given as ``decoder_checkpoint``, else the decoder of the codec being
    fine-tuned, else ``None`` (no resynthesized audio). Returns ``{"decoder": module}`` when that module is
    to be initialised from ``pretrained`` (pass it on to :func:`init_from_pretrained`), else ``{}``."""
    if hparams["decoder_checkpoint"] is not None:
        hparams["decoder"] = load_decoder(
            hparams["decoder_checkpoint"], hparams["decoder"], hparams["encoder"]
        )
    elif pretrained is not None and "decoder" in pretrained.parts:
        return {"decoder": hparams["decoder"].requires_grad_(False).eval()}
    else:
        hparams["decoder"] = None
    return {}
