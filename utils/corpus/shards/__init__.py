"""WebDataset tar shards of a prepared corpus, for training from a few large sequential files instead of one
file per utterance (docs/training.md, "Training at scale").

A shard ``<set>-NNNNNN.tar`` holds utterances as WebDataset samples, ``<key>.json`` (``{"id", "spk_id",
"label", "duration", "sample_rate"}``) and ``<key>.<flac|wav|ogg|mp3>`` (the audio as stored, or re-encoded
to a chosen format and rate; a Libri-Light piece as FLAC), ``<key>`` = ``<shard number>_<position>``. The
utterances are shuffled (seeded) before being cut into shards of a target size; ``index.json`` lists every
shard with its utterance count, durations, size and sha256. Writing resumes and is idempotent; the corpus
is only read. Made with ``python -m utils.corpus.shards`` (its ``--help``).

Modules: ``write`` (plan, shards, index), ``index`` (the index, finding the shards a pattern or an index
names, verifying them), ``read`` (a shard's samples, decoding one). Training reads them with
:mod:`utils.training.shards`.
"""

from utils.corpus.shards.index import INDEX_FILE, Shard, read_index, resolve_shards, verify_shards
from utils.corpus.shards.read import decode_audio, sample_meta, shard_samples
from utils.corpus.shards.write import AUDIO_FORMATS, ShardOptions, write_shards

__all__ = [
    "AUDIO_FORMATS",
    "INDEX_FILE",
    "Shard",
    "ShardOptions",
    "decode_audio",
    "read_index",
    "resolve_shards",
    "sample_meta",
    "shard_samples",
    "verify_shards",
    "write_shards",
]
