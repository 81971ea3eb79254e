"""Decoder-stage data loading with the feature cache: whole-utterance reads against crop-only reads.

Whole-utterance reads load each training utterance's audio (read and resampled) and its whole feature
matrix, and the step crops 22 frames; crop-only reads (the recipe's default with the cache,
``crop_reads: True``) read the crop's frames from the cache and its samples from the audio file. Both read
the same cache (one build), through the recipe's own start-up and train loader (``dataloader_workers: 0``,
so loading is on the critical path), on LibriTTS-length utterances (about 6 s at 24 kHz).
"""

import time
from pathlib import Path

from speechbrain.dataio.dataloader import make_dataloader

from benchmarks.measure import interleaved, median
from benchmarks.training import step_function, train_recipe
from utils.corpus.samples import make_sample_corpus

__all__ = ["loading_section"]

MODES = {"whole": "False", "crops": "True"}  # crop_reads


def _epoch_function(recipe):
    """One pass over the recipe's train loader, timed: items per second (loading alone)."""

    def epoch() -> dict:
        start = time.perf_counter()
        items = sum(
            len(batch.id)
            for batch in make_dataloader(recipe.datasets["train"], **recipe.loader_kwargs["train"])
        )
        seconds = time.perf_counter() - start
        return {"step_seconds": seconds, "items_per_second": items / seconds, "items": items}

    return epoch


def loading_section(args, work: Path) -> dict:
    """Items/s of the train loader and the median cached decoder step, whole-utterance vs crop-only reads."""
    seconds = 1.0 if args.quick else 5.8
    speakers, per_speaker = (2, 4) if args.quick else (4, 8)
    splits = {"train-clean-100": (speakers, per_speaker), "dev-clean": (1, 1), "test-clean": (1, 1)}
    corpus = make_sample_corpus(
        work / "corpus", splits, min_seconds=seconds, max_seconds=seconds, engine="synthetic"
    )
    cache = ["--feature_cache", "True", "--feature_cache_folder", str(work / "cache")]
    recipes = {
        mode: train_recipe("decoder", mode, corpus, work, args, [*cache, "--crop_reads", value])[0]
        for mode, value in MODES.items()
    }
    loading = interleaved(
        {mode: _epoch_function(recipe) for mode, recipe in recipes.items()}, 1, args.repeats
    )
    steps = interleaved(
        {mode: step_function("decoder", recipe, args.device) for mode, recipe in recipes.items()},
        args.warmup,
        args.repeats,
    )
    result: dict = {
        "utterances": speakers * per_speaker,
        "utterance_seconds": seconds,
        "batch_size": args.batch_size,
    }
    for mode in MODES:
        result[mode] = {
            "items_per_second": median(loading[mode], "items_per_second"),
            "step_seconds": median(steps[mode], "step_seconds"),
        }
    result["loading_speedup"] = result["crops"]["items_per_second"] / result["whole"]["items_per_second"]
    result["step_speedup"] = result["whole"]["step_seconds"] / result["crops"]["step_seconds"]
    return result
