"""The on-disk format of a feature cache: its file names, the split into shards and the frame estimates.

A cache of ``name`` (e.g. the stage) and ``key`` (see :mod:`utils.feature_cache.key`) is the folder
``<root>/<name>-<key[:16]>/`` holding::

    meta.json           {"key": full key, **what it hashes}, written before any shard
    shard-XXXXX.bin     shard XXXXX: a (rows, dim) array of the storage dtype, C order, no header; the
                        (T, D) features of its utterances back to back
    shard-XXXXX.json    the marker of a complete shard: {"rows", "dim", "entries": {uttid: [row, T]}}
    index.json          the marker of a complete cache: {"key", "dim", "dtype", "shards": [file names],
                        "entries": {uttid: [shard, row, T]}}

A shard is written under a temporary name (:func:`focalcodec.files.atomic_write`) and renamed into place
when complete, before its marker.
"""

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "DEFAULT_DTYPE",
    "DTYPES",
    "FORMAT_VERSION",
    "INDEX_FILE",
    "META_FILE",
    "FeatureCacheError",
    "FrameGeometry",
    "assign_shards",
    "cache_folder",
    "marker_file",
    "other_caches",
    "shard_file",
]

# Part of the key: a change of the on-disk format gives new caches
FORMAT_VERSION = 1
# Storage dtypes by name (features are returned as float32 whatever the storage)
DTYPES = {"float16": np.float16, "float32": np.float32}
DEFAULT_DTYPE = "float16"
INDEX_FILE = "index.json"
META_FILE = "meta.json"


def min_crop_samples(num_frames: int, kernel_sizes: list[int], strides: list[int]) -> int:
    """Fewest waveform samples from which a strided conv stack yields ``num_frames`` frames.

    E.g. WavLM's stack (kernels 10,3,3,3,3,2,2; strides 5,2,2,2,2,2,2) has a 400-sample receptive field
    and a 320-sample hop: 22 frames need 400 + 21 * 320 = 7120 samples.
    """
    receptive_field, hop = 1, 1
    for kernel, stride in zip(kernel_sizes, strides, strict=True):
        receptive_field += (kernel - 1) * hop
        hop *= stride
    return receptive_field + (num_frames - 1) * hop


class FeatureCacheError(RuntimeError):
    """A feature cache is unusable (incomplete, corrupted or of another key) or cannot be built."""


def cache_folder(root: str | Path, name: str, key: str) -> Path:
    """The folder of the cache ``name`` of ``key`` under ``root``: ``<root>/<name>-<key[:16]>``."""
    return Path(root) / f"{name}-{key[:16]}"


def other_caches(root: str | Path, name: str, key: str) -> list[Path]:
    """The cache folders of ``name`` under ``root`` whose key is not ``key`` (stale ones), sorted."""
    current = cache_folder(root, name, key)
    return sorted(p for p in Path(root).glob(f"{name}-*") if p.is_dir() and p != current)


def shard_file(folder: Path, shard: int) -> Path:
    """The data file of shard number ``shard`` of the cache in ``folder``."""
    return folder / f"shard-{shard:05d}.bin"


def marker_file(folder: Path, shard: int) -> Path:
    """The marker (completion record and row index) of shard number ``shard``."""
    return folder / f"shard-{shard:05d}.json"


@dataclass(frozen=True)
class FrameGeometry:
    """How many frames the encoder yields for a waveform: one frame per ``hop`` samples once the first
    ``receptive_field`` samples are in (WavLM: 400 and 320)."""

    receptive_field: int
    hop: int

    @classmethod
    def of_encoder(cls, encoder: torch.nn.Module) -> "FrameGeometry":
        """The geometry of the encoder's strided convolution front end
        (``encoder.feature_extractor.layers[i].conv``, as :class:`focalcodec.wavlm.WavLM`), computed by
        :func:`min_crop_samples` (the decoder crop's source of truth too).

        Raises
        ------
        FeatureCacheError : the encoder has no such front end.
        """
        layers = getattr(getattr(encoder, "feature_extractor", None), "layers", None)
        if layers is None or not all(isinstance(getattr(x, "conv", None), torch.nn.Conv1d) for x in layers):
            raise FeatureCacheError(
                f"cannot tell the frame rate of a {type(encoder).__name__}: the feature cache needs an "
                "encoder with a strided convolution front end, encoder.feature_extractor.layers[i].conv "
                "(as WavLM)"
            )
        kernel_sizes = [layer.conv.kernel_size[0] for layer in layers]
        strides = [layer.conv.stride[0] for layer in layers]
        receptive_field = min_crop_samples(1, kernel_sizes, strides)
        return cls(receptive_field, min_crop_samples(2, kernel_sizes, strides) - receptive_field)

    def frames(self, duration: float, sample_rate: int) -> int:
        """Frames of ``duration`` seconds of audio at ``sample_rate`` (at least 1: short input is padded)."""
        samples = round(duration * sample_rate)
        return max(1, (samples - self.receptive_field) // self.hop + 1)


def assign_shards(frames: Sequence[int], frame_bytes: int, shard_bytes: int) -> list[range]:
    """Split utterances, in order, into consecutive runs of about ``shard_bytes`` each.

    A shard is closed once it holds ``shard_bytes`` or more, so every shard holds at least one utterance
    (``shard_bytes=1``: one utterance per shard). Deterministic: the same inputs give the same shards on
    every process and every resumed run.

    Arguments
    ---------
    frames : (U,) estimated frame count of each utterance (see :meth:`FrameGeometry.frames`).
    frame_bytes : bytes of one stored frame (``dim * itemsize``).
    shard_bytes : the target shard size.

    Returns
    -------
    One ``range`` of utterance positions per shard, covering ``range(U)`` in order.
    """
    bounds, size = [0], 0
    for position, count in enumerate(frames):
        if position > bounds[-1] and size >= shard_bytes:
            bounds.append(position)
            size = 0
        size += count * frame_bytes
    return [range(start, stop) for start, stop in itertools.pairwise([*bounds, len(frames)])]
