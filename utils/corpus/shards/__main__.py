"""Write WebDataset shards of a corpus (docs/training.md, "Training at scale").

    # prepare a corpus (the Data keys of the recipe's YAML, as --key value), then shard every set
    python -m utils.corpus.shards /data/shards --corpus_format folder --data_folder /data/my_corpus
    python -m utils.corpus.shards /data/ll_shards --corpus_format librilight --data_folder /data/librilight \\
        --train_split "[small]" --audio_format flac --sample_rate 24000 --workers 16
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
    return parser


def _data_keys(extra: list[str], parser: argparse.ArgumentParser) -> dict:
    """``--key value`` pairs (values read as YAML, e.g. ``"[small]"``) as Data keys."""
    if len(extra) % 2 or not all(word.startswith("--") for word in extra[::2]):
        parser.error(f"expected --key value pairs of the YAML's Data section, got {' '.join(extra)}")
    return {key[2:]: yaml.safe_load(value) for key, value in zip(extra[::2], extra[1::2], strict=True)}


def _prepared(output: Path, keys: dict) -> dict[str, Path]:
    """Prepare the corpus the Data keys name into ``output/manifests/``; the manifests by set name."""
    manifests = {stage: output / "manifests" / f"{stage}.json" for stage in SPLITS}
    hparams = {**DATA_DEFAULTS, **keys, **{f"{stage}_json": path for stage, path in manifests.items()}}
    prepare_data(hparams)
    return manifests


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if args.verify:
        problems = verify_shards(args.output)
        print("\n".join(problems) or f"{args.output}: every shard matches the index")
        sys.exit(1 if problems else 0)
    if args.manifests:
        if extra:
            parser.error(f"--manifests takes no Data keys: {' '.join(extra)}")
        manifests = {path.stem: path for path in args.manifests}
    elif extra:
        manifests = _prepared(args.output, _data_keys(extra, parser))
    else:
        parser.error("give --manifests, or the corpus as Data keys (--data_folder ... [--corpus_format ...])")
    options = ShardOptions(args.shard_mb, args.max_count, args.audio_format, args.sample_rate, args.seed)
    entries = {name: read_manifest(path) for name, path in manifests.items()}
    write_shards(entries, args.output, options, workers=args.workers)


if __name__ == "__main__":
    main()
