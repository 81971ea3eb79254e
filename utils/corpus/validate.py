"""Finding audio files and validating one file: is it audio that can be read to the end?

Every corpus format lists its files with :func:`find_audio` (a folder tree) or from a list, then runs
:func:`validate_audio` on each. Files are only ever opened for reading.

Skip reasons (the ``reason`` of ``validate_audio``, as they appear in the preparation report):

* ``missing_file``: no file at that path (a list naming a file that is not there);
* ``empty_file``: zero bytes;
* ``not_audio``: libsndfile does not recognise the format (a text file, an AppleDouble ``._*`` file);
* ``unreadable``: any other open or read error, a broken link, a folder or special file;
* ``truncated``: the file holds less audio than its header declares (a cut WAV data chunk, an MP3 whose
  frame count is short; libsndfile itself silently reads the shorter file);
* ``no_frames``: a valid header but no audio sample;
* ``non_finite``: NaN or infinite samples (float WAVs).

``bad_name`` (a file name that is not valid UTF-8) is found by :func:`check_name`.
"""

import os
import struct

import numpy as np
import soundfile as sf

from focalcodec.audio import AUDIO_SUFFIXES, declared_wav_data_bytes

__all__ = [
    "AUDIO_SUFFIXES",
    "MIN_ENCODABLE_SECONDS",
    "AudioCheck",
    "check_name",
    "find_audio",
    "printable",
    "validate_audio",
]

# WavLM's convolutional front end needs 400 samples (25 ms at 16 kHz) to produce one frame: shorter
# utterances are always dropped, whatever min_duration says.
MIN_ENCODABLE_SECONDS = 0.025
# Read audio in blocks so that a very long file does not need to fit in memory.
_READ_BLOCK_FRAMES = 1 << 20

# What validate_audio returns: (info, None, "") for usable audio, with info = {"frames", "sample_rate",
# "channels"}; (None, reason, detail) otherwise.
AudioCheck = tuple[dict | None, str | None, str]


def find_audio(
    folder: str, suffixes: tuple[str, ...] = AUDIO_SUFFIXES, exclude: tuple[str, ...] = ()
) -> list[str]:
    """Every file under ``folder`` whose name ends with one of ``suffixes`` (case-insensitive), recursively,
    sorted.

    Symbolic links to folders are followed (each real folder is visited once). Broken links and other
    non-files with such a name are included, so that validation reports them. Folders in ``exclude``
    (compared by real path) are not entered.
    """
    suffixes = tuple(suffix.lower() for suffix in suffixes)
    found, seen = [], {os.path.realpath(path) for path in exclude}
    for root, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs.sort()
        found.extend(os.path.join(root, name) for name in files if name.lower().endswith(suffixes))
    return sorted(found)


def printable(path: str) -> str:
    """A path as valid text (undecodable bytes of a file name shown as U+FFFD)."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def check_name(path: str) -> AudioCheck | None:
    """``(None, "bad_name", why)`` when the path is not valid UTF-8 (audio libraries cannot open it)."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return None, "bad_name", "the file name is not valid UTF-8 (audio libraries cannot open it)"
    return None


def _read_to_end(handle: sf.SoundFile) -> tuple[int, bool]:
    """Read an open file block by block: ``(frames read, all samples finite)``."""
    frames, finite = 0, True
    while True:
        block = handle.read(_READ_BLOCK_FRAMES, dtype="float32", always_2d=True)
        if len(block) == 0:
            return frames, finite
        frames += len(block)
        if finite and not np.isfinite(block).all():
            finite = False


def _open(path: str) -> tuple[sf.SoundFile | None, AudioCheck | None]:
    """``(handle, None)``, or ``(None, check)`` for a missing, empty, non-audio or unopenable file."""
    if not os.path.lexists(path):
        return None, (None, "missing_file", "no such file")
    if not os.path.isfile(path):
        return None, (None, "unreadable", "not a regular file (broken link or special file)")
    if os.path.getsize(path) == 0:
        return None, (None, "empty_file", "zero bytes")
    try:
        return sf.SoundFile(path, mode="r"), None
    except sf.LibsndfileError as error:
        text = str(error)
        if "not recognised" in text.lower():
            return None, (None, "not_audio", text)
        if text.rstrip().endswith(":"):  # e.g. a text file named .mp3: the decoder gives no reason
            text = f"{text.rstrip()} no reason given (not a valid file of the format its suffix names?)"
        return None, (None, "unreadable", text)


def validate_audio(path: str) -> AudioCheck:
    """Open ``path`` (any format libsndfile reads: WAV, FLAC, OGG, MP3, ...) and read it to the end.

    Returns
    -------
    ``(info, None, "")`` for usable audio, with ``info = {"frames", "sample_rate", "channels"}``;
    ``(None, reason, detail)`` otherwise, with ``reason`` one of ``missing_file``, ``empty_file``,
    ``not_audio``, ``unreadable``, ``truncated``, ``no_frames``, ``non_finite``.

    The file is only opened for reading.
    """
    try:
        handle, failed = _open(path)
        if failed is not None:
            return failed
        with handle:
            sample_rate, channels, header_frames = handle.samplerate, handle.channels, handle.frames
            frames, finite = _read_to_end(handle)
        if sample_rate <= 0 or channels <= 0:
            return None, "unreadable", f"invalid header (sample rate {sample_rate}, channels {channels})"
        # libsndfile silently shortens a WAV whose data chunk is cut: compare with the declared size.
        declared = declared_wav_data_bytes(path, os.path.getsize(path))
        if declared is not None and declared[1] < declared[0]:
            detail = f"header declares {declared[0]} bytes of audio data, the file holds {declared[1]}"
            return None, "truncated", detail
        if header_frames > 0 and frames < header_frames:
            return None, "truncated", f"header declares {header_frames} frames, {frames} could be read"
        if frames == 0:
            return None, "no_frames", "the file holds no audio samples"
        if not finite:
            return None, "non_finite", "NaN or infinite samples"
        return {"frames": frames, "sample_rate": sample_rate, "channels": channels}, None, ""
    except (OSError, RuntimeError, ValueError, struct.error) as error:
        return None, "unreadable", f"{type(error).__name__}: {error}"
