"""Training-step speed with and without the feature cache, through the recipe's own start-up.

The corpus is the recipe's sample corpus generator (24 kHz LibriTTS layout, a synthetic voice) and each
mode is started exactly as the training scripts start (``utils.training.recipe.setup_recipe``: YAML +
overrides, data preparation, datasets, loaders, encoder, feature cache), with random weights; only the timed
loop over training batches is the benchmark's.
"""

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from unittest import mock

import speechbrain as sb
import torch
from speechbrain.dataio.dataloader import make_dataloader

import utils.training.recipe as recipe_module
from benchmarks.measure import ForwardTimer, interleaved, median, process_peak_memory, sync
from utils.corpus.samples import make_sample_corpus
from utils.training.recipe import Recipe, setup_recipe
from utils.training.stages.decoder import DecoderStage
from utils.training.stages.quantizer import QuantizerStage

__all__ = ["STAGES", "compile_section", "step_function", "train_recipe", "train_section"]

# stage -> (its Brain, YAML, utterance seconds at full size)
STAGES = {"quantizer": (QuantizerStage, "bsq.yaml", 4.0), "decoder": (DecoderStage, "vocos.yaml", 5.8)}


def train_recipe(
    stage: str, name: str, corpus: Path, work: Path, args, options: list[str]
) -> tuple[Recipe, float]:
    """The recipe of one mode (``options``: its command-line overrides) as the training script starts it in
    ``work/name``, and the seconds its feature-cache build took (the recipe's ``prepare_feature_caches``)."""
    _, yaml_file, _ = STAGES[stage]
    argv = [f"hparams/{yaml_file}", "--data_folder", str(corpus), "--output_folder", str(work / name)]
    argv += ["--train_split", "[train-clean-100]", "--encoder_random_init", "True", "--device", args.device]
    argv += ["--dataloader_workers", "0", "--train_batch_size", str(args.batch_size), "--valid_size", "1"]
    argv += ["--feature_cache_stages", "[train]", "--feature_cache_dtype", args.cache_dtype, *options]
    if args.quick:
        argv += ["--overrides_file", f"hparams/tiny/{yaml_file}"]
    build = recipe_module.prepare_feature_caches
    seconds = [0.0]

    def timed_build(*build_args, **build_kwargs):
        start = time.perf_counter()
        caches = build(*build_args, **build_kwargs)
        seconds[0] = time.perf_counter() - start
        return caches

    with mock.patch.object(recipe_module, "prepare_feature_caches", timed_build):
        recipe = setup_recipe(argv, STAGES[stage][0].train_items)
    return recipe, seconds[0]


def _brain(stage: str, recipe: Recipe):
    """The stage's Brain as ``utils.training.recipe.train_and_test`` builds it (no checkpointer), ready to
    step."""
    brain_class = STAGES[stage][0]
    hparams = recipe.hparams
    brain = brain_class(
        modules=hparams["modules"], opt_class=hparams["opt_class"], hparams=hparams, run_opts=recipe.run_opts
    )
    brain.on_fit_start()
    brain.on_stage_start(sb.Stage.TRAIN, 1)
    return brain


def step_function(stage: str, recipe: Recipe, device: str) -> Callable[[], dict]:
    """One timed training step on the next batch of the recipe's own train loader (loading included)."""
    brain = _brain(stage, recipe)
    timer = ForwardTimer(recipe.hparams["encoder"], device)

    def batches() -> Iterator:
        while True:
            yield from make_dataloader(recipe.datasets["train"], **recipe.loader_kwargs["train"])

    source = batches()

    def step() -> dict:
        sync(device)
        start = time.perf_counter()
        batch = next(source)
        loaded = time.perf_counter()
        timer.total = 0.0
        loss = brain.fit_batch(batch)
        sync(device)
        if not torch.isfinite(loss):
            raise RuntimeError(f"{stage}: non-finite loss in the benchmark")
        return {
            "step_seconds": time.perf_counter() - start,
            "load_seconds": loaded - start,
            "encoder_seconds": timer.total,
        }

    return step


def _summary(records: list[dict], batch_size: int, seconds: float) -> dict:
    step_seconds = median(records, "step_seconds")
    return {
        "step_seconds": step_seconds,
        "load_seconds": median(records, "load_seconds"),
        "encoder_seconds": median(records, "encoder_seconds"),
        "audio_seconds_per_second": batch_size * seconds / step_seconds,
        "steps": [record["step_seconds"] for record in records],
    }


def train_section(stage: str, args, work: Path) -> dict:
    """Median training step of ``stage`` without and with the feature cache, interleaved."""
    seconds = 1.0 if args.quick else STAGES[stage][2]
    splits = {"train-clean-100": (2, args.batch_size), "dev-clean": (1, 1), "test-clean": (1, 1)}
    corpus = make_sample_corpus(
        work / "corpus", splits, min_seconds=seconds, max_seconds=seconds, engine="synthetic"
    )
    uncached, _ = train_recipe(stage, "uncached", corpus, work, args, ["--feature_cache", "False"])
    cached, build_seconds = train_recipe(stage, "cached", corpus, work, args, ["--feature_cache", "True"])
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    steps = {
        name: step_function(stage, recipe, args.device)
        for name, recipe in (("uncached", uncached), ("cached", cached))
    }
    records = interleaved(steps, args.warmup, args.repeats)
    result: dict = {"batch_size": args.batch_size, "utterance_seconds": seconds}
    for mode, mode_records in records.items():
        result[mode] = _summary(mode_records, args.batch_size, seconds)
    result["speedup"] = result["uncached"]["step_seconds"] / result["cached"]["step_seconds"]
    result["encoder_share"] = result["uncached"]["encoder_seconds"] / result["uncached"]["step_seconds"]
    cache_folder = Path(cached.hparams["feature_cache_folder"])
    result["cache_build"] = {
        "seconds": build_seconds,
        "audio_seconds": len(cached.datasets["train"]) * seconds,
        "bytes": sum(path.stat().st_size for path in cache_folder.rglob("shard-*.bin")),
        "dtype": args.cache_dtype,
    }
    result["peak_memory_bytes"] = process_peak_memory(args.device)
    return result


def compile_section(stage: str, args, work: Path) -> dict:
    """Median cached training step of ``stage`` with eager and with compiled trained modules (the recipe's
    ``--compile True``, inductor), interleaved after ``warmup`` steps (the first ones compile)."""
    seconds = 1.0 if args.quick else STAGES[stage][2]
    splits = {"train-clean-100": (2, args.batch_size), "dev-clean": (1, 1), "test-clean": (1, 1)}
    corpus = make_sample_corpus(
        work / "corpus", splits, min_seconds=seconds, max_seconds=seconds, engine="synthetic"
    )
    cache = ["--feature_cache", "True", "--feature_cache_folder", str(work / "cache")]
    recipes = {
        "eager": train_recipe(stage, "eager", corpus, work, args, cache)[0],
        "compiled": train_recipe(stage, "compiled", corpus, work, args, [*cache, "--compile", "True"])[0],
    }
    steps = {name: step_function(stage, recipe, args.device) for name, recipe in recipes.items()}
    first = {name: step()["step_seconds"] for name, step in steps.items()}  # includes the compilation
    records = interleaved(steps, max(0, args.warmup - 1), args.repeats)
    result: dict = {"batch_size": args.batch_size, "utterance_seconds": seconds}
    for mode, mode_records in records.items():
        result[mode] = {**_summary(mode_records, args.batch_size, seconds), "first_step_seconds": first[mode]}
    result["speedup"] = result["eager"]["step_seconds"] / result["compiled"]["step_seconds"]
    return result
