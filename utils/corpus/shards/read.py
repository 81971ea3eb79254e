"""Reading shards back: a shard's samples in tar order (WebDataset's tar reader, so any URL it opens: a path,
``pipe:...``, ``http(s)://...``), and a sample's metadata and audio."""

import io
import json
from collections.abc import Iterator

import soundfile as sf
import torch
import webdataset as wds

from focalcodec.audio import resample

__all__ = ["AUDIO_EXTENSIONS", "decode_audio", "sample_meta", "shard_samples"]

AUDIO_EXTENSIONS = ("flac", "wav", "ogg", "mp3")


def shard_samples(url: str) -> Iterator[dict]:
    """The raw samples of one shard in order: ``{"__key__", "json": bytes, "<audio extension>": bytes}``."""
    return wds.tariterators.tarfile_samples([{"url": url}])


def sample_meta(sample: dict) -> dict:
    """A raw sample's metadata: ``id``, ``spk_id``, ``label``, ``duration``, ``sample_rate`` (its audio's)."""
    return json.loads(sample["json"])


def decode_audio(sample: dict, sample_rate: int) -> torch.Tensor:
    """A raw sample's audio as a mono (N,) float32 waveform at ``sample_rate`` (channels averaged,
    resampled)."""
    extension = next((ext for ext in AUDIO_EXTENSIONS if ext in sample), None)
    if extension is None:
        raise ValueError(f"sample {sample.get('__key__')} of {sample.get('__url__')} holds no audio")
    data, rate = sf.read(io.BytesIO(sample[extension]), dtype="float32", always_2d=True)
    return resample(torch.from_numpy(data.mean(axis=1)), rate, sample_rate)
