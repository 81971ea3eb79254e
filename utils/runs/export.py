"""Recipe runs -> one ``FocalCodec`` in the official format: the quantizer stage's compressor, quantizer
and decompressor, the decoder stage's decoder and the frozen encoder both were trained on, each read from
its run folder (:mod:`utils.runs.folder`; ``export_codec.py`` writes the result with ``to_pretrained``).
FocalCodec-Stream: the joint stage's run takes the quantizer run's place, with its trained causal encoder;
its teacher is then the frozen encoder the decoder stage must share."""

import logging
import os

import torch

from focalcodec.codec import FocalCodec
from utils.runs.encoder_weights import wavlm6_state_dict
from utils.runs.folder import RunFolder, RunFolderError
from utils.runs.read import read_run

__all__ = ["RunMismatchError", "codec_from_runs"]

logger = logging.getLogger(__name__)

QUANTIZER_PARTS = ("compressor", "quantizer", "decompressor")


class RunMismatchError(RunFolderError):
    """The quantizer-stage and decoder-stage runs do not fit together."""


def _check_fit(quantizer: RunFolder, decoder: RunFolder) -> None:
    """The two runs share the frozen encoder (the joint stage's teacher) and their feature sizes agree."""
    encoders = quantizer.frozen_encoder.config, decoder.frozen_encoder.config
    differences = [
        f"{key}: {encoders[0].get(key, '<unset>')!r} vs {encoders[1].get(key, '<unset>')!r}"
        for key in sorted(set(encoders[0]) | set(encoders[1]))
        if encoders[0].get(key) != encoders[1].get(key)
    ]
    digests = quantizer.encoder_sha256, decoder.encoder_sha256
    if None not in digests and digests[0] != digests[1]:
        differences.append("the encoder weights differ (encoder_sha256 of parts.json)")
    if differences:
        raise RunMismatchError(
            f"The two stages were trained on different encoders (quantizer run {quantizer.folder} vs decoder "
            f"run {decoder.folder}): "
            + "; ".join(differences)
            + ". Both stages must use the same frozen encoder"
        )
    dims = {
        "encoder dim": encoders[0]["dim"],
        "compressor input_dim": quantizer.parts["compressor"].config["input_dim"],
        "decompressor output_dim": quantizer.parts["decompressor"].config["output_dim"],
        "decoder input_dim": decoder.parts["decoder"].config["input_dim"],
    }
    if len(set(dims.values())) != 1:
        raise RunMismatchError(
            "Feature dimensions do not match: "
            + ", ".join(f"{name} {value}" for name, value in dims.items())
            + f" (quantizer run {quantizer.folder}, decoder run {decoder.folder})"
        )


def _encoder_state(
    quantizer: RunFolder, encoder_checkpoint: str | os.PathLike | None, allow_random_encoder: bool
) -> dict[str, torch.Tensor] | None:
    """The frozen encoder's weights: the quantizer run's, or ``encoder_checkpoint`` (checked against it);
    ``None`` for a joint run, whose encoder is a trained part (its random teacher is refused all the same)."""
    trained = quantizer.parts["encoder"].recoverable is not None
    if encoder_checkpoint is not None and (trained or quantizer.random_encoder):
        raise RunMismatchError(
            f"{quantizer.folder} was trained with a randomly initialised encoder (encoder_random_init: True) "
            "or trained its encoder: its compressor only fits that encoder's features, so "
            "--encoder_checkpoint cannot be used"
        )
    if quantizer.random_encoder and not allow_random_encoder:
        raise RunMismatchError(
            f"{quantizer.folder} was trained with a RANDOMLY INITIALISED encoder (encoder_random_init: "
            "True, a smoke-run setting): the exported codec would encode meaningless features. Pass "
            "--allow_random_encoder (allow_random_encoder=True) to export it anyway (tests, smoke runs)"
        )
    if trained:
        return None
    if encoder_checkpoint is None:
        return quantizer.encoder_state_dict()
    state = wavlm6_state_dict(encoder_checkpoint, quantizer.frozen_encoder.build())
    quantizer.check_encoder(state, f"the weights of {encoder_checkpoint}")
    return state


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
    quantizer_run : output folder of ``train_quantizer.py`` (e.g. ``results/bsq/0``) or of ``train_joint.py``
        (FocalCodec-Stream: its trained encoder is taken too), or one of their ``CKPT+*`` folders.
    decoder_run : output folder of ``train_decoder.py`` (e.g. ``results/vocos/0``; the checkpoint with the
        highest epoch is taken), or one of its ``CKPT+*`` folders or ``generator.ckpt`` files.
    quantizer_checkpoint : ``"best"`` (lowest validation loss) or ``"latest"`` when a run folder is given.
    encoder_checkpoint : the frozen encoder's weights (``wavlm6.pt``, a FocalCodec weight file or an
        official-format folder); by default those the runs recorded (and checked against them). Not for a
        joint run, whose encoder is trained.
    allow_random_encoder : accept runs trained with ``encoder_random_init: True`` (their saved random
        encoder is used); for tests and smoke runs only.

    Returns
    -------
    The codec in eval mode with frozen parameters (``to_pretrained`` writes the official format).
    """
    quantizer, decoder = read_run(quantizer_run), read_run(decoder_run)
    quantizer.require_stage("quantizer", "joint")
    decoder.require_stage("decoder")
    _check_fit(quantizer, decoder)
    parts = {**quantizer.parts, "decoder": decoder.parts["decoder"]}
    codec = FocalCodec(
        **{
            f"{name}_{kind}": getattr(part, kind)
            for name, part in parts.items()
            for kind in ("name", "config")
        }
    )
    checkpoint = quantizer.checkpoint(quantizer_checkpoint)
    trained = ["compressor", "decompressor"]
    frozen_state = _encoder_state(quantizer, encoder_checkpoint, allow_random_encoder)
    if frozen_state is None:  # the joint stage's trained encoder
        trained.insert(0, "encoder")
    else:
        codec.encoder.load_state_dict(frozen_state, strict=True)
    for name in trained:
        quantizer.load_part(name, getattr(codec, name), checkpoint)
    decoder.load_part("decoder", codec.decoder)
    logger.info(f"{', '.join(trained).capitalize()}: {checkpoint}; decoder: {decoder.checkpoint()}")
    return codec.requires_grad_(False).eval()
