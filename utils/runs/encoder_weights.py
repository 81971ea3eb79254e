"""Every source of WavLM6 encoder weights: a local state dict, FocalCodec weight file or official folder, or
the encoder of the released 50 Hz codec (``lucadellalib/focalcodec_50hz``), downloaded once and cached as
``<cache_folder>/wavlm6.pt``; and the check that causal weights go to a causal encoder (and the reverse).
"""

import json
import logging
import os
from pathlib import Path

import torch
from speechbrain.utils.distributed import run_on_main

from focalcodec.checkpoint import load_state_dict_file, remap_legacy_state_dict
from focalcodec.files import atomic_write
from focalcodec.hub import CONFIG_FILE, WEIGHT_FILES, Location, weight_file
from focalcodec.wavlm import WavLM

__all__ = [
    "WAVLM6_HUB_ID",
    "EncoderMismatchError",
    "EncoderWeightsUnavailableError",
    "encoder_state_dict",
    "require_causality",
    "stated_causality",
    "wavlm6_state_dict",
]

logger = logging.getLogger(__name__)

WAVLM6_HUB_ID = "lucadellalib/focalcodec_50hz"
CACHE_NAME = "wavlm6.pt"


class EncoderWeightsUnavailableError(RuntimeError):
    """The WavLM6 weights could be neither found locally nor downloaded."""


class EncoderMismatchError(ValueError):
    """Encoder weights given for a module they do not fit (a causal encoder for a non-causal one, ...)."""


def _kind(causal: bool) -> str:
    return "causal" if causal else "non-causal (full-context)"


def require_causality(encoder: torch.nn.Module, causal: bool | None, source: str, role: str) -> None:
    """Refuse the weights of a causal encoder for a non-causal ``encoder``, and the reverse: both have the
    same weight names and shapes, so they would load silently and compute other features.

    Arguments
    ---------
    encoder : the WavLM that would load them (its ``config["causal"]``).
    causal : whether the source is causal (``None``: it does not say, e.g. a bare state dict).
    source : the source, as the user gave it (e.g. ``--encoder_checkpoint <path>``).
    role : what ``encoder`` is, with its YAML key (e.g. "this stage's frozen teacher (encoder)").
    """
    expected = bool(encoder.config["causal"])
    if causal is None or bool(causal) == expected:
        return
    hint = "" if expected else f" (the full-context WavLM6 is the encoder of {WAVLM6_HUB_ID})"
    raise EncoderMismatchError(
        f"{source} holds a {_kind(bool(causal))} WavLM encoder, but {role} is {_kind(expected)}. Causal "
        "and non-causal encoders have the same weight names and shapes, so it would load silently and "
        f"compute other features. Give a {_kind(expected)} encoder there{hint}."
    )


def stated_causality(checkpoint: str | os.PathLike) -> bool | None:
    """Whether an encoder checkpoint says it is causal: an official-format folder (or its weight file) does
    in its ``config.json``; a bare state dict does not (``None``)."""
    path = Path(checkpoint)
    folder = path if path.is_dir() else path.parent
    config_file = folder / CONFIG_FILE
    if not config_file.is_file() or (path.is_file() and path.name not in WEIGHT_FILES):
        return None
    config = json.loads(config_file.read_text(encoding="utf-8")).get("encoder_config", {})
    return config.get("causal")


def wavlm6_state_dict(path: str | os.PathLike, encoder: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Read WavLM6 weights for ``encoder`` from any of the accepted sources.

    Arguments
    ---------
    path : a WavLM6 state_dict file (e.g. ``wavlm6.pt``), a full FocalCodec weight file
        (``model.safetensors``/``model.pt``, current or legacy layout), or an official-format folder.
    encoder : the module that will load the weights (its keys drive the legacy remap).
    """
    state = load_state_dict_file(weight_file(path))
    if any(key.startswith("encoder.feature_extractor.") for key in state):  # a whole FocalCodec
        targets = [f"encoder.{key}" for key in encoder.state_dict()]
        codec_state = remap_legacy_state_dict(
            {k: v for k, v in state.items() if k.startswith("encoder.")}, targets
        )
        state = {key.removeprefix("encoder."): value for key, value in codec_state.items()}
    return state


def _download_wavlm6(cache_file: Path, hub_id: str) -> None:
    """Fetch the released codec from the Hub and cache its encoder weights (main process only)."""
    if cache_file.is_file():
        return
    try:
        downloaded = Location(None, hub_id).fetch(WEIGHT_FILES)
    except OSError as error:
        raise EncoderWeightsUnavailableError(
            f"Could not get the WavLM6 encoder weights: the released FocalCodec checkpoint '{hub_id}' "
            f"could not be downloaded from the Hugging Face Hub ({str(error).splitlines()[0]}).\n"
            f"Either\n"
            f"  * run once with network access (the weights are then cached as {cache_file}), or\n"
            f"  * copy config.json and model.safetensors of https://huggingface.co/{hub_id} to a folder "
            f"and pass --encoder_checkpoint <that folder> (a WavLM6 state_dict file works too), or\n"
            f"  * for smoke tests only, pass --encoder_random_init True (random, meaningless features)."
        ) from error
    state = wavlm6_state_dict(downloaded, WavLM())
    atomic_write(cache_file, lambda tmp: torch.save(state, tmp))
    logger.info(f"Cached the WavLM6 encoder of {hub_id} as {cache_file}")


def encoder_state_dict(
    encoder: torch.nn.Module,
    checkpoint: str | os.PathLike | None = None,
    hub: str = WAVLM6_HUB_ID,
    cache_folder: str | os.PathLike | None = None,
) -> dict[str, torch.Tensor]:
    """WavLM6 weights for ``encoder``: from a local ``checkpoint`` (see :func:`wavlm6_state_dict`), or the
    encoder of the released codec ``hub``, downloaded once (on the main process) and cached as
    ``<cache_folder>/wavlm6.pt`` (the Hugging Face cache by default)."""
    if checkpoint is None:
        if cache_folder is None:
            from huggingface_hub.constants import HF_HUB_CACHE

            cache_folder = HF_HUB_CACHE
        checkpoint = Path(cache_folder) / CACHE_NAME
        run_on_main(_download_wavlm6, kwargs={"cache_file": checkpoint, "hub_id": hub})
    return wavlm6_state_dict(checkpoint, encoder)
