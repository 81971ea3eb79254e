"""Training at scale: the train loader reading WebDataset shards against the manifest of many small files,
and training throughput of the quantizer stage with 1 against 2 processes.

* ``loader``: one pass of the recipe's own train loader (``setup_recipe``, ``dataloader_workers: 0`` so the
  reads are on the critical path) over a folder corpus of short 24 kHz wavs, read one file per utterance
  (the manifest, shuffled) or from shards of the same utterances (``--train_shards``, shuffle buffer
  1000), alternately; utterances per second, each pass decoding and resampling every utterance. Before
  each pass the files it reads are dropped from the page cache (``posix_fadvise(DONTNEED)``, where the
  platform has it), so that every pass reads them from the disk, as a first epoch does, or any epoch of a
  corpus larger than the memory.
* ``processes``: the median of ``3 * repeats`` training steps (reading the batch included, after 2
  warm-up steps) from the shards with ``torchrun --nproc_per_node`` 1 and 2 (DDP, gloo, on the CPU
  whatever the device; each process with ``threads // 2`` threads, as each GPU of a multi-GPU run is its
  own): utterances per second of the whole group (benchmarks/ddp_steps.py).
"""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from speechbrain.dataio.dataloader import make_dataloader

from benchmarks.measure import interleaved, median
from utils.corpus import SPLITS, prepare_data
from utils.corpus.manifest import read_manifest
from utils.corpus.samples import make_folder_corpus
from utils.corpus.shards import ShardOptions, write_shards
from utils.training.recipe import setup_recipe
from utils.training.shards import ShardLoader, ShardStream

__all__ = ["scale_section"]

ROOT = Path(__file__).resolve().parent.parent
SETS = ["--train_folder", "train", "--valid_folder", "valid", "--test_folder", "test"]


def _recipe_argv(corpus: Path, output: Path, args, options: list[str]) -> list[str]:
    """The quantizer stage's command line on the folder corpus (tiny models with ``--quick``)."""
    argv = ["hparams/bsq.yaml", "--corpus_format", "folder", "--data_folder", str(corpus), *SETS]
    argv += ["--output_folder", str(output), "--encoder_random_init", "True", "--min_duration", "0.5"]
    argv += ["--dataloader_workers", "0", "--train_batch_size", str(args.batch_size), "--valid_size", "1"]
    return [*argv, *(["--overrides_file", "hparams/tiny/bsq.yaml"] if args.quick else []), *options]


def _drop_from_page_cache(paths: list[Path]) -> None:
    """Ask the kernel to forget the cached pages of ``paths`` (a no-op where posix_fadvise is missing)."""
    if not hasattr(os, "posix_fadvise"):
        return
    for path in paths:
        with open(path, "rb") as stream:
            os.posix_fadvise(stream.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def _epoch_function(recipe, paths: list[Path]):
    """One timed pass over the recipe's train loader, ``paths`` read from the disk: utterances per second."""
    dataset, kwargs = recipe.datasets["train"], recipe.loader_kwargs["train"]

    def epoch() -> dict:
        loader = (
            ShardLoader(dataset, **kwargs)
            if isinstance(dataset, ShardStream)
            else make_dataloader(dataset, **kwargs)
        )
        _drop_from_page_cache(paths)
        start = time.perf_counter()
        count = sum(len(batch.id) for batch in loader)
        seconds = time.perf_counter() - start
        return {"step_seconds": seconds, "utterances_per_second": count / seconds, "utterances": count}

    return epoch


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _processes(processes: int, argv: list[str], args, work: Path) -> dict:
    """The ddp_steps worker under ``torchrun --nproc_per_node=processes`` (``threads // 2`` threads each)."""
    out = work / f"ddp-{processes}.json"
    threads = max(1, args.threads // 2)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
    torchrun = [str(Path(sys.executable).parent / "torchrun"), f"--nproc_per_node={processes}"]
    command = [*torchrun, f"--master_port={_free_port()}", "-m", "benchmarks.ddp_steps", str(out)]
    command += [str(2 + 3 * args.repeats), "--", *argv, "--device", "cpu", "--distributed_backend", "gloo"]
    subprocess.run(command, check=True, cwd=ROOT, env=env)
    return json.loads(out.read_text())


def scale_section(args, work: Path) -> dict:
    """Loader utterances/s from shards against the manifest, and training utterances/s with 1 against 2
    processes (see the module docstring)."""
    files = 32 if args.quick else 800
    splits = {"train": (8, files // 8), "valid": (1, 1), "test": (1, 1)}
    corpus = work / "corpus"
    make_folder_corpus(corpus, splits, ("wav",), (24000,), stereo_every=0, min_seconds=1.0, max_seconds=1.0)
    manifests = {stage: work / "manifests" / f"{stage}.json" for stage in SPLITS}
    keys = {"corpus_format": "folder", "data_folder": str(corpus), "sample_rate": 16000, "prepare_seed": 0}
    keys.update({f"{stage}_folder": stage for stage in SPLITS}, valid_size=1, min_duration=0.5)
    prepare_data({**keys, **{f"{stage}_json": str(path) for stage, path in manifests.items()}})
    write_shards({"train": read_manifest(manifests["train"])}, work / "shards", ShardOptions())
    shards = ["--train_shards", str(work / "shards" / "index.json")]
    recipes = {
        "manifest": setup_recipe(_recipe_argv(corpus, work / "manifest", args, ["--device", "cpu"])),
        "shards": setup_recipe(_recipe_argv(corpus, work / "shards_run", args, ["--device", "cpu", *shards])),
    }
    paths = {"manifest": sorted(corpus.rglob("*.wav")), "shards": sorted((work / "shards").glob("*.tar"))}
    loading = interleaved(
        {name: _epoch_function(recipe, paths[name]) for name, recipe in recipes.items()}, 1, args.repeats
    )
    result: dict = {"files": files, "file_seconds": 1.0, "batch_size": args.batch_size}
    for name in recipes:
        result[name] = {"utterances_per_second": median(loading[name], "utterances_per_second")}
    result["loading_speedup"] = (
        result["shards"]["utterances_per_second"] / result["manifest"]["utterances_per_second"]
    )
    runs = {
        p: _processes(p, _recipe_argv(corpus, work / f"ddp{p}", args, shards), args, work) for p in (1, 2)
    }
    result["processes"] = {str(p): figures for p, figures in runs.items()}
    result["processes_speedup"] = runs[2]["utterances_per_second"] / runs[1]["utterances_per_second"]
    result["threads_per_process"] = max(1, args.threads // 2)
    return result
