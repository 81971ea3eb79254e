"""Audio files and waveform lengths: reading any file as a mono waveform at the codec's rate, writing WAVs,
and the length conventions of padded batches.

Reading uses ``soundfile`` (WAV, FLAC, OGG, and MP3 where libsndfile supports it), averages the channels
and resamples with ``torchaudio``; files are never modified.
"""

import functools
import io
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F

from focalcodec.files import atomic_write

__all__ = [
    "AUDIO_SUFFIXES",
    "AudioInfo",
    "Written",
    "absolute_lengths",
    "as_written",
    "audio_info",
    "declared_wav_data_bytes",
    "fit_length",
    "load_audio",
    "write_wav",
]

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
"""Suffixes of the audio files looked for in folders (a file named explicitly is read whatever its suffix)."""
# Data-chunk sizes written by streaming writers that do not know the length in advance (espeak-ng and
# sox --stdout write 0x7ffff000, ffmpeg 0xffffffff, some tools 0): not evidence of truncation.
_STREAMING_SIZE_MIN = 0x7FFF0000


@dataclass(frozen=True)
class AudioInfo:
    """What a file's header says: its rate, length and channel count."""

    sample_rate: int
    num_samples: int
    channels: int

    @property
    def seconds(self) -> float:
        return self.num_samples / self.sample_rate


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """The header of an audio file (no samples read). Raises on unreadable or empty files."""
    import soundfile as sf

    info = sf.info(os.fspath(path))
    if info.frames < 1:
        raise ValueError("no audio samples")
    return AudioInfo(info.samplerate, info.frames, info.channels)


def declared_wav_data_bytes(path: str | os.PathLike, file_size: int) -> tuple[int, int] | None:
    """For a RIFF/WAVE file: ``(declared, available)`` byte counts of its ``data`` chunk.

    ``None`` when the file is not a plain RIFF WAVE file, or when the declared size is a streaming
    placeholder (length unknown when the header was written), i.e. when truncation cannot be judged
    from the header. (libsndfile silently reads a cut WAV as a shorter one.)
    """
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
            return None
        endian = "<" if head[:4] == b"RIFF" else ">"
        offset = 12
        while offset + 8 <= file_size:
            f.seek(offset)
            chunk = f.read(8)
            if len(chunk) < 8:
                return None
            chunk_id, size = chunk[:4], struct.unpack(endian + "I", chunk[4:])[0]
            if chunk_id == b"data":
                if size == 0 or size >= _STREAMING_SIZE_MIN:
                    return None
                return size, file_size - offset - 8
            offset += 8 + size + (size & 1)
    return None


def read_audio(path: str | os.PathLike) -> tuple[torch.Tensor, AudioInfo]:
    """Read an audio file as a mono float32 waveform at its own rate: (N,) in [-1, 1] (channels averaged),
    and what was actually read (rate, samples, channels). Raises ``ValueError`` on empty, truncated (a WAV
    holding less data than its header declares) or NaN/infinite audio, and on unreadable files."""
    import soundfile as sf

    data, file_rate = sf.read(os.fspath(path), dtype="float32", always_2d=True)
    if data.shape[0] == 0:
        raise ValueError("no audio samples")
    declared = declared_wav_data_bytes(path, os.path.getsize(path))
    if declared is not None and declared[1] < declared[0]:
        raise ValueError(
            f"truncated: the header declares {declared[0]} bytes of audio, the file holds {declared[1]}"
        )
    sig = _mono(data)
    if not torch.isfinite(torch.from_numpy(data)).all():
        raise ValueError("NaN or infinite samples")
    return sig, AudioInfo(file_rate, data.shape[0], data.shape[1])


def _mono(data) -> torch.Tensor:
    """(N, C) numpy samples -> (N,) float tensor, the channels averaged."""
    sig = torch.from_numpy(data)
    return sig[:, 0] if sig.shape[1] == 1 else sig.mean(dim=1)


@functools.lru_cache(maxsize=16)
def _resampler(from_rate: int, to_rate: int, dtype: torch.dtype, device: torch.device) -> torch.nn.Module:
    """``torchaudio.transforms.Resample``: ``torchaudio.functional.resample``'s computation with its sinc
    kernel made once (computing it took about as long as applying it to a 22-frame training crop)."""
    import torchaudio.transforms as AT

    return AT.Resample(from_rate, to_rate, dtype=dtype).to(device)


def resample(sig: torch.Tensor, from_rate: int, to_rate: int) -> torch.Tensor:
    """(..., N) at ``from_rate`` -> (..., N') at ``to_rate`` (unchanged when the rates are equal)."""
    if from_rate == to_rate:
        return sig
    return _resampler(from_rate, to_rate, sig.dtype, sig.device)(sig)


def load_audio(path: str | os.PathLike, sample_rate: int) -> torch.Tensor:
    """Read an audio file as a mono float32 waveform at ``sample_rate``: (N,) in [-1, 1].

    Channels are averaged; any other rate is resampled. Raises on unreadable or empty files.
    """
    sig, info = read_audio(path)
    return resample(sig, info.sample_rate, sample_rate)


def _resampling_margin(from_rate: int, to_rate: int) -> tuple[int, int, int]:
    """``(orig, new, blocks)``: the rates divided by their gcd, and how many blocks of ``orig`` input samples
    (``new`` output samples) around a segment its resampling needs to equal the whole file's
    (``torchaudio.functional.resample``'s sinc kernel reaches ``width`` input samples to each side)."""
    gcd = math.gcd(from_rate, to_rate)
    orig, new = from_rate // gcd, to_rate // gcd
    width = math.ceil(6 * orig / (min(orig, new) * 0.99))  # torchaudio's default lowpass width and rolloff
    return orig, new, width // orig + 2


def load_audio_segment(path: str | os.PathLike, start: int, stop: int, sample_rate: int) -> torch.Tensor:
    """Samples ``[start, stop)`` of :func:`load_audio` ``(path, sample_rate)``, reading only them (and the
    few around them the resampling filter needs): (stop - start,) float32, equal to slicing the whole file's
    waveform up to float rounding. ``stop`` must not pass the end of the resampled file."""
    import soundfile as sf

    with sf.SoundFile(os.fspath(path)) as file:  # one open: header and samples
        file_rate, num_samples = file.samplerate, file.frames
        if file_rate == sample_rate:
            file.seek(start)
            return _mono(file.read(stop - start, dtype="float32", always_2d=True))
        orig, new, margin = _resampling_margin(file_rate, sample_rate)
        first_block = max(0, start // new - margin)
        file.seek(first_block * orig)
        count = min(num_samples, (-(-stop // new) + margin) * orig) - first_block * orig
        data = file.read(count, dtype="float32", always_2d=True)
    sig = resample(_mono(data), file_rate, sample_rate)
    offset = first_block * new
    return sig[start - offset : stop - offset]


class Written(NamedTuple):
    """A waveform as a WAV file holds it (see :func:`as_written`)."""

    sig: torch.Tensor  # (..., N) float32, the samples a reader of the file gets back
    clipped: int  # samples that were outside [-1, 1] and were clipped


def as_written(sig: torch.Tensor, subtype: str = "PCM_16") -> Written:
    """(..., N) waveform -> the samples a WAV file of ``subtype`` written by :func:`write_wav` holds, read
    back as float32: clipped to [-1, 1], then rounded by libsndfile itself (an in-memory round trip; its
    16-bit rounding is neither ``rint`` nor ``floor`` of ``x * 32768``). Score this, and write it: what is
    heard and what is measured are then the same samples. ``clipped`` counts the samples clipped."""
    import soundfile as sf

    data = sig.detach().float().cpu()
    clipped = int((data.abs() > 1.0).sum())
    frames = data.clamp(-1.0, 1.0).reshape(-1, data.shape[-1]).T.contiguous().numpy()  # (N, channels)
    buffer = io.BytesIO()
    sf.write(buffer, frames, 8000, subtype=subtype, format="WAV")  # the rate does not change the samples
    buffer.seek(0)
    back = sf.read(buffer, dtype="float32", always_2d=True)[0]
    return Written(torch.from_numpy(back.T.copy()).reshape(data.shape).to(sig.device), clipped)


def write_wav(path: str | os.PathLike, sig: torch.Tensor, sample_rate: int, subtype: str = "PCM_16") -> None:
    """Write a (N,) waveform as a WAV file (clipped to [-1, 1]), atomically: never a truncated file. Reading
    it back gives :func:`as_written` of ``sig``."""
    import soundfile as sf

    data = sig.detach().float().cpu().clamp(-1.0, 1.0).numpy()
    atomic_write(Path(path), lambda tmp: sf.write(tmp, data, sample_rate, subtype=subtype, format="WAV"))


def fit_length(sig: torch.Tensor, length: int) -> torch.Tensor:
    """Cut ``sig`` (..., N) to ``length`` samples, or right-pad it by repeating its last sample."""
    if sig.shape[-1] >= length:
        return sig[..., :length]
    missing = length - sig.shape[-1]
    return F.pad(sig.unsqueeze(-2), (0, missing), mode="replicate").squeeze(-2)


def absolute_lengths(lens: torch.Tensor | None, batch_size: int, total: int) -> list[int]:
    """Valid samples (or frames) of each item of a padded batch from SpeechBrain relative lengths.

    ``round(lens[b] * total)``, between 1 and ``total``; every item is whole when ``lens`` is None.
    """
    if lens is None:
        return [total] * batch_size
    lens = torch.as_tensor(lens, dtype=torch.float64).reshape(-1).cpu()
    if lens.numel() != batch_size:
        raise ValueError(f"lens has {lens.numel()} entries for a batch of {batch_size}")
    return [min(total, max(1, round(value * total))) for value in lens.tolist()]
