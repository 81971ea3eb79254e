"""The decoder of a decoder-stage run, frozen: what the quantizer-like stages listen through."""

import logging
import os

from torch import nn

from focalcodec.checkpoint import load_state_dict_file
from utils.runs.fingerprint import encoder_fingerprint
from utils.runs.folder import RunFolderError
from utils.runs.read import read_run

__all__ = ["load_decoder"]

logger = logging.getLogger(__name__)


def load_decoder(path: str | os.PathLike, decoder: nn.Module, encoder: nn.Module | None = None) -> nn.Module:
    """The decoder stage's trained decoder, frozen (what the quantizer stage listens through).

    Arguments
    ---------
    path : the decoder stage's output folder (its checkpoint with the highest epoch), one of its ``CKPT+*``
        folders or ``generator.ckpt`` files: the decoder is then built from the run's ``parts.json`` (the
        caller's ``decoder_*`` settings are not used); or a bare ``generator.ckpt`` outside any run, loaded
        into ``decoder`` (strictly: a wrong file is an error).
    decoder : the decoder built from the YAML, for a bare file.
    encoder : the caller's frozen encoder: a warning says when the decoder was trained on another one.
    """
    try:
        run = read_run(path)
    except FileNotFoundError:
        run = None  # a bare weight file (or nothing there: loading it says so)
    if run is None:
        try:
            decoder.load_state_dict(load_state_dict_file(path), strict=True)
        except RuntimeError as error:
            raise RunFolderError(
                f"The decoder checkpoint {path} does not fit the decoder_* settings of this YAML (they must "
                f"equal the generator_* settings of the decoder stage):\n{error}"
            ) from error
        logger.info(f"Loaded the trained decoder from {path}")
        return decoder.requires_grad_(False).eval()
    run.require_stage("decoder")
    decoder = run.load_part("decoder", run.parts["decoder"].build())
    if encoder is not None and run.encoder_sha256 not in (None, encoder_fingerprint(encoder)):
        logger.warning(f"The decoder of {run.folder} was trained on the features of another encoder")
    logger.info(f"Loaded the trained decoder of {run.folder} ({run.checkpoint()})")
    return decoder.requires_grad_(False).eval()
