"""The run folder, the contract between a training stage and every tool after it (export, evaluation,
fine-tuning, the next stage): reading and writing ``parts.json`` (and older runs' ``hyperparams.yaml``),
picking a checkpoint, every source of encoder weights, exporting runs as one codec, and initialising a
stage from a codec or a run. See docs/run-folder.md.

Modules, in dependency order: ``checkpoints``, ``fingerprint``, ``encoder_weights``, ``folder``, ``legacy``,
``read``, ``decoder``, ``export``, ``finetune``, ``stream_chain``, ``frozen_encoder``.
"""

from utils.runs.checkpoints import checkpoint_meta, find_checkpoint
from utils.runs.decoder import load_decoder
from utils.runs.encoder_weights import (
    WAVLM6_HUB_ID,
    EncoderMismatchError,
    EncoderWeightsUnavailableError,
    encoder_state_dict,
    require_causality,
    stated_causality,
    wavlm6_state_dict,
)
from utils.runs.export import RunMismatchError, codec_from_runs
from utils.runs.finetune import (
    PretrainedCodec,
    PretrainedMismatchError,
    init_from_pretrained,
    listening_decoder,
    pretrained_codec,
    setting_mismatches,
)
from utils.runs.fingerprint import encoder_fingerprint
from utils.runs.folder import (
    ENCODER_FILE,
    PARTS_FILE,
    Part,
    RunFolder,
    RunFolderError,
    is_run,
    part_of,
    write_run_folder,
)
from utils.runs.frozen_encoder import load_frozen_encoder
from utils.runs.read import read_run
from utils.runs.stream_chain import (
    distilled_encoder_file,
    freeze_positions,
    init_joint_from_codec,
    init_joint_stage,
    init_student_encoder,
    load_with_new_refiner,
)

__all__ = [
    "ENCODER_FILE",
    "PARTS_FILE",
    "WAVLM6_HUB_ID",
    "EncoderMismatchError",
    "EncoderWeightsUnavailableError",
    "Part",
    "PretrainedCodec",
    "PretrainedMismatchError",
    "RunFolder",
    "RunFolderError",
    "RunMismatchError",
    "checkpoint_meta",
    "codec_from_runs",
    "distilled_encoder_file",
    "encoder_fingerprint",
    "encoder_state_dict",
    "find_checkpoint",
    "freeze_positions",
    "init_from_pretrained",
    "init_joint_from_codec",
    "init_joint_stage",
    "init_student_encoder",
    "is_run",
    "listening_decoder",
    "load_decoder",
    "load_frozen_encoder",
    "load_with_new_refiner",
    "part_of",
    "pretrained_codec",
    "read_run",
    "require_causality",
    "setting_mismatches",
    "stated_causality",
    "wavlm6_state_dict",
    "write_run_folder",
]
