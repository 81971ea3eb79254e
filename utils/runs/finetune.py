"""Fine-tuning: initialise recipe modules from a pretrained codec.

A pretrained codec is an official-format folder or Hugging Face Hub id (``config.json`` +
``model.safetensors``, e.g. ``lucadellalib/focalcodec_50hz`` or an ``export_codec.py`` output), a recipe run
folder (its trained parts and frozen encoder, :mod:`utils.runs.folder`) or ``QUANTIZER_RUN+DECODER_RUN``.
Each module is loaded strictly; when the recipe's hyperparameters are given, every ``<module>_*`` setting
that changes what the module computes must equal the pretrained one (an error lists the lines to set).
With ``partial`` (fine-tuning into another architecture), differing settings are accepted and every tensor
whose name and shape match is loaded, the others listed (:mod:`utils.runs.partial`). :func:`init_stage`
initialises the trained modules of a whole stage and writes the run folder's ``init_from.json``.
"""

import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from speechbrain.utils.distributed import if_main_process
from torch import nn

from focalcodec.checkpoint import load_state_dict_file
from focalcodec.codec import FocalCodec
from focalcodec.hub import looks_like_hub_id
from utils.runs.decoder import load_decoder
from utils.runs.export import codec_from_runs
from utils.runs.folder import Part, RunFolder, is_run
from utils.runs.partial import InitRecord, LoadReport, load_by_name, write_init_record
from utils.runs.read import read_run

__all__ = [
    "REFINER",
    "PretrainedCodec",
    "PretrainedMismatchError",
    "init_from_pretrained",
    "init_refiner",
    "init_stage",
    "listening_decoder",
    "load_pretrained",
    "pretrained_codec",
    "setting_mismatches",
]

logger = logging.getLogger(__name__)

# keyword -> (codec part, prefix of the YAML settings of that module)
MODULE_KEYWORDS = {
    "encoder": ("encoder", "encoder_"),
    "student_encoder": ("encoder", "student_encoder_"),  # a trained encoder (FocalCodec-Stream stages 3, 5)
    "student_posemb": ("posemb", "student_posemb_"),  # FocalCodec-Stream stage 2: the encoder's, or a posemb
    "compressor": ("compressor", "compressor_"),
    "quantizer": ("quantizer", "quantizer_"),
    "decompressor": ("decompressor", "decompressor_"),
    "decoder": ("decoder", "decoder_"),
    "generator": ("decoder", "generator_"),
}
# Settings that only affect initialisation or training, not what a trained module computes
TRAINING_ONLY = {"dropout", "layerscale_init", "tanhscale_init", "max_cached_steps", "use_flex_attention"}
# The decompressor's refiner: stage 5 of FocalCodec-Stream adds it to stage 4's (docs/deviations.md #27)
REFINER = "refiner."
POSEMB = "encoder.positional_embedding."  # the positional embedding inside a WavLM


class PretrainedMismatchError(ValueError):
    """A recipe module does not fit the pretrained codec it should be initialised from."""


@dataclass
class PretrainedCodec:
    """The parts of a pretrained codec with their weights (``state`` per part name), and where its encoder
    weights come from in the form a run folder records (``None`` for a Hub id: the recipe records it as
    ``{"hub": <id>}``, or takes the download of ``encoder_hub`` when it is that codec)."""

    source: str
    parts: dict[str, Part]
    state: dict[str, dict[str, torch.Tensor]]
    encoder_weights: dict[str, Any] | None

    def has(self, name: str) -> bool:
        """Whether the codec has part ``name`` (``posemb``: its own, or its encoder's)."""
        return name in self.parts or (name == "posemb" and "encoder" in self.parts)

    def part(self, name: str) -> tuple[Part, dict[str, torch.Tensor]]:
        """Part ``name`` with its weights; ``posemb`` is the encoder's positional embedding unless the source
        is a FocalCodec-Stream stage-2 run, whose trained part it is."""
        if name != "posemb" or "posemb" in self.parts:
            return self.parts[name], self.state[name]
        config = self.parts["encoder"].config
        wanted = {"dim": "dim", "kernel_size": "conv_pos", "groups": "conv_pos_groups", "causal": "causal"}
        state = {
            key.removeprefix(POSEMB): value
            for key, value in self.state["encoder"].items()
            if key.startswith(POSEMB)
        }
        return Part("PositionalEmbedding", {name: config[key] for name, key in wanted.items()}), state


def pretrained_codec(
    source: str | os.PathLike, hf_kwargs: Mapping[str, Any] | None = None
) -> PretrainedCodec:
    """Read a pretrained codec (see the module docstring) as parts and weights."""
    source = os.fspath(source)
    if "+" in source and all(is_run(run) for run in source.split("+", 1)):
        codec = codec_from_runs(*source.split("+", 1), allow_random_encoder=True)
        return _from_codec(source, codec, _run_encoder_weights(read_run(source.split("+", 1)[0]), None))
    if is_run(source):
        run = read_run(source)
        checkpoint = run.checkpoint()
        state = {"encoder": run.encoder_state_dict()}
        for name, part in run.parts.items():
            if part.recoverable is not None:  # the average of its weights when the run kept one
                state[name] = load_state_dict_file(run.weights_file(name, checkpoint))
        return PretrainedCodec(source, run.parts, state, _run_encoder_weights(run, checkpoint))
    if not Path(source).exists() and not looks_like_hub_id(source):
        raise FileNotFoundError(
            f"{source} does not exist: give an official-format folder (config.json + model.safetensors), a "
            "Hugging Face Hub repo id such as lucadellalib/focalcodec_50hz, a training run folder, or "
            "QUANTIZER_RUN+DECODER_RUN"
        )
    local = {"checkpoint": str(Path(source).resolve())} if Path(source).exists() else None
    return _from_codec(source, FocalCodec.from_pretrained(source, **dict(hf_kwargs or {})), local)


def _run_encoder_weights(run: RunFolder, checkpoint: Path | None) -> dict[str, Any]:
    """Where the weights of a run's encoder part are, as a run fine-tuned from it records them: a trained
    encoder's (stages 3, 5) file in ``checkpoint`` (default: the best); else the frozen encoder's record (a
    random encoder is saved again)."""
    if run.parts["encoder"].recoverable is not None:
        return {"checkpoint": str(run.weights_file("encoder", checkpoint).resolve())}
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


def _has_refiner(keys) -> bool:
    return any(key.startswith(REFINER) for key in keys)


def init_refiner(decompressor: nn.Module, init: str) -> None:
    """Initialise a decompressor's new refiner: ``identity`` (its output projection zeroed, so that the
    residual refiner passes the rest's output through unchanged) or ``random`` (PyTorch's default init, as
    built: docs/deviations.md #27)."""
    if init not in ("identity", "random"):
        raise ValueError(f"decompressor_refiner_init must be identity or random, got {init!r}")
    if init == "identity":
        nn.init.zeros_(decompressor.refiner.out_proj.weight)
        nn.init.zeros_(decompressor.refiner.out_proj.bias)
    logger.info(f"New refiner in the decompressor, initialised: {init}")


def _load(
    keyword: str, module: nn.Module, pretrained: PretrainedCodec, partial: bool, refiner_init: str
) -> LoadReport | None:
    """Load one module from its part; ``None`` for the quantizer, which has no weights (only its size is
    checked, unless ``partial``)."""
    part_name, prefix = MODULE_KEYWORDS[keyword]
    part, state = pretrained.part(part_name)
    if part_name == "quantizer":
        bits = int(math.log2(part.config["codebook_size"]))
        dims = [int(buffer.numel()) for name, buffer in module.named_buffers() if name == "mask"]
        if dims and dims[0] != bits and not partial:
            raise PretrainedMismatchError(
                f"The quantizer has {dims[0]} bits, the pretrained codec {pretrained.source} {bits}; set:\n"
                f"  quantizer_code_dim: {bits}  (or --init_from_partial True to change the codebook size)"
            )
        return None
    allowed = REFINER if part_name == "decompressor" else ""
    try:
        report = load_by_name(module, state, keyword, part_name, partial, allowed)
    except RuntimeError as error:
        settings = "\n  ".join(f"{key}: {value!r}" for key, value in _yaml_settings(part, prefix).items())
        raise PretrainedMismatchError(
            f"The {keyword} does not fit the {part_name} of the pretrained codec {pretrained.source}, whose "
            f"settings are:\n  {settings}\n{error}\n(--init_from_partial True loads what fits)"
        ) from error
    if any(key.startswith(REFINER) for key in report.new):
        init_refiner(module, refiner_init)
    logger.info(f"Initialised the {keyword} from the {part_name} of {pretrained.source}")
    return report


def load_pretrained(
    pretrained: PretrainedCodec,
    hparams: Mapping[str, Any] | None = None,
    partial: bool = False,
    refiner_init: str = "identity",
    **modules: nn.Module,
) -> tuple[list[LoadReport], list[str]]:
    """Load ``modules`` (keywords of :func:`init_from_pretrained`) from ``pretrained``: strictly, or with
    ``partial`` every tensor whose name and shape match. A decompressor's refiner may be new (then
    initialised as ``refiner_init``) or dropped, by name. Returns a report per module with weights, and the
    YAML settings that differ from the pretrained ones (an error unless ``partial``)."""
    unknown = sorted(set(modules) - set(MODULE_KEYWORDS))
    if unknown:
        raise ValueError(f"unknown modules {unknown}; expected some of {', '.join(MODULE_KEYWORDS)}")
    source = pretrained.source
    missing = [keyword for keyword in modules if not pretrained.has(MODULE_KEYWORDS[keyword][0])]
    if missing:
        raise PretrainedMismatchError(f"{source} has no {', '.join(missing)} to initialise from")
    mismatches = []
    for keyword, module in modules.items():
        part_name, prefix = MODULE_KEYWORDS[keyword]
        part, state = pretrained.part(part_name)
        # a refiner only one side has is added or dropped by name: its lookahead is no mismatch then
        refiner = _has_refiner(module.state_dict()) != _has_refiner(state)
        ignore = (f"{prefix}lookahead_size",) if part_name == "decompressor" and refiner else ()
        if hparams is not None:
            mismatches += setting_mismatches(part, prefix, hparams, ignore)
    if mismatches and not partial:
        raise PretrainedMismatchError(
            f"The YAML settings do not match the pretrained codec {source}; set:\n  "
            + "\n  ".join(mismatches)
            + "\n(or fine-tune into this architecture with --init_from_partial True)"
        )
    reports = [
        _load(keyword, module, pretrained, partial, refiner_init) for keyword, module in modules.items()
    ]
    return [report for report in reports if report is not None], mismatches


def init_from_pretrained(
    source: "str | os.PathLike | PretrainedCodec",
    hparams: Mapping[str, Any] | None = None,
    hf_kwargs: Mapping[str, Any] | None = None,
    **modules: nn.Module,
) -> PretrainedCodec:
    """Initialise recipe modules with the weights of a pretrained codec (fine-tuning), strictly.

    Arguments
    ---------
    source : see the module docstring, or a :class:`PretrainedCodec` already read.
    hparams : the recipe's hyperparameters; when given, every ``<module>_*`` setting that changes what the
        module computes must equal the pretrained config (an error lists the lines to put in the YAML).
    hf_kwargs : passed to ``huggingface_hub.hf_hub_download`` (``revision``, ``cache_dir``, ...).
    **modules : which modules to initialise: ``encoder``, ``student_encoder`` (a trained encoder, its settings
        ``student_encoder_*``), ``student_posemb`` (the encoder's positional embedding), ``compressor``,
        ``decompressor``, ``decoder`` (the quantizer stage's Vocos) or ``generator`` (the decoder stage's
        Vocos), each loaded strictly from the codec's weights of that part. ``quantizer`` (no weights) is
        only checked for its bits. A module whose part the source does not have (e.g. a decoder from a
        quantizer run) is an error.

    Returns
    -------
    The pretrained codec that was read.
    """
    pretrained = source if isinstance(source, PretrainedCodec) else pretrained_codec(source, hf_kwargs)
    load_pretrained(pretrained, hparams, **modules)
    return pretrained


def init_stage(
    pretrained: PretrainedCodec, hparams: dict[str, Any], trained_parts: Mapping[str, str]
) -> InitRecord:
    """Initialise the trained modules of a stage (``trained_parts``: codec part -> YAML key, the Brain's)
    from ``pretrained``, as ``init_from_partial`` says (strictly, or every tensor whose name and shape
    match), log what was loaded and write it to ``<output_folder>/init_from.json`` (main process). With
    ``init_from_partial``, fewer than ``init_from_min_loaded`` of the trained weights loaded is an error."""
    trained_encoder = trained_parts.get("encoder") or trained_parts.get("posemb")
    target = hparams.get("init_from_encoder", "encoder")
    if target != trained_encoder and (trained_encoder or target not in ("encoder", None)):
        wanted = trained_encoder or "encoder (this stage's frozen encoder) or null"
        raise PretrainedMismatchError(f"init_from_encoder must be {wanted} in this stage, not {target!r}")
    partial = bool(hparams.get("init_from_partial", False))
    min_loaded = float(hparams.get("init_from_min_loaded", 0.5))
    modules = {key: hparams[key] for key in trained_parts.values()}
    refiner_init = hparams.get("decompressor_refiner_init", "identity")
    reports, settings = load_pretrained(pretrained, hparams, partial, refiner_init, **modules)
    record = InitRecord(
        pretrained.source, partial, min_loaded, hparams.get("init_from_encoder"), settings, reports
    )
    logger.info(record.summary())
    if if_main_process():
        write_init_record(hparams["output_folder"], record)
    if partial and record.loaded_share < min_loaded:
        raise PretrainedMismatchError(
            f"Only {100 * record.loaded_share:.1f} % of the trained weights could be loaded from "
            f"{pretrained.source} (init_from_min_loaded: {min_loaded}): this is hardly fine-tuning. See "
            f"{hparams['output_folder']}/init_from.json for what was not loaded; lower init_from_min_loaded "
            "to go on anyway"
        )
    return record


def listening_decoder(hparams: dict[str, Any], pretrained: PretrainedCodec | None) -> None:
    """Set ``hparams["decoder"]``, the frozen decoder a quantizer-like stage listens through at validation
    and test: the decoder stage's run given as ``decoder_checkpoint``, else the decoder of the codec being
    fine-tuned (built from its config, whatever the YAML's ``decoder_*`` settings, and loaded strictly),
    else ``None`` (no resynthesized audio)."""
    if hparams["decoder_checkpoint"] is not None:
        hparams["decoder"] = load_decoder(
            hparams["decoder_checkpoint"], hparams["decoder"], hparams["encoder"]
        )
    elif pretrained is not None and "decoder" in pretrained.parts:
        part, state = pretrained.part("decoder")
        with torch.random.fork_rng(devices=[]):  # building it draws no random number of the run's
            decoder = part.build()
        decoder.load_state_dict(state, strict=True)
        hparams["decoder"] = decoder.requires_grad_(False).eval()
        logger.info(f"Listening through the decoder of {pretrained.source}")
    else:
        hparams["decoder"] = None
