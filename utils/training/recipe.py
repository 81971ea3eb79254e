"""The start-up every training script shares: arguments -> YAML -> experiment folder -> data -> encoder,
and the end: run folder, training, test (:func:`train_and_test`). See docs/design.md.

Besides SpeechBrain's usual command line (``hparams.yaml --key value ...``), ``--overrides_file FILE``
applies the keys of a YAML file as overrides (the command line still wins), e.g. the small-model
settings of the quickstart; ``--overrides_file [FILE1,FILE2]`` applies several, in order (a later file
wins), e.g. the small models in the original mode: ``[hparams/tiny/bsq.yaml,hparams/original/bsq.yaml]``.
A YAML that starts with ``overrides_of: <base>.yaml`` is a variant: its base with its keys as overrides.
"""

import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import speechbrain as sb
from hyperpyyaml import load_hyperpyyaml
from ruamel.yaml import YAML
from speechbrain.dataio.dataset import DynamicItemDataset
from speechbrain.utils.distributed import if_main_process, run_on_main, run_once_per_node

from utils.corpus import SPLITS, download_data, prepare_data
from utils.feature_cache import check_feature_cache_options, prepare_feature_caches, prepare_feature_shards
from utils.runs import (
    DamagedCheckpointError,
    PretrainedCodec,
    load_frozen_encoder,
    part_of,
    pretrained_codec,
    require_causality,
    write_run_folder,
)
from utils.training.data import (
    ItemSeeds,
    TrainItems,
    add_cached_crops,
    add_cached_features,
    add_shard_features,
    dataio_prepare,
    loader_kwargs,
)
from utils.training.ema import ema_name
from utils.training.options import LAYOUT_HINT, VARIANT_KEY, check_command_line
from utils.training.resume import make_deterministic
from utils.training.run_lock import RunLock, RunLockedError
from utils.training.shards import ShardStream
from utils.training.train_logger import plot_training_curves

__all__ = [
    "VARIANT_KEY",
    "Recipe",
    "load_hparams",
    "read_overrides",
    "resolve_variant",
    "setup_recipe",
    "train_and_test",
]

logger = logging.getLogger(__name__)


@dataclass
class Recipe:
    """What a training script needs after start-up."""

    hparams: dict
    run_opts: dict
    datasets: dict[str, DynamicItemDataset]
    loader_kwargs: dict[str, dict]
    lock: RunLock | None  # held by the main process for the life of the run
    encoder_weights: dict  # where the frozen encoder's weights came from (recorded in the run folder)
    pretrained: PretrainedCodec | None  # the codec given by init_from (fine-tuning)


ENCODER_TARGETS = ("encoder", "student_encoder", "student_posemb", None)


def _load_encoder(hparams: dict, pretrained: PretrainedCodec | None) -> dict:
    """Load the frozen encoder's weights on every process and return where they came from, as the run
    folder records it.

    What the encoder of an ``init_from`` codec initialises is the YAML's ``init_from_encoder``:
    ``encoder`` (this frozen encoder: its weights come from the codec unless ``encoder_checkpoint`` is
    given), ``student_encoder`` or ``student_posemb`` (the stage's trained encoder, or its positional
    embedding, loaded with the other trained parts; the frozen encoder is then a teacher) or ``null``.
    Otherwise the weights are ``encoder_checkpoint``'s, or the download of ``encoder_hub`` (or the random
    init). A causal encoder is refused for a non-causal frozen encoder, and the reverse, wherever the source
    says which it is."""
    target = hparams.get("init_from_encoder", "encoder")
    if target not in ENCODER_TARGETS:
        raise SystemExit(
            "error: init_from_encoder must be encoder, student_encoder, student_posemb or null, got "
            f"{target!r}"
        )
    encoder = hparams["encoder"]
    teacher = "student_encoder" in hparams or "student_posemb" in hparams
    role = f"this stage's frozen {'teacher' if teacher else 'encoder'} (encoder, encoder_causal)"
    if pretrained is not None and target == "encoder":
        source = f"--init_from {pretrained.source}"
        require_causality(encoder, pretrained.parts["encoder"].config.get("causal"), source, role)
        weights = pretrained.encoder_weights
        if weights is None and pretrained.source != hparams["encoder_hub"]:  # another codec of the Hub
            weights = {"hub": pretrained.source, "cache_folder": _cache_folder(hparams)}
        if hparams["encoder_checkpoint"] is None and weights:
            encoder.requires_grad_(False).eval().load_state_dict(pretrained.state["encoder"], strict=True)
            logger.info(f"Loaded the frozen encoder of {pretrained.source}")
            return weights
    return load_frozen_encoder(
        encoder,
        checkpoint=hparams["encoder_checkpoint"],
        cache_folder=hparams["cache_folder"],
        hub_id=hparams["encoder_hub"],
        random_init=hparams["encoder_random_init"],
        role=role,
    )


def _cache_folder(hparams: dict) -> str | None:
    return None if hparams["cache_folder"] is None else str(hparams["cache_folder"])


def _lock_output_folder(output_folder: str) -> RunLock | None:
    """The main process locks the output folder (a second run there stops at once); DDP ranks do not."""
    if not if_main_process():
        return None
    try:
        return RunLock(output_folder)
    except RunLockedError as error:
        raise SystemExit(f"error: {error}") from error


def read_overrides(overrides_yaml: str) -> dict:
    """Command-line overrides as a dict, merged over the keys of ``--overrides_file`` if given: one file,
    or a list of files applied in order (a later file wins; the command line wins over all of them).

    Read as round-trip YAML, so that an overrides file may use hyperpyyaml tags, e.g.
    ``output_folder: !ref results/<experiment_name>_release/<seed>`` (resolved against the main YAML).
    """
    yaml = YAML()
    overrides = dict(yaml.load(overrides_yaml) or {}) if overrides_yaml else {}
    files = overrides.pop("overrides_file", None)
    merged: dict = {}
    for path in [files] if isinstance(files, str) else files or []:
        with open(path) as stream:
            merged.update(yaml.load(stream) or {})
    return {**merged, **overrides}


def resolve_variant(hparams_file: str, overrides: dict) -> tuple[str, dict]:
    """A YAML whose first key is ``overrides_of: <base>.yaml`` (relative to its own folder) is a variant: its
    base with its other keys as overrides (e.g. ``hparams/bsq_25hz.yaml``, the 50 Hz recipe with two
    settings changed). Returns the file to load and the overrides to load it with: the variant's keys, then
    ``overrides`` (the command line wins); a plain YAML comes back as it is."""
    with open(hparams_file) as stream:
        document = YAML().load(stream)
    if not isinstance(document, dict) or VARIANT_KEY not in document:
        return hparams_file, overrides
    keys = dict(document)
    base = Path(hparams_file).parent / keys.pop(VARIANT_KEY)
    return resolve_variant(str(base), {**keys, **overrides})


def load_hparams(hparams_file: str, overrides: dict) -> dict:
    """The YAML (or variant, see :func:`resolve_variant`) loaded with ``overrides``."""
    hparams_file, overrides = resolve_variant(hparams_file, overrides)
    with open(hparams_file) as stream:
        try:
            return load_hyperpyyaml(stream, overrides)
        except ValueError as error:
            if "data_folder" not in overrides and "PLACEHOLDER" in str(error):
                raise SystemExit(f"error: --data_folder is required. {LAYOUT_HINT}") from error
            raise


def _add_feature_caches(hparams: dict, datasets: dict, device: str, train: TrainItems) -> None:
    """Build or open the feature caches (every process: each builds its share of the shards, then all read
    the complete caches) and serve them: training crops read alone, or whole-utterance features."""
    stages = hparams.get("feature_cache_stages", ["train"])
    if isinstance(datasets["train"], ShardStream) and "train" in stages:  # the cache in shard form
        urls = prepare_feature_shards(hparams, datasets["train"].shards, device)
        add_shard_features(datasets["train"], urls, hparams, train)
        hparams = {**hparams, "feature_cache_stages": [stage for stage in stages if stage != "train"]}
    crop = train.crop(hparams)
    for stage, cache in prepare_feature_caches(hparams, datasets, device).items():
        if stage == "train" and crop is not None:
            pcm16, seeds = hparams.get("pcm16_audio", False), hparams["item_seeds"]
            add_cached_crops(datasets[stage], cache, *crop, hparams["sample_rate"], seeds, pcm16)
        else:
            add_cached_features(datasets[stage], cache, audio=stage != "train" or train.audio)


def setup_recipe(argv: list[str], train: TrainItems | None = None) -> Recipe:
    """Check the options (:mod:`utils.training.options`: all problems reported, nothing done), parse the
    command line, load the YAML, create the experiment folder, prepare the manifests (on
    the main process), build the datasets and loader options, load the frozen encoder (on every process)
    and, with ``feature_cache``, build or open the feature caches (utils/feature_cache/).

    Arguments
    ---------
    argv : ``sys.argv[1:]``.
    train : what the stage's training items hold (:class:`~utils.training.data.TrainItems`; the default:
        whole utterances with their audio).
    """
    train = train or TrainItems()
    problems, checked_argv = check_command_line(argv)  # before any work: one line per problem
    if problems:
        raise SystemExit("\n".join(f"error: {problem}" for problem in problems))
    hparams_file, run_opts, overrides_yaml = sb.parse_arguments(checked_argv)
    overrides = read_overrides(overrides_yaml)
    hparams = load_hparams(hparams_file, overrides)
    check_feature_cache_options(hparams)  # e.g. augment + feature_cache is refused before any work
    if hparams.get("deterministic", False):
        make_deterministic()  # GPU: deterministic algorithms only, no cuDNN benchmark (docs/training.md)

    sb.utils.distributed.ddp_init_group(run_opts)
    lock = _lock_output_folder(hparams["output_folder"])
    base_file, all_overrides = resolve_variant(hparams_file, overrides)  # a variant is saved whole
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
        hyperparams_to_save=base_file,
        overrides=all_overrides,
    )
    logger.info(f"Command: {' '.join([Path(sys.argv[0]).name, *argv])}")

    # corpus_format libritts (with download), folder, list or librilight: see the Data section of the YAML
    if hparams.get("data_per_node", False):  # nodes without a shared file system: each fetches its copy
        run_once_per_node(download_data, kwargs={"hparams": hparams})
    run_on_main(prepare_data, kwargs={"hparams": hparams})
    hparams["debug"] = run_opts.get("debug", False)
    hparams["item_seeds"] = ItemSeeds(hparams["seed"])  # the training crops' draws (the Brain sets the epoch)
    datasets = dataio_prepare(hparams, hparams["item_seeds"], train_min_duration=train.min_seconds(hparams))
    device = run_opts.get("device") or sb.utils.distributed.infer_device()
    loaders = {stage: loader_kwargs(hparams, stage, datasets[stage], device) for stage in SPLITS}

    try:  # fine-tuning; a run's checkpoint is verified (a damaged file is named)
        pretrained = pretrained_codec(hparams["init_from"]) if hparams.get("init_from") else None
    except DamagedCheckpointError as error:
        raise SystemExit(f"error: --init_from {hparams['init_from']}: {error}") from error
    encoder_weights = _load_encoder(hparams, pretrained)  # before the feature cache, which hashes it
    if hparams.get("feature_cache", False):
        _add_feature_caches(hparams, datasets, device, train)
    return Recipe(hparams, run_opts, datasets, loaders, lock, encoder_weights, pretrained)


def train_and_test(brain_class: type[sb.Brain], recipe: Recipe, **best_checkpoint: str) -> sb.Brain:
    """Record the run folder's parts (utils/runs/folder.py), build the Brain from the YAML, train (resuming
    from the last checkpoint), test the best checkpoint (``min_key=...`` or ``max_key=...``) and save a PNG
    of the training curves. ``brain_class`` names its ``stage`` and its ``trained_parts`` (part -> YAML key,
    also the checkpoint's recoverable name)."""
    hparams = recipe.hparams
    if if_main_process():
        averaged = (
            hparams.get("ema_decay") is not None
        )  # the average of each trained part is checkpointed too
        parts = {
            name: part_of(hparams[key], key, ema_name(key) if averaged else None)
            for name, key in brain_class.trained_parts.items()
        }
        frozen = part_of(hparams["encoder"])
        # A stage that trains the encoder part (distillation, joint) records its frozen encoder as the teacher
        teacher = frozen if "encoder" in parts else None
        write_run_folder(
            hparams["output_folder"],
            brain_class.stage,
            {"encoder": frozen, **parts},
            hparams["encoder"],
            recipe.encoder_weights,
            best_checkpoint,
            teacher,
        )
    brain = brain_class(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=recipe.run_opts,
        checkpointer=hparams["checkpointer"],
    )
    brain.fit(
        hparams["epoch_counter"],
        recipe.datasets["train"],
        recipe.datasets["valid"],
        train_loader_kwargs=recipe.loader_kwargs["train"],
        valid_loader_kwargs=recipe.loader_kwargs["valid"],
    )
    brain.evaluate(
        recipe.datasets["test"], test_loader_kwargs=recipe.loader_kwargs["test"], **best_checkpoint
    )
    if if_main_process():
        plot_training_curves(hparams["train_log"], Path(hparams["output_folder"]) / "training_curves.png")
    return brain
