"""Loading a stage's frozen encoder from wherever its weights are: a local file or folder, the download of
the released codec's encoder, a FocalCodec-Stream encoder-distillation run, or none (random, smoke runs)."""

import logging
from pathlib import Path
from typing import Any

import torch

from utils.runs.encoder_weights import WAVLM6_HUB_ID, encoder_state_dict, require_causality, stated_causality
from utils.runs.folder import is_run
from utils.runs.stream_chain import distilled_encoder_file

__all__ = ["load_frozen_encoder"]

logger = logging.getLogger(__name__)


def load_frozen_encoder(
    encoder: torch.nn.Module,
    checkpoint: str | None = None,
    cache_folder: str | None = None,
    hub_id: str = WAVLM6_HUB_ID,
    random_init: bool = False,
    role: str = "this stage's frozen encoder (encoder)",
) -> dict[str, Any]:
    """Load the encoder weights on every process (docs/deviations.md #6) and freeze it.

    Arguments
    ---------
    encoder : the WavLM built from the YAML; it is put in eval mode with ``requires_grad=False``.
    checkpoint : local weights (see :func:`~utils.runs.encoder_weights.wavlm6_state_dict`), or the output
        folder of the FocalCodec-Stream encoder-distillation stage (its best student, see
        :func:`~utils.runs.stream_chain.distilled_encoder_file`); when ``None`` the cached download is used.
    cache_folder : where ``wavlm6.pt`` is cached (the Hugging Face cache by default).
    hub_id : the released codec whose encoder is taken.
    random_init : keep the random initialisation (smoke runs and tests only).
    role : what ``encoder`` is, for the error raised when ``checkpoint`` says it is causal and ``encoder``
        is not, or the reverse (:func:`require_causality`).

    Returns
    -------
    Where the weights came from, as the run folder records it (:mod:`utils.runs.folder`):
    ``{"random_init": True}``, ``{"checkpoint": <absolute path>}`` or ``{"hub": ..., "cache_folder": ...}``.
    """
    encoder.requires_grad_(False).eval()
    if random_init:
        logger.warning(
            "!"
            * 80
            + "\nencoder_random_init is set: the WavLM6 encoder is RANDOMLY INITIALISED. Its features "
            "are meaningless; use this for smoke runs and tests only.\n" + "!" * 80
        )
        return {"random_init": True}
    if checkpoint is not None and is_run(checkpoint):
        checkpoint = str(distilled_encoder_file(checkpoint, encoder))
    elif checkpoint is not None:
        require_causality(encoder, stated_causality(checkpoint), f"--encoder_checkpoint {checkpoint}", role)
    encoder.load_state_dict(encoder_state_dict(encoder, checkpoint, hub_id, cache_folder), strict=True)
    if checkpoint is not None:
        logger.info(f"Loaded the frozen WavLM6 encoder from {checkpoint}")
        return {"checkpoint": str(Path(checkpoint).resolve())}
    logger.info(f"Loaded the frozen WavLM6 encoder of {hub_id}")
    return {"hub": hub_id, "cache_folder": None if cache_folder is None else str(cache_folder)}
