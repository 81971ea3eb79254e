"""What a feature cache is keyed by: the manifest entries, the encoder (weights, class, config), the sample
rate, the storage dtype and the format version. Any change gives another key, hence another folder, so a
stale cache is never read."""

import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from utils.feature_cache.layout import FORMAT_VERSION

__all__ = ["ManifestEntry", "cache_key", "encoder_config", "manifest_entries"]

# hparams keys of the encoder that are not constructor arguments (where the weights come from is covered
# by hashing the weights themselves)
_NOT_ENCODER_CONFIG = ("encoder_checkpoint", "encoder_hub", "encoder_random_init")


@dataclass(frozen=True)
class ManifestEntry:
    """What identifies one utterance's audio, and so its cached features.

    Attributes
    ----------
    uttid : the utterance id (the manifest key).
    wav : path of the audio file.
    duration : seconds, as in the manifest (the frame estimates use it).
    size, mtime_ns : the file's size in bytes and modification time (any rewrite changes the key).
    segments : the sample ranges of ``wav`` an utterance cut from a longer file is made of (Libri-Light),
        ``None`` for a whole file.
    """

    uttid: str
    wav: str
    duration: float
    size: int
    mtime_ns: int
    segments: tuple[tuple[int, int], ...] | None = None

    def as_dict(self) -> dict[str, Any]:
        """The entry as hashed into the key: ``{"id", "wav", "duration", "size", "mtime_ns"}`` and, for a
        cut utterance only (whole files keep the keys they had), ``"segments"``."""
        fields = {
            "id": self.uttid,
            "wav": self.wav,
            "duration": self.duration,
            "size": self.size,
            "mtime_ns": self.mtime_ns,
        }
        return fields if self.segments is None else {**fields, "segments": [list(s) for s in self.segments]}


def manifest_entries(
    data: Mapping[str, Mapping[str, Any]], ids: Iterable[str] | None = None
) -> list[ManifestEntry]:
    """One :class:`ManifestEntry` per utterance, sorted by id (the files are stat'ed now).

    Arguments
    ---------
    data : ``{uttid: {"wav": path, "duration": seconds, ...}}`` (and ``"segments"`` for a cut utterance),
        e.g. a DynamicItemDataset's ``data``.
    ids : the utterances to keep (e.g. the dataset's ``data_ids`` after filtering); all by default.
    """
    entries = []
    for uttid in sorted(data if ids is None else ids):
        wav, segments = str(data[uttid]["wav"]), data[uttid].get("segments")
        stat = os.stat(wav)
        cut = None if segments is None else tuple((int(start), int(stop)) for start, stop in segments)
        duration = float(data[uttid]["duration"])
        entries.append(ManifestEntry(uttid, wav, duration, stat.st_size, stat.st_mtime_ns, cut))
    return entries


def encoder_config(hparams: Mapping[str, Any]) -> dict[str, Any]:
    """The encoder's constructor settings from the YAML: every ``encoder_*`` key except where its weights
    come from (the weights themselves are hashed), sorted by key."""
    return {
        key: hparams[key]
        for key in sorted(hparams)
        if key.startswith("encoder_") and key not in _NOT_ENCODER_CONFIG
    }


def cache_key(
    encoder_sha256: str,
    config: Mapping[str, Any],
    entries: Sequence[ManifestEntry],
    sample_rate: int,
    dtype: str,
) -> tuple[str, dict[str, Any]]:
    """The cache key (sha256, 64 hex digits) and the description it hashes (stored in ``meta.json``).

    Arguments
    ---------
    encoder_sha256 : :func:`utils.runs.encoder_fingerprint` of the encoder.
    config : the encoder's constructor config (:func:`encoder_config`); values JSON cannot hold are
        hashed as their ``str``.
    entries : the utterances cached (:func:`manifest_entries`), in cache order.
    sample_rate : the rate the audio is loaded at.
    dtype : the storage dtype name.
    """
    entries_digest = hashlib.sha256(
        json.dumps([entry.as_dict() for entry in entries], sort_keys=True).encode()
    ).hexdigest()
    meta = {
        "format": FORMAT_VERSION,
        "encoder_sha256": encoder_sha256,
        "encoder_config": json.loads(json.dumps(dict(config), sort_keys=True, default=str)),
        "sample_rate": int(sample_rate),
        "dtype": dtype,
        "num_utterances": len(entries),
        "entries_sha256": entries_digest,
    }
    key = hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()
    return key, meta
