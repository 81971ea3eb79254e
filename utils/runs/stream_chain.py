"""How each FocalCodec-Stream stage starts from the run folder of the stage before it (utils/runs/folder.py).

    stage 2 (posemb)    -> stage 3: the student is the teacher with the distilled causal positional conv
    stage 3 (encoder)   -> stage 4: the distilled causal encoder is the frozen encoder (encoder_checkpoint)
    stage 4 (quantizer) -> stage 5: compressor, quantizer, decompressor, and the encoder stage 4 trained on

Every hand-over is checked: the stage that distilled a student must have used this stage's teacher, the
architectures must match (an error lists the YAML settings to change), every weight is loaded strictly, and
the one part stage 5 adds, the decompressor's refiner, is named as such (docs/deviations.md #24-27). The
chain: docs/stream.md.
"""

import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from focalcodec.wavlm import WavLM
from utils.runs.finetune import (
    PretrainedCodec,
    PretrainedMismatchError,
    init_from_pretrained,
    pretrained_codec,
    setting_mismatches,
)
from utils.runs.fingerprint import encoder_fingerprint
from utils.runs.folder import RunFolder, RunFolderError
from utils.runs.read import read_run

__all__ = [
    "distilled_encoder_file",
    "freeze_positions",
    "init_joint_from_codec",
    "init_joint_stage",
    "init_student_encoder",
    "load_with_new_refiner",
]

logger = logging.getLogger(__name__)


def freeze_positions(encoder: WavLM) -> WavLM:
    """Freeze what a distilled causal encoder keeps as it is: its positional convolution (the stage-2
    one) and its relative position embedding (the teacher's); the rest stays trainable."""
    encoder.encoder.positional_embedding.requires_grad_(False)
    encoder.encoder.relative_embedding.requires_grad_(False)
    return encoder


def _require(mismatches: list[str], what: str) -> None:
    if mismatches:
        raise PretrainedMismatchError(f"{what}; set:\n  " + "\n  ".join(mismatches))


def _require_teacher(run: RunFolder, teacher: nn.Module, what: str) -> None:
    """``run`` (a distillation run) was distilled from ``teacher``."""
    if run.encoder_sha256 is not None and run.encoder_sha256 != encoder_fingerprint(teacher):
        raise RunFolderError(
            f"{what} of {run.folder} was distilled from another teacher than this stage's encoder: give "
            "every stage the same encoder_checkpoint / encoder_hub (and seed, for a random encoder)"
        )


def init_student_encoder(student: WavLM, teacher: WavLM, posemb_run: str | os.PathLike) -> WavLM:
    """Stage 3's student: the teacher's weights with the causal positional embedding distilled by stage 2
    (built in memory, never cached on disk: docs/deviations.md #25), its positional and relative position
    embeddings frozen.

    Arguments
    ---------
    student : the causal WavLM of the YAML (``student_encoder``).
    teacher : the frozen encoder, weights loaded.
    posemb_run : the stage-2 output folder (its best checkpoint), or one of its ``CKPT+*`` folders.
    """
    run = read_run(posemb_run)
    run.require_stage("posemb")
    config = run.parts["posemb"].config
    wanted = {"dim": "dim", "kernel_size": "conv_pos", "groups": "conv_pos_groups", "causal": "causal"}
    _require(
        [
            f"student_encoder_{key}: {config[name]!r}  # YAML has {student.config[key]!r}"
            for name, key in wanted.items()
            if student.config[key] != config[name]
        ],
        f"The positional embedding of {run.folder} does not fit the student encoder",
    )
    _require_teacher(run, teacher, "The positional embedding")
    student.load_state_dict(teacher.state_dict(), strict=True)
    run.load_part("posemb", student.encoder.positional_embedding)
    logger.info(f"Student encoder: the teacher with the positional embedding of {run.checkpoint()}")
    return freeze_positions(student)


def distilled_encoder_file(run_path: str | os.PathLike, encoder: WavLM) -> Path:
    """The weights of the student of a stage-3 run (its best checkpoint, or the ``CKPT+*`` folder given), to
    be loaded into ``encoder`` (stage 4's frozen encoder), whose architecture must be the student's."""
    run = read_run(run_path)
    run.require_stage("encoder")
    settings = {f"encoder_{key}": value for key, value in encoder.config.items()}
    _require(
        setting_mismatches(run.parts["encoder"], "encoder_", settings),
        f"The encoder distilled in {run.folder} does not fit this encoder",
    )
    return run.checkpoint() / f"{run.parts['encoder'].recoverable}.ckpt"


def load_with_new_refiner(decompressor: nn.Module, state: dict[str, torch.Tensor], init: str) -> None:
    """Load a decompressor trained without a refiner (stage 4, ``lookahead_size: 0``) into one with a refiner
    (stage 5): every other weight strictly, the refiner alone missing, then initialised: ``identity`` (its
    output projection zeroed, so the residual refiner passes stage 4's output through unchanged) or
    ``random`` (PyTorch's default init, docs/deviations.md #27). A state that has a refiner is loaded
    strictly."""
    if init not in ("identity", "random"):
        raise ValueError(f"decompressor_refiner_init must be identity or random, got {init!r}")
    missing, unexpected = decompressor.load_state_dict(state, strict=False)
    if unexpected or any(not key.startswith("refiner.") for key in missing):
        decompressor.load_state_dict(state, strict=True)  # raises, listing every mismatch
    if missing and init == "identity":
        nn.init.zeros_(decompressor.refiner.out_proj.weight)
        nn.init.zeros_(decompressor.refiner.out_proj.bias)
    if missing:
        logger.info(f"New refiner in the decompressor, initialised: {init}")


def _student_source(run: RunFolder, teacher: nn.Module) -> RunFolder:
    """The stage-3 run whose student stage 4 was trained on, checked against this stage's teacher."""
    file = run.encoder_weights.get("checkpoint")
    if file is None or not Path(file).is_file():
        raise RunFolderError(
            f"{run.folder} was not trained on a distilled encoder that still exists ({run.encoder_weights}): "
            "stage 5 starts from a stage-4 run made with --encoder_checkpoint <stage-3 output folder>"
        )
    source = read_run(file)
    source.require_stage("encoder")
    _require_teacher(source, teacher, "The encoder")
    return source


def init_joint_from_codec(
    hparams: dict[str, Any], pretrained: PretrainedCodec, listening: dict[str, nn.Module]
) -> None:
    """Stage 5 starts from a whole causal codec (``init_from``: e.g. a released causal checkpoint): its
    encoder initialises the trained ``student_encoder`` (positional and relative embeddings then frozen),
    its compressor, quantizer and decompressor theirs, and its decoder the ``listening`` one when given
    (:func:`utils.runs.finetune.listening_decoder`); all strictly. The frozen teacher is not taken from it: it
    comes from ``encoder_checkpoint`` / ``encoder_hub`` (utils/training/recipe.py, ``init_from_encoder``)."""
    trained = ("student_encoder", "compressor", "quantizer", "decompressor")
    init_from_pretrained(pretrained, hparams=hparams, **{key: hparams[key] for key in trained}, **listening)
    freeze_positions(hparams["student_encoder"])


def init_joint_stage(hparams: dict[str, Any]) -> None:
    """Stage 5 starts where stage 4 ended (``quantizer_checkpoint``, its output folder): its compressor,
    quantizer and decompressor (best checkpoint), a new refiner (``decompressor_refiner_init``), and as the
    trained ``student_encoder`` the distilled encoder stage 4 was trained on, positional and relative
    embeddings frozen. Settings that differ from stage 4's are an error listing them."""
    if hparams["quantizer_checkpoint"] is None:
        raise SystemExit(
            "error: stage 5 starts from the stage-4 output folder (--quantizer_checkpoint "
            "results/stream/bsq/0) or from a causal codec (--init_from, e.g. "
            "lucadellalib/focalcodec_50hz_4k_causal)"
        )
    run = read_run(hparams["quantizer_checkpoint"])
    run.require_stage("quantizer")
    _student_source(run, hparams["encoder"])
    pretrained = pretrained_codec(run.path)
    student = hparams["student_encoder"]
    init_from_pretrained(
        pretrained,
        hparams=hparams,
        student_encoder=student,
        compressor=hparams["compressor"],
        quantizer=hparams["quantizer"],
    )
    if run.encoder_sha256 is not None and encoder_fingerprint(student) != run.encoder_sha256:
        raise RunFolderError(
            f"The distilled encoder {run.encoder_weights['checkpoint']} has changed since {run.folder} was "
            "trained on it (stage 3 went on?): rerun stage 4 on the current stage-3 run"
        )
    lookahead = ("decompressor_lookahead_size",)  # stage 4 has none (no refiner), stage 5 has one
    _require(
        setting_mismatches(pretrained.parts["decompressor"], "decompressor_", hparams, ignore=lookahead),
        f"The decompressor does not fit the one of {run.folder}",
    )
    load_with_new_refiner(
        hparams["decompressor"], pretrained.state["decompressor"], hparams["decompressor_refiner_init"]
    )
    freeze_positions(student)
