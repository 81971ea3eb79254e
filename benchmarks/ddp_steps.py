"""Timed training steps of the quantizer stage from shards on every process of a ``torchrun`` group (the
``scale`` section's worker, benchmarks/scale.py): started as the training script starts
(``setup_recipe``, DDP over gloo on the CPU), stepping through the Brain's own shard loader.

    torchrun --nproc_per_node=2 -m benchmarks.ddp_steps OUT.json STEPS -- <train_quantizer.py arguments>
"""

import json
import sys
import time
from pathlib import Path

import speechbrain as sb
import torch

from benchmarks.measure import median
from utils.training.recipe import setup_recipe
from utils.training.stages.quantizer import QuantizerStage

__all__ = ["main"]


def _batches(loader):
    """The loader's batches, epoch after epoch."""
    epoch = 0
    while True:
        epoch += 1
        loader.set_epoch(epoch)
        yield from loader


def main(argv: list[str]) -> None:
    out, steps, recipe_argv = Path(argv[0]), int(argv[1]), argv[3:]
    recipe = setup_recipe(recipe_argv, QuantizerStage.train_items)
    hparams = recipe.hparams
    brain = QuantizerStage(
        modules=hparams["modules"], opt_class=hparams["opt_class"], hparams=hparams, run_opts=recipe.run_opts
    )
    brain.on_fit_start()
    brain.on_stage_start(sb.Stage.TRAIN, 1)
    kwargs = recipe.loader_kwargs["train"]
    batches = _batches(brain.make_dataloader(recipe.datasets["train"], sb.Stage.TRAIN, None, **kwargs))
    records = []
    for _ in range(steps):  # a step: the next batch (read, decoded) and its update, all processes in step
        start = time.perf_counter()
        brain.fit_batch(next(batches))
        records.append({"step_seconds": time.perf_counter() - start})
    world_size = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    if brain.rank in (None, 0):
        step_seconds = median(records[2:], "step_seconds")  # the first two warm up
        figures = {"processes": world_size, "step_seconds": step_seconds}
        figures["utterances_per_second"] = world_size * hparams["train_batch_size"] / step_seconds
        out.write_text(json.dumps(figures))


if __name__ == "__main__":
    main(sys.argv[1:])
