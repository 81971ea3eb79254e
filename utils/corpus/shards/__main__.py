"""Write WebDataset shards of a corpus (docs/training.md, "Training at scale").

    # prepare a corpus (the Data keys of the recipe's YAML), then shard every set
    python -m utils.corpus.shards /data/shards --corpus_format folder --data_folder /data/my_corpus
    python -m utils.corpus.shards /data/ll_shards --corpus_format librilight --data_folder /data/librilight \\
        --train_split "[small]" --workers 16
    # or shard manifests already prepared (by a training run: <output_folder>/save/*.json)
    python -m utils.corpus.shards /data/shards --manifests results/vocos/0/save/train.json
    # check a folder's shards against its index (sha256, sizes, counts)
    python -m utils.corpus.shards /data/shards --verify

The prepared manifests go to ``OUTPUT/manifests/`` (and the preparation report beside them); the shards of
each set to ``OUTPUT/<set>-NNNNNN.tar`` with ``OUTPUT/index.json``. Train from them with
``--train_shards OUTPUT/index.json`` or ``--train_shards "OUTPUT/train-{000000..000123}.tar"``.
"""

import argparse
import logging
import sys
from pathlib import Path

import yaml

from utils.corpus import prepare_data
from utils.corpus.manifest import read_manifest
from utils.corpus.shards.index import verify_shards
from utils.corpus.shards.write import AUDIO_FORMATS, ShardOptions, write_shards
from utils.corpus.splits import SPLITS

__all__ = ["main"]

# The recipe YAMLs' defaults of the Data keys a preparation needs (the command line overrides them)
DATA_DEFAULTS = {
    "corpus_format": "libritts",
    "train_split": ["train-clean-100"],
    "valid_split": ["dev-clean"],
    "test_split": ["test-clean"],
    "sample_rate": 16000,
    "prepare_seed": 1234,
    "valid_size": 500,
    "min_duration": 1.0,
}
# The Data keys of the YAML this command takes (values read as YAML, "[small]", True, 0.1, but for paths)
DATA_KEYS = (
    "corpus_format", "data_folder", "train_split", "valid_split", "test_split", "train_folder",
    "valid_folder", "test_folder", "corpus_list", "valid_proportion", "test_proportion", "speaker_pattern",
    "speaker_disjoint", "prepare_seed", "valid_size", "min_duration", "cut_seconds", "download",
    "download_url",
)  # fmt: skip


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m utils.corpus.shards",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("output", type=Path, help="the folder of the shards and index.json")
    parser.add_argument("--manifests", nargs="+", type=Path, help="prepared manifests (set name: file stem)")
    parser.add_argument("--shard_mb", type=float, default=256.0, help="target shard size in MB (256)")
    parser.add_argument("--max_count", type=int, help="at most this many utterances per shard")
    parser.add_argument("--audio_format", choices=AUDIO_FORMATS, default="stored", help="stored (default)")
    parser.add_argument("--sample_rate", type=int, help="resample to this rate (default: as stored)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the shuffle before sharding (0)")
    parser.add_argument("--workers", type=int, default=1, help="processes writing shards (1)")
    parser.add_argument("--verify", action="store_true", help="only check OUTPUT's shards against its index")
    data = parser.add_argument_group(
        "the corpus",
        "Data keys of the recipe's YAML (docs/training.md, 'Training on your own data'), values read as "
        f"YAML; defaults: {DATA_DEFAULTS}",
    )
    for key in DATA_KEYS:
        text = key.endswith(("folder", "list", "pattern", "url"))
        data.add_argument(f"--{key}", type=str if text else yaml.safe_load, metavar="VALUE")
    return parser


def _prepared(output: Path, keys: dict) -> dict[str, Path]:
    """Prepare the corpus the Data keys name into ``output/manifests/``; the manifests by set name."""
    manifests = {stage: output / "manifests" / f"{stage}.json" for stage in SPLITS}
    hparams = {**DATA_DEFAULTS, **keys, **{f"{stage}_json": path for stage, path in manifests.items()}}
    prepare_data(hparams)
    return manifests


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = _parser()
    args = parser.parse_args(argv)
    if args.verify:
        problems = verify_shards(args.output)
        print("\n".join(problems) or f"{args.output}: every shard matches the index")
        sys.exit(1 if problems else 0)
    keys = {key: getattr(args, key) for key in DATA_KEYS if getattr(args, key) is not None}
    if args.manifests and keys:
        parser.error(f"--manifests takes no Data keys: {', '.join(keys)}")
    if args.manifests:
        manifests = {path.stem: path for path in args.manifests}
    elif "data_folder" in keys:
        manifests = _prepared(args.output, keys)
    else:
        parser.error("give --manifests, or the corpus as Data keys (--data_folder ... [--corpus_format ...])")
    options = ShardOptions(args.shard_mb, args.max_count, args.audio_format, args.sample_rate, args.seed)
    entries = {name: read_manifest(path) for name, path in manifests.items()}
    write_shards(entries, args.output, options, workers=args.workers)


if __name__ == "__main__":
    main()
