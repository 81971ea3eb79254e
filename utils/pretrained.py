"""Recipe runs <-> the official FocalCodec checkpoint format (``config.json`` + ``model.safetensors``).

* :func:`codec_from_runs` builds a :class:`~focalcodec.codec.FocalCodec` from the outputs of the two
  training stages (quantizer run: compressor + decompressor; decoder run: Vocos) and the frozen encoder's
  weights. ``export_codec.py`` writes it with ``to_pretrained``; an evaluation can use it directly.
* :func:`init_from_pretrained` initialises recipe modules from an official-format folder or Hugging Face
  Hub repository (fine-tuning a released or exported codec).

A run is read from its ``hyperparams.yaml`` (the resolved YAML SpeechBrain copies into the output folder)
without building anything: the constructor arguments are the keyword arguments of its
``compressor: !new:focalcodec.focalnet.FocalEncoder`` etc. entries, so the exported ``config.json`` holds
exactly what was trained.
"""

import contextlib
import io
import logging
import math
import os
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from ruamel.yaml import YAML
from ruamel.yaml.constructor import SafeConstructor
from ruamel.yaml.nodes import MappingNode, SequenceNode

from focalcodec.checkpoint import load_state_dict_file
from focalcodec.codec import FocalCodec
from focalcodec.hub import looks_like_hub_id
from utils.checkpoints import find_generator_checkpoint
from utils.encoder import WAVLM6_HUB_ID, load_frozen_encoder

__all__ = [
    "PretrainedMismatchError",
    "RunMismatchError",
    "StageRun",
    "codec_from_runs",
    "find_quantizer_checkpoint",
    "init_from_pretrained",
]

logger = logging.getLogger(__name__)

HPARAMS_FILE = "hyperparams.yaml"
META_FILE = "CKPT.yaml"
QUANTIZER_FILES = ("compressor.ckpt", "quantizer.ckpt", "decompressor.ckpt")

# YAML entry -> (FocalCodec part, accepted classes, FocalCodec class name)
_ENCODER_CLASSES = ("focalcodec.wavlm.WavLM",)
_COMPRESSOR_CLASSES = ("focalcodec.focalnet.FocalEncoder",)
_DECOMPRESSOR_CLASSES = ("focalcodec.focalnet.FocalDecoder",)
_DECODER_CLASSES = ("focalcodec.vocos.Vocos",)
_QUANTIZER_CLASSES = (
    "speechbrain.lobes.models.bsq.BinarySphericalQuantizer",
    "focalcodec.bsq.BinarySphericalQuantizer",
)

# Settings that only affect initialisation or training, not what a trained module computes
_TRAINING_ONLY = {"dropout", "layerscale_init", "tanhscale_init", "max_cached_steps", "use_flex_attention"}


class RunMismatchError(ValueError):
    """The quantizer-stage and decoder-stage runs do not fit together (or are not what they should be)."""


class PretrainedMismatchError(ValueError):
    """A recipe module does not fit the pretrained codec it should be initialised from."""


# --------------------------------------------------------------------------------------------------
# Reading a run's hyperparams.yaml without building anything


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
        value = constructor.construct_mapping(node, deep=True)
        value = dict(value)
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
        raise RunMismatchError(f"{path} does not hold a YAML mapping")
    return data


def _find_run_folder(path: Path) -> Path:
    """The run's output folder: ``path`` itself or the closest parent holding ``hyperparams.yaml``
    (so a ``CKPT+*`` folder or a checkpoint file inside a run works too)."""
    for folder in [path, *path.parents][:4]:
        if (folder / HPARAMS_FILE).is_file():
            return folder
    raise FileNotFoundError(
        f"{path} is not a training run: no {HPARAMS_FILE} there or in its parent folders "
        "(give the output folder of train_quantizer.py / train_decoder.py, e.g. results/bsq/0)"
    )


@dataclass
class StageRun:
    """A training run: its output folder, the given path (may be a checkpoint inside it), its hparams."""

    folder: Path
    path: Path
    hparams: dict

    @classmethod
    def read(cls, path: str | os.PathLike) -> "StageRun":
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist")
        folder = _find_run_folder(path)
        return cls(folder, path, _read_yaml(folder / HPARAMS_FILE))

    def has_module(self, key: str) -> bool:
        return isinstance(self.hparams.get(key), Tagged)

    def module_kwargs(self, key: str, classes: tuple[str, ...]) -> tuple[str, dict]:
        """``(class path, constructor kwargs)`` of the YAML entry ``key: !new:<class> {kwargs}``."""
        entry = self.hparams.get(key)
        if not isinstance(entry, Tagged) or not entry.tag.startswith("!new:"):
            raise RunMismatchError(f"{self.folder / HPARAMS_FILE} has no '{key}: !new:...' module entry")
        class_path = entry.tag.removeprefix("!new:")
        if class_path not in classes:
            raise RunMismatchError(
                f"{self.folder / HPARAMS_FILE}: '{key}' is a {class_path}; expected {' or '.join(classes)}"
            )
        kwargs = entry.value if isinstance(entry.value, dict) else {}
        return class_path, dict(kwargs)

    def setting(self, key: str, default: Any = None) -> Any:
        value = self.hparams.get(key, default)
        return _resolve_name(value) if isinstance(value, Tagged) else value


def _resolve_name(value: Tagged) -> Any:
    """``!name:module.attribute`` without arguments -> the attribute (e.g. the Hub cache folder)."""
    if value.tag.startswith("!name:") and not value.value:
        import importlib

        module, _, attribute = value.tag.removeprefix("!name:").rpartition(".")
        return getattr(importlib.import_module(module), attribute)
    raise RunMismatchError(f"cannot interpret the YAML value {value.tag} {value.value!r}")


# --------------------------------------------------------------------------------------------------
# Checkpoints of the quantizer stage


def _read_meta(folder: Path) -> dict:
    meta = YAML(typ="safe", pure=True).load((folder / META_FILE).read_text())
    return meta if isinstance(meta, dict) else {}


def find_quantizer_checkpoint(run: str | os.PathLike, which: str = "best") -> Path:
    """A ``CKPT+*`` folder of a quantizer-stage run.

    Arguments
    ---------
    run : the run's output or save folder, or one ``CKPT+*`` folder (then that one is taken).
    which : ``"best"`` (lowest validation loss, as the stage's own test uses) or ``"latest"``.
    """
    path = Path(run)
    if (path / META_FILE).is_file() and all((path / name).is_file() for name in QUANTIZER_FILES):
        return path
    if which not in ("best", "latest"):
        raise ValueError(f"which must be 'best' or 'latest', got {which!r}")
    save_folder = path / "save" if (path / "save").is_dir() else path
    complete = [
        folder
        for folder in sorted(save_folder.glob("CKPT+*"))
        if (folder / META_FILE).is_file() and all((folder / name).is_file() for name in QUANTIZER_FILES)
    ]
    if not complete:
        raise FileNotFoundError(
            f"No quantizer-stage checkpoint in {save_folder}: expected CKPT+* folders holding "
            f"{', '.join(QUANTIZER_FILES)} (has train_quantizer.py finished an epoch there?)"
        )
    metas = {folder: _read_meta(folder) for folder in complete}
    if which == "latest":
        return max(complete, key=lambda folder: metas[folder].get("unixtime", 0.0))
    scored = [folder for folder in complete if "loss" in metas[folder]]
    if not scored:
        raise FileNotFoundError(
            f"No checkpoint of {save_folder} has a validation loss (only intra-epoch ones); "
            "use which='latest' (--quantizer_checkpoint latest)"
        )
    return min(scored, key=lambda folder: metas[folder]["loss"])


# --------------------------------------------------------------------------------------------------
# The frozen encoder


@contextlib.contextmanager
def _preserved_rng() -> Iterator[None]:
    """Run code that seeds the global generators (Python, NumPy, torch) without changing them."""
    import numpy as np

    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        with torch.random.fork_rng():
            yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)


def _reproduce_random_encoder(run: StageRun) -> torch.nn.Module:
    """The randomly initialised encoder of an ``encoder_random_init`` run, rebuilt exactly as in training.

    Training seeds the generators when its YAML is loaded and builds the modules in file order, so the
    random encoder follows from the YAML entries up to ``encoder``: those are loaded again (the later
    ones, e.g. the checkpointer, are left out so nothing is created on disk).
    """
    from hyperpyyaml import load_hyperpyyaml

    yaml = YAML()  # round trip: keeps tags and anchors
    document = yaml.load((run.folder / HPARAMS_FILE).read_text())
    keys = list(document)
    if "encoder" not in keys:
        raise RunMismatchError(f"{run.folder / HPARAMS_FILE} has no 'encoder' entry")
    for key in keys[keys.index("encoder") + 1 :]:
        del document[key]
    stream = io.StringIO()
    yaml.dump(document, stream)
    with _preserved_rng():
        return load_hyperpyyaml(stream.getvalue())["encoder"]


def _load_encoder(
    encoder: torch.nn.Module, run: StageRun, encoder_checkpoint: str | None, allow_random_encoder: bool
) -> str:
    """Load the quantizer run's encoder weights into ``encoder``; returns where they came from."""
    if run.setting("encoder_random_init", False):
        if encoder_checkpoint is not None:
            raise RunMismatchError(
                f"{run.folder} was trained with a randomly initialised encoder (encoder_random_init: True): "
                "its compressor only fits that encoder's features, so --encoder_checkpoint cannot be used"
            )
        if not allow_random_encoder:
            raise RunMismatchError(
                f"{run.folder} was trained with a RANDOMLY INITIALISED encoder (encoder_random_init: True, "
                "a smoke-run setting): the exported codec would encode meaningless features. Pass "
                "--allow_random_encoder (allow_random_encoder=True) to export it anyway (tests, smoke runs)"
            )
        encoder.load_state_dict(_reproduce_random_encoder(run).state_dict(), strict=True)
        return f"random initialisation of {run.folder} (seed {run.setting('seed')}), reproduced"
    checkpoint = encoder_checkpoint if encoder_checkpoint is not None else run.setting("encoder_checkpoint")
    if checkpoint is not None and not Path(checkpoint).exists():
        raise FileNotFoundError(
            f"encoder weights {checkpoint} not found (encoder_checkpoint of {run.folder}, relative to the "
            "folder training ran in?): pass --encoder_checkpoint <wavlm6.pt | official-format folder>"
        )
    hub_id = run.setting("encoder_hub", WAVLM6_HUB_ID)
    load_frozen_encoder(
        encoder, checkpoint=checkpoint, cache_folder=run.setting("cache_folder"), hub_id=hub_id
    )
    return str(checkpoint) if checkpoint is not None else f"the cached encoder of {hub_id}"


# --------------------------------------------------------------------------------------------------
# Runs -> codec


def _differences(first: Mapping, second: Mapping) -> list[str]:
    return [
        f"{key}: {first.get(key, '<unset>')!r} vs {second.get(key, '<unset>')!r}"
        for key in sorted(set(first) | set(second))
        if first.get(key) != second.get(key)
    ]


def _codec_config(quantizer_run: StageRun, decoder_run: StageRun) -> dict[str, Any]:
    """The ten FocalCodec constructor arguments of the two runs, after checking they fit together."""
    if not quantizer_run.has_module("compressor"):
        swapped = (
            " (did you swap the quantizer and decoder runs?)" if quantizer_run.has_module("generator") else ""
        )
        raise RunMismatchError(f"{quantizer_run.folder} is not a quantizer-stage run: no compressor{swapped}")
    if not decoder_run.has_module("generator"):
        swapped = (
            " (did you swap the quantizer and decoder runs?)" if decoder_run.has_module("compressor") else ""
        )
        raise RunMismatchError(f"{decoder_run.folder} is not a decoder-stage run: no generator{swapped}")
    _, encoder = quantizer_run.module_kwargs("encoder", _ENCODER_CLASSES)
    _, compressor = quantizer_run.module_kwargs("compressor", _COMPRESSOR_CLASSES)
    quantizer_class, quantizer = quantizer_run.module_kwargs("quantizer", _QUANTIZER_CLASSES)
    _, decompressor = quantizer_run.module_kwargs("decompressor", _DECOMPRESSOR_CLASSES)
    _, decoder_encoder = decoder_run.module_kwargs("encoder", _ENCODER_CLASSES)
    _, decoder = decoder_run.module_kwargs("generator", _DECODER_CLASSES)

    differences = _differences(encoder, decoder_encoder)
    random_init = [bool(run.setting("encoder_random_init")) for run in (quantizer_run, decoder_run)]
    if random_init[0] != random_init[1]:
        differences.append(f"encoder_random_init: {random_init[0]} vs {random_init[1]}")
    if differences:
        raise RunMismatchError(
            f"The two stages were trained on different encoders (quantizer run {quantizer_run.folder} vs "
            f"decoder run {decoder_run.folder}): " + "; ".join(differences) + ". Both stages must use the "
            "same frozen encoder (the encoder_* settings of the two YAMLs)"
        )
    if quantizer_class.startswith("speechbrain."):
        code_dim = quantizer["code_dim"]
    else:
        code_dim = int(math.log2(quantizer["codebook_size"]))
    dims = {
        "encoder dim": encoder["dim"],
        "compressor input_dim": compressor["input_dim"],
        "decompressor output_dim": decompressor["output_dim"],
        "decoder (generator) input_dim": decoder.get("input_dim", decoder.get("input_channels")),
    }
    if len(set(dims.values())) != 1:
        raise RunMismatchError(
            "Feature dimensions do not match: "
            + ", ".join(f"{name} {value}" for name, value in dims.items())
            + f" (quantizer run {quantizer_run.folder}, decoder run {decoder_run.folder}); the decoder stage "
            "must be trained on the features of the same encoder (generator_input_dim = encoder_dim)"
        )
    if not compressor["output_dim"] == code_dim == decompressor["input_dim"]:
        raise RunMismatchError(
            f"compressor output_dim {compressor['output_dim']}, quantizer code_dim {code_dim} and "
            f"decompressor input_dim {decompressor['input_dim']} differ in {quantizer_run.folder}"
        )
    return {
        "encoder_name": "WavLM",
        "encoder_config": encoder,
        "compressor_name": "FocalEncoder",
        "compressor_config": compressor,
        "quantizer_name": "BinarySphericalQuantizer",
        "quantizer_config": {"codebook_size": 2**code_dim},
        "decompressor_name": "FocalDecoder",
        "decompressor_config": decompressor,
        "decoder_name": "Vocos",
        "decoder_config": decoder,
    }


def _load_part(module: torch.nn.Module, file: Path, part: str) -> None:
    try:
        module.load_state_dict(load_state_dict_file(file), strict=True)
    except RuntimeError as error:
        raise RunMismatchError(
            f"{file} does not fit the {part} settings of its run's YAML:\n{error}"
        ) from error


def _check_same_random_encoder(
    quantizer_run: StageRun, decoder_run: StageRun, encoder: torch.nn.Module
) -> None:
    other = _reproduce_random_encoder(decoder_run).state_dict()
    if any(not torch.equal(value, other[key]) for key, value in encoder.state_dict().items()):
        raise RunMismatchError(
            f"The two stages used different random encoders (seed {quantizer_run.setting('seed')} in "
            f"{quantizer_run.folder}, seed {decoder_run.setting('seed')} in {decoder_run.folder}): the "
            "decoder was trained on other features than the compressor"
        )


def codec_from_runs(
    quantizer_run: str | os.PathLike,
    decoder_run: str | os.PathLike,
    quantizer_checkpoint: str = "best",
    encoder_checkpoint: str | os.PathLike | None = None,
    allow_random_encoder: bool = False,
) -> FocalCodec:
    """The whole codec of a quantizer-stage run and a decoder-stage run.

    Arguments
    ---------
    quantizer_run : output folder of ``train_quantizer.py`` (e.g. ``results/bsq/0``), or one of its
        ``CKPT+*`` folders.
    decoder_run : output folder of ``train_decoder.py`` (e.g. ``results/vocos/0``; the checkpoint with the
        highest epoch is taken), or one of its ``CKPT+*`` folders or ``generator.ckpt`` files.
    quantizer_checkpoint : ``"best"`` (lowest validation loss) or ``"latest"`` when a run folder is given.
    encoder_checkpoint : the frozen encoder's weights (``wavlm6.pt``, a FocalCodec weight file or an
        official-format folder); by default those the quantizer run used (its ``encoder_checkpoint``, or
        the cached download of ``encoder_hub``).
    allow_random_encoder : accept a run trained with ``encoder_random_init: True`` (its seeded random
        encoder is rebuilt); for tests and smoke runs only.

    Returns
    -------
    The codec in eval mode with frozen parameters (``to_pretrained`` writes the official format).
    """
    quantizer = StageRun.read(quantizer_run)
    decoder = StageRun.read(decoder_run)
    config = _codec_config(quantizer, decoder)
    checkpoint = find_quantizer_checkpoint(quantizer.path, quantizer_checkpoint)
    generator_file = find_generator_checkpoint(decoder.path)

    codec = FocalCodec(**config)
    source = _load_encoder(
        codec.encoder,
        quantizer,
        None if encoder_checkpoint is None else os.fspath(encoder_checkpoint),
        allow_random_encoder,
    )
    if quantizer.setting("encoder_random_init", False):
        _check_same_random_encoder(quantizer, decoder, codec.encoder)
    else:
        sources = [
            (run.setting("encoder_checkpoint"), run.setting("encoder_hub")) for run in (quantizer, decoder)
        ]
        if sources[0] != sources[1]:
            logger.warning(
                f"The two runs name different encoder weights ({sources[0]} vs {sources[1]}); make sure "
                "they are the same WavLM6 weights"
            )
    _load_part(codec.compressor, checkpoint / "compressor.ckpt", "compressor")
    _load_part(codec.decompressor, checkpoint / "decompressor.ckpt", "decompressor")
    mask = load_state_dict_file(checkpoint / "quantizer.ckpt").get("mask")
    if mask is not None and tuple(mask.shape) != (codec.quantizer.dim,):
        raise RunMismatchError(
            f"{checkpoint / 'quantizer.ckpt'} is not a {codec.quantizer.dim}-bit quantizer"
        )
    _load_part(codec.decoder, generator_file, "generator")
    logger.info(f"Encoder: {source}")
    logger.info(f"Compressor, decompressor: {checkpoint}")
    logger.info(f"Decoder: {generator_file}")
    return codec.requires_grad_(False).eval()


# --------------------------------------------------------------------------------------------------
# Fine-tuning: recipe modules <- a pretrained codec

# keyword -> (FocalCodec part, prefix of the YAML settings of that module)
_MODULE_KEYWORDS = {
    "encoder": ("encoder", "encoder_"),
    "compressor": ("compressor", "compressor_"),
    "quantizer": ("quantizer", "quantizer_"),
    "decompressor": ("decompressor", "decompressor_"),
    "decoder": ("decoder", "decoder_"),
    "generator": ("decoder", "generator_"),
}


def _yaml_settings(config: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """A pretrained part's config as the recipe's YAML settings (``compressor_focal_window: 14`` ...)."""
    if prefix == "quantizer_":
        return {"quantizer_code_dim": int(math.log2(config["codebook_size"]))}
    settings = {}
    for key, value in config.items():
        key = {"input_channels": "input_dim"}.get(key, key)
        if key != "padding":
            settings[prefix + key] = value
    return settings


def _setting_mismatches(settings: Mapping[str, Any], hparams: Mapping[str, Any]) -> list[str]:
    mismatches = []
    for key, value in settings.items():
        if key in hparams and key.split("_", 1)[1] not in _TRAINING_ONLY:
            current = hparams[key]
            if isinstance(current, tuple):
                current = list(current)
            if current != value:
                mismatches.append(f"{key}: {value!r}  # YAML has {hparams[key]!r}")
    return mismatches


def init_from_pretrained(
    source: str | os.PathLike,
    hparams: Mapping[str, Any] | None = None,
    hf_kwargs: Mapping[str, Any] | None = None,
    **modules: torch.nn.Module,
) -> dict[str, Any]:
    """Initialise recipe modules with the weights of a pretrained codec (fine-tuning).

    Arguments
    ---------
    source : an official-format folder (``config.json`` + ``model.safetensors``/``model.pt``, current or
        legacy layout) or a Hugging Face Hub repo id such as ``"lucadellalib/focalcodec_50hz"``.
    hparams : the recipe's hyperparameters; when given, every ``<module>_*`` setting that changes what the
        module computes must equal the pretrained config (an error lists the lines to put in the YAML).
    hf_kwargs : passed to ``huggingface_hub.hf_hub_download`` (``revision``, ``cache_dir``, ...).
    **modules : which modules to initialise: ``encoder``, ``compressor``, ``decompressor``, ``decoder``
        (the quantizer stage's Vocos) or ``generator`` (the decoder stage's Vocos), each loaded strictly
        from the codec's weights of that part. ``quantizer`` (no weights) is only checked for its bits.

    Returns
    -------
    The pretrained codec's config (the ten FocalCodec arguments).
    """
    unknown = sorted(set(modules) - set(_MODULE_KEYWORDS))
    if unknown:
        raise ValueError(f"unknown modules {unknown}; expected some of {', '.join(_MODULE_KEYWORDS)}")
    if not Path(source).exists() and not looks_like_hub_id(source):
        raise FileNotFoundError(
            f"{source} does not exist: give an official-format folder (config.json + model.safetensors) "
            "or a Hugging Face Hub repo id such as lucadellalib/focalcodec_50hz"
        )
    codec = FocalCodec.from_pretrained(source, **dict(hf_kwargs or {}))
    config = codec.to_config()

    mismatches = []
    for keyword in modules:
        part, prefix = _MODULE_KEYWORDS[keyword]
        if hparams is not None:
            mismatches += _setting_mismatches(_yaml_settings(config[f"{part}_config"], prefix), hparams)
    if mismatches:
        raise PretrainedMismatchError(
            f"The YAML settings do not match the pretrained codec {source}; set:\n  "
            + "\n  ".join(mismatches)
        )

    for keyword, module in modules.items():
        part, prefix = _MODULE_KEYWORDS[keyword]
        if part == "quantizer":
            bits = int(math.log2(config["quantizer_config"]["codebook_size"]))
            dims = [int(buffer.numel()) for name, buffer in module.named_buffers() if name == "mask"]
            if dims and dims[0] != bits:
                raise PretrainedMismatchError(
                    f"The quantizer has {dims[0]} bits, the pretrained codec {source} {bits}; set:\n"
                    f"  quantizer_code_dim: {bits}"
                )
            continue
        try:
            module.load_state_dict(getattr(codec, part).state_dict(), strict=True)
        except RuntimeError as error:
            settings = _yaml_settings(config[f"{part}_config"], prefix)
            raise PretrainedMismatchError(
                f"The {keyword} does not fit the {part} of the pretrained codec {source}, whose "
                "settings are:\n  "
                + "\n  ".join(f"{key}: {value!r}" for key, value in settings.items())
                + f"\n{error}"
            ) from error
        logger.info(f"Initialised the {keyword} from the {part} of {source}")
    return config
