"""LibriTTS data preparation: scan the corpus, validate every file and write the JSON manifests.

``prepare_libritts`` keeps the signature of SpeechBrain's ``recipes/LibriTTS/libritts_prepare.py`` and
writes the same manifests (``{uttid: {"wav": ..., "duration": ..., ...}}``), with these differences:

* The corpus is only ever **read**. The original resampled every file to 16 kHz in place (deleting the
  original); here audio keeps its rate and channels on disk and the data pipeline resamples and downmixes
  on load. Each entry records the file's ``sample_rate`` and ``channels``.
* Every file is validated (opened and read to the end): zero-byte, non-audio, unreadable and truncated
  files are skipped and listed with the reason in a report file (``prepare_report.json``).
* A missing ``data_folder`` or split folder raises ``FileNotFoundError`` naming the path and the expected
  layout (the original called ``quit()``, ending the program silently with exit code 0).
* A missing ``.normalized.txt`` gives ``label: ""`` and a warning (the recipe does not use the text); the
  original skipped the utterance.
* The validation set is drawn (``valid_size`` utterances, seeded) from the *usable* files, after the
  duration filter; with fewer usable files than ``valid_size`` all of them are used (the original sampled
  500 before filtering and crashed with fewer than 500 files).
* Files are listed in sorted order (the original used file-system walk order, not reproducible), and the
  global ``random`` state is left alone (the original called ``random.seed(seed)``).
* Idempotent: the options that shape the output are stored in ``prepare_options.json`` next to the train
  manifest. A run with the same options and all manifests present does nothing; any change redoes the
  preparation. Manifests are written atomically and the options file last, so an interrupted run is
  redone.
* ``model_name`` is accepted for compatibility: no grapheme-to-phoneme model is used (``"HiFi-GAN"``,
  ``"Tacotron2"`` and ``None`` all give plain manifests, as ``"HiFi-GAN"`` did in the original).

Manifest entry (one per utterance, keyed by the utterance id)::

    {"uttid": "84_121123_000007_000001", "wav": "/abs/path/84_121123_000007_000001.wav",
     "duration": 5.87 (seconds), "sample_rate": 24000 (the file's own), "channels": 1,
     "spk_id": "84", "label": "normalized text", "segment": true ("train" in the manifest's file name)}

String values have ``{``/``}`` doubled, because SpeechBrain's ``DynamicItemDataset.from_json`` formats them
with ``{data_root}``: a path containing braces then loads unchanged.

Report (``prepare_report.json``)::

    {"data_folder": ..., "options": {...},
     "sets": {"train": {"subsets": [...], "found", "usable", "kept", "skipped_unreadable", "too_short",
                        "too_long", "duplicate", "missing_text", "skip_reasons": {reason: count},
                        "hours", "manifest"}, "valid": {... "not_drawn"}, "test": {...}},
     "skipped": [{"stage", "wav", "reason", "detail"}, ...],
     "warnings": [{"stage", "wav", "reason": "missing_text", "detail"}, ...]}

Skip reasons: ``empty_file`` (zero bytes), ``not_audio`` (format not recognised), ``unreadable`` (any
other open/read error, broken link), ``truncated`` (the WAV header declares more data than the file holds;
libsndfile itself silently reads the shorter file), ``no_frames``, ``non_finite`` (NaN/inf samples),
``bad_name`` (file name not valid UTF-8), all counted in ``skipped_unreadable``; then ``too_short``,
``too_long`` and ``duplicate`` (same utterance id twice in one set).

Expected layout (LibriTTS, https://www.openslr.org/60)::

    <data_folder>/<split>/<speaker>/<chapter>/<speaker>_<chapter>_<utt>_<seg>.wav
    <data_folder>/<split>/<speaker>/<chapter>/<speaker>_<chapter>_<utt>_<seg>.normalized.txt

with ``<split>`` one of ``train-clean-100``, ``train-clean-360``, ``train-other-500``, ``dev-clean``,
``test-clean``, ... Run ``python libritts_prepare.py DATA_FOLDER OUT_DIR`` to prepare from the shell.
"""

import json
import logging
import os
import random
import struct
from collections import Counter
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from focalcodec.files import atomic_write_json

__all__ = [
    "LIBRITTS_URL",
    "MIN_ENCODABLE_SECONDS",
    "CorpusError",
    "find_wavs",
    "prepare_libritts",
    "validate_wav",
]

logger = logging.getLogger(__name__)

LIBRITTS_URL = "https://www.openslr.org/60"
OPTIONS_FILE = "prepare_options.json"
REPORT_FILE = "prepare_report.json"
FORMAT_VERSION = 1
SUPPORTED_MODEL_NAMES = (None, "HiFi-GAN", "Tacotron2")
# WavLM's convolutional front end needs 400 samples (25 ms at 16 kHz) to produce one frame: shorter
# utterances are always dropped, whatever min_duration says.
MIN_ENCODABLE_SECONDS = 0.025
# Read audio in blocks so that a very long file does not need to fit in memory.
_READ_BLOCK_FRAMES = 1 << 20
# Data-chunk sizes written by streaming writers that do not know the length in advance (espeak-ng and
# sox --stdout write 0x7ffff000, ffmpeg 0xffffffff, some tools 0): not evidence of truncation.
_STREAMING_SIZE_MIN = 0x7FFF0000


class CorpusError(RuntimeError):
    """The corpus cannot give a usable split (for example no readable utterance at all)."""


def _layout_hint(data_folder: str, split: str = "<split>") -> str:
    return (
        "Expected the LibriTTS layout: "
        f"{data_folder}/{split}/<speaker>/<chapter>/<speaker>_<chapter>_<utt>_<seg>.wav "
        "(with <uttid>.normalized.txt beside each wav), i.e. data_folder is the LibriTTS/ folder that "
        "contains train-clean-100/, dev-clean/, test-clean/, ... "
        f"Download and unpack it from {LIBRITTS_URL}, or run `python -m utils.sample_corpus DATA_FOLDER` "
        "for a small generated corpus."
    )


def _as_list(value) -> list[str]:
    """``None``/``""``/``[]`` -> ``[]``; ``"a"`` -> ``["a"]``; a list or tuple is kept."""
    if not value:
        return []
    if isinstance(value, str | os.PathLike):
        return [os.fspath(value)]
    return [os.fspath(v) for v in value]


# ----------------------------------------------------------------------------------------------------
# Finding and validating files
# ----------------------------------------------------------------------------------------------------


def _split_folder(data_folder: str, split: str) -> str:
    """The folder of one split, or ``FileNotFoundError`` with the expected layout."""
    folder = os.path.join(data_folder, split)
    if os.path.isdir(folder):
        return folder
    message = f"LibriTTS split folder not found: {folder}"
    if os.path.exists(folder):
        message = f"LibriTTS split path is not a folder: {folder}"
    if os.path.isfile(folder + ".tar.gz"):
        message += f" (the archive {folder}.tar.gz is there: unpack it first)"
    nested = os.path.join(data_folder, "LibriTTS", split)
    if os.path.isdir(nested):
        message += f" (but {nested} exists: set data_folder to {os.path.join(data_folder, 'LibriTTS')})"
    else:
        try:
            present = sorted(e.name for e in os.scandir(data_folder) if e.is_dir())
        except OSError:
            present = []
        message += f". Folders in {data_folder}: {', '.join(present[:20]) if present else 'none'}"
    raise FileNotFoundError(f"{message}.\n{_layout_hint(data_folder, split)}")


def find_wavs(folder: str) -> list[str]:
    """Every ``*.wav`` file (case-insensitive) under ``folder``, recursively, sorted.

    Symbolic links to folders are followed (each real folder is visited once). Broken links and other
    non-files named ``*.wav`` are included, so that validation reports them.
    """
    found, seen = [], set()
    for root, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs.sort()
        found.extend(os.path.join(root, name) for name in files if name.lower().endswith(".wav"))
    return sorted(found)


def _declared_wav_data_bytes(path: str, file_size: int) -> tuple[int, int] | None:
    """For a RIFF/WAVE file: ``(declared, available)`` byte counts of its ``data`` chunk.

    ``None`` when the file is not a plain RIFF WAVE file, or when the declared size is a streaming
    placeholder (length unknown when the header was written), i.e. when truncation cannot be judged
    from the header.
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


def validate_wav(path: str) -> tuple[dict | None, str | None, str]:
    """Open and read ``path`` to the end.

    Returns
    -------
    ``(info, None, "")`` for usable audio, with ``info = {"frames", "sample_rate", "channels"}``;
    ``(None, reason, detail)`` otherwise, with ``reason`` one of ``empty_file``, ``not_audio``,
    ``unreadable``, ``truncated``, ``no_frames``, ``non_finite``.

    The file is only opened for reading.
    """
    try:
        if not os.path.isfile(path):
            return None, "unreadable", "not a regular file (broken link or special file)"
        size = os.path.getsize(path)
        if size == 0:
            return None, "empty_file", "zero bytes"
        try:
            handle = sf.SoundFile(path, mode="r")
        except sf.LibsndfileError as error:
            text = str(error)
            if "Format not recognised" in text or "not recognised" in text.lower():
                return None, "not_audio", text
            return None, "unreadable", text
        with handle:
            sample_rate, channels, header_frames = handle.samplerate, handle.channels, handle.frames
            frames, finite = 0, True
            while True:
                block = handle.read(_READ_BLOCK_FRAMES, dtype="float32", always_2d=True)
                if len(block) == 0:
                    break
                frames += len(block)
                if finite and not np.isfinite(block).all():
                    finite = False
        if sample_rate <= 0 or channels <= 0:
            return None, "unreadable", f"invalid header (sample rate {sample_rate}, channels {channels})"
        # libsndfile silently shortens a WAV whose data chunk is cut: compare with the declared size.
        declared = _declared_wav_data_bytes(path, size)
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


def _printable(path: str) -> str:
    """A path as valid text (undecodable bytes of a file name shown as U+FFFD)."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _read_label(wav_path: str, uttid: str) -> tuple[str | None, str]:
    """The normalized text (braces removed), or ``(None, why)`` when missing or unreadable."""
    text_path = os.path.join(os.path.dirname(wav_path), f"{uttid}.normalized.txt")
    if not os.path.isfile(text_path):
        return None, f"no {os.path.basename(text_path)}"
    try:
        with open(text_path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError as error:
        return None, f"cannot read {os.path.basename(text_path)}: {error}"
    return text.replace("{", "").replace("}", "").strip(), ""


# ----------------------------------------------------------------------------------------------------
# Scanning a split
# ----------------------------------------------------------------------------------------------------


def _scan(
    data_folder: str,
    subsets: list[str],
    stage: str,
    min_duration: float,
    max_duration: float | None,
    report: dict,
) -> tuple[list[dict], dict]:
    """Validate every wav of ``subsets``; return the usable entries and the counts (skips go to report)."""
    wavs = []
    for subset in subsets:
        folder = _split_folder(data_folder, subset)
        found = find_wavs(folder)
        if not found:
            raise FileNotFoundError(
                f"No .wav file found under {folder} (split {subset!r} of the {stage} set).\n"
                f"{_layout_hint(data_folder, subset)}"
            )
        wavs.extend(found)
    counts = Counter()
    reasons = Counter()
    entries, seen = [], {}
    floor = max(min_duration, MIN_ENCODABLE_SECONDS)

    def skip(path, reason, detail, **extra):
        reasons[reason] += 1
        report["skipped"].append({"stage": stage, "wav": path, "reason": reason, "detail": detail, **extra})

    for wav in tqdm(wavs, desc=f"Checking {stage} ({'+'.join(subsets)})", unit="file", dynamic_ncols=True):
        path = os.path.abspath(wav)
        try:
            path.encode("utf-8")
        except UnicodeEncodeError:
            counts["skipped_unreadable"] += 1
            skip(
                _printable(path),
                "bad_name",
                "the file name is not valid UTF-8 (audio libraries cannot open it)",
            )
            continue
        info, reason, detail = validate_wav(path)
        if info is None:
            counts["skipped_unreadable"] += 1
            skip(path, reason, detail)
            continue
        duration = info["frames"] / info["sample_rate"]
        if duration < floor:
            counts["too_short"] += 1
            skip(path, "too_short", f"{duration:.3f} s < {floor:g} s", duration=duration)
            continue
        if max_duration is not None and duration > max_duration:
            counts["too_long"] += 1
            skip(path, "too_long", f"{duration:.3f} s > {max_duration:g} s", duration=duration)
            continue
        uttid = Path(path).name[: -len(".wav")]
        if uttid in seen:
            counts["duplicate"] += 1
            skip(path, "duplicate", f"same utterance id as {seen[uttid]}")
            continue
        seen[uttid] = path
        label, why = _read_label(path, uttid)
        if label is None:
            counts["missing_text"] += 1
            report["warnings"].append({"stage": stage, "wav": path, "reason": "missing_text", "detail": why})
            label = ""
        entries.append(
            {
                "uttid": uttid,
                "wav": path,
                "duration": duration,
                "sample_rate": info["sample_rate"],
                "channels": info["channels"],
                "spk_id": uttid.split("_")[0],
                "label": label,
            }
        )
    stats = {"found": len(wavs), "usable": len(entries)}
    for key in ("skipped_unreadable", "too_short", "too_long", "duplicate", "missing_text"):
        stats[key] = counts[key]
    stats["skip_reasons"] = dict(sorted(reasons.items()))
    return entries, stats


# ----------------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------------


def _sb_escape(text: str) -> str:
    """SpeechBrain's ``from_json`` runs ``str.format_map`` on every string value (for ``{data_root}``):
    double the braces so that a path containing ``{`` or ``}`` comes out unchanged."""
    return text.replace("{", "{{").replace("}", "}}")


def _manifest(entries: list[dict], json_file: str) -> dict:
    """SpeechBrain JSON: ``{uttid: entry}``; ``segment`` as the original (``"train"`` in the file name)."""
    segment = "train" in os.path.basename(json_file)
    manifest = {}
    for entry in entries:
        escaped = {key: _sb_escape(entry[key]) for key in ("uttid", "wav", "spk_id")}
        manifest[entry["uttid"]] = {**entry, **escaped, "segment": segment}
    return manifest


def _log_stats(stage: str, subsets: list[str], stats: dict, note: str = "") -> None:
    parts = [f"{stats['kept']} kept of {stats['found']} found"]
    for key, label in (
        ("skipped_unreadable", "unreadable/invalid"),
        ("too_short", "too short"),
        ("too_long", "too long"),
        ("duplicate", "duplicate ids"),
    ):
        if stats.get(key):
            parts.append(f"{stats[key]} {label}")
    if stats.get("missing_text"):
        parts.append(f"{stats['missing_text']} without text (label '')")
    message = f"LibriTTS {stage} ({'+'.join(subsets)}): {', '.join(parts)}"
    if stats.get("kept"):
        message += f", {stats['hours']:.2f} h"
    if note:
        message += f"; {note}"
    level = logging.WARNING if stats.get("skipped_unreadable") or stats.get("duplicate") else logging.INFO
    logger.log(level, message)


# ----------------------------------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------------------------------


def _read_json(path: str):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def prepare_libritts(
    data_folder,
    save_json_train,
    save_json_valid,
    save_json_test,
    sample_rate=16000,
    split_ratio=(80, 10, 10),
    libritts_subsets=None,
    train_split=None,
    valid_split=None,
    test_split=None,
    seed=1234,
    model_name=None,
    skip_prep=False,
    valid_size=500,
    min_duration=1.0,
    max_duration=None,
    report_file=None,
):
    """Write the train/valid/test JSON manifests of a LibriTTS corpus (call it through ``run_on_main``).

    Arguments
    ---------
    data_folder : str
        The LibriTTS root: the folder that contains ``train-clean-100/``, ``dev-clean/``, ...
    save_json_train, save_json_valid, save_json_test : str
        Where to write the manifests.
    sample_rate : int
        The rate the recipe works at. Kept for compatibility and recorded with the options: the corpus is
        not resampled here (the data pipeline resamples on load).
    split_ratio : sequence of 3 numbers
        Train/valid/test proportions, used only with ``libritts_subsets``.
    libritts_subsets : list of str, optional
        Pool these subsets and split them at random by ``split_ratio`` (the original's alternative path).
        Used when the three ``*_split`` arguments are not all given.
    train_split, valid_split, test_split : str or list of str, optional
        The subsets of each set, e.g. ``["train-clean-100"]``, ``["dev-clean"]``, ``["test-clean"]``.
    seed : int
        Seeds the validation-set draw and the ``libritts_subsets`` shuffle (a private ``random.Random``).
    model_name : str, optional
        ``"HiFi-GAN"`` (what the recipe passes), ``"Tacotron2"`` or ``None``: plain manifests. Other names
        (which needed phonemes from a G2P model in the original) raise ``ValueError``.
    skip_prep : bool
        Do nothing.
    valid_size : int, optional
        The number of utterances drawn from the usable ``valid_split`` files (500 as the original); all of
        them when fewer are available, or when ``None``/``0``.
    min_duration, max_duration : float, optional
        Keep utterances with ``min_duration <= duration <= max_duration`` seconds (the original dropped
        those under 1 s and had no maximum).
    report_file : str, optional
        The JSON report (default: ``prepare_report.json`` beside the train manifest): per-set counts and
        every skipped file with its reason.

    Returns
    -------
    The report (a dict), or ``None`` when ``skip_prep`` is set or the manifests were already prepared.

    Raises
    ------
    FileNotFoundError : ``data_folder`` or a split folder is missing, or a split holds no ``.wav``.
    CorpusError : a set ends up with no usable utterance (see the report).
    ValueError : unsupported ``model_name`` or inconsistent arguments.
    """
    if skip_prep:
        return None
    if model_name not in SUPPORTED_MODEL_NAMES:
        raise ValueError(
            f"model_name={model_name!r} is not supported: this port writes plain manifests only "
            f"(no grapheme-to-phoneme labels); use one of {SUPPORTED_MODEL_NAMES}."
        )
    if data_folder is None or str(data_folder) == "":
        raise FileNotFoundError(f"data_folder is not set.\n{_layout_hint('<data_folder>')}")
    data_folder = os.path.abspath(os.fspath(data_folder))
    if not os.path.isdir(data_folder):
        raise FileNotFoundError(
            f"LibriTTS data_folder not found (or not a folder): {data_folder}.\n"
            + _layout_hint(data_folder, "train-clean-100")
        )

    splits = {"train": _as_list(train_split), "valid": _as_list(valid_split), "test": _as_list(test_split)}
    manifest_args = {"train": save_json_train, "valid": save_json_valid, "test": save_json_test}
    use_subsets = libritts_subsets is not None and not all(splits.values())
    if use_subsets:
        libritts_subsets = _as_list(libritts_subsets)
        if not libritts_subsets:
            raise ValueError("libritts_subsets is empty")
        if len(split_ratio) != 3 or sum(split_ratio) <= 0 or min(split_ratio) < 0:
            raise ValueError(f"split_ratio must be 3 non-negative numbers, got {split_ratio!r}")
        stages = ["train", "valid", "test"]
        splits = dict.fromkeys(stages)
    else:
        libritts_subsets = None
        stages = [stage for stage in ("train", "valid", "test") if splits[stage]]
        if not stages:
            raise ValueError(
                "Nothing to prepare: give train_split, valid_split, test_split or libritts_subsets"
            )
        for stage in ("train", "valid", "test"):
            if not splits[stage]:
                logger.warning(f"No {stage}_split given: {manifest_args[stage]} is not written.")
    missing_paths = [stage for stage in stages if not manifest_args[stage]]
    if missing_paths:
        raise ValueError(f"No manifest path given for: {', '.join(missing_paths)}")
    manifests = {stage: os.path.abspath(os.fspath(manifest_args[stage])) for stage in stages}
    if max_duration is not None and max_duration < min_duration:
        raise ValueError(f"max_duration ({max_duration}) is smaller than min_duration ({min_duration})")

    out_dir = os.path.dirname(manifests[stages[0]])
    options_path = os.path.join(out_dir, OPTIONS_FILE)
    report_path = os.path.join(out_dir, REPORT_FILE)
    if report_file:
        report_path = os.path.abspath(os.fspath(report_file))
    # Everything that shapes the output: a change in any of these redoes the preparation.
    options = {
        "format_version": FORMAT_VERSION,
        "data_folder": data_folder,
        "manifests": manifests,
        "mode": "subsets" if use_subsets else "splits",
        "splits": splits,
        "libritts_subsets": libritts_subsets,
        "split_ratio": list(split_ratio) if use_subsets else None,
        "sample_rate": sample_rate,
        "seed": seed,
        "valid_size": valid_size,
        "min_duration": float(min_duration),
        "max_duration": None if max_duration is None else float(max_duration),
    }
    if _read_json(options_path) == options and all(os.path.isfile(p) for p in manifests.values()):
        logger.info(f"LibriTTS manifests already prepared with the same options ({options_path}): skipping.")
        return None
    # From here on the old manifests are stale: drop the options file first, so that an interrupted run
    # can never pass for a finished one.
    if os.path.exists(options_path):
        os.unlink(options_path)

    report = {
        "data_folder": data_folder,
        "options": options,
        "sets": {},
        "skipped": [],
        "warnings": [],
    }
    logger.info(f"Preparing LibriTTS manifests from {data_folder} (the corpus is only read)")
    durations = (float(min_duration), max_duration)
    try:
        if use_subsets:
            outputs = _prepare_subsets(
                data_folder, libritts_subsets, split_ratio, seed, durations, manifests, report
            )
        else:
            outputs = _prepare_splits(
                data_folder, splits, stages, seed, valid_size, durations, manifests, report
            )
    finally:
        if report["sets"] or report["skipped"]:
            atomic_write_json(report_path, report, indent=2)
    for stage in stages:
        atomic_write_json(manifests[stage], outputs[stage], indent=2)
    atomic_write_json(options_path, options, indent=2)
    skipped = len(report["skipped"])
    logger.info(
        f"LibriTTS manifests written to {out_dir}; report: {report_path}"
        + (f" ({skipped} files skipped, reasons listed there)" if skipped else "")
    )
    return report


def _finish_stage(stage, subsets, stats, entries, manifests, report, note="") -> dict:
    stats = {"found": stats["found"], "usable": stats["usable"], "kept": len(entries), **stats}
    stats["hours"] = round(sum(entry["duration"] for entry in entries) / 3600, 4)
    stats["manifest"] = manifests[stage]
    report["sets"][stage] = {"subsets": subsets, **stats}
    _log_stats(stage, subsets, stats, note)
    if not entries:
        raise CorpusError(
            f"The {stage} set ({'+'.join(subsets)}) has no usable utterance: {stats['found']} found, "
            f"{stats.get('skipped_unreadable', 0)} unreadable, {stats.get('too_short', 0)} too short, "
            f"{stats.get('too_long', 0)} too long. See the report for each file."
        )
    return _manifest(entries, manifests[stage])


def _prepare_splits(data_folder, splits, stages, seed, valid_size, durations, manifests, report):
    """The recipe's path: one or more subsets per set; the valid set is a seeded draw of ``valid_size``."""
    # Check that every folder exists before the (long) scan.
    for stage in stages:
        for subset in splits[stage]:
            _split_folder(data_folder, subset)
    outputs = {}
    for stage in stages:
        entries, stats = _scan(data_folder, splits[stage], stage, *durations, report)
        note = ""
        if stage == "valid" and valid_size and valid_size > 0:
            if len(entries) > valid_size:
                chosen = sorted(random.Random(seed).sample(range(len(entries)), valid_size))
                note = f"{valid_size} drawn at random (seed {seed}) from {len(entries)} usable"
                stats["not_drawn"] = len(entries) - valid_size
                entries = [entries[i] for i in chosen]
            elif entries:
                note = f"all {len(entries)} usable utterances used (fewer than valid_size={valid_size})"
        outputs[stage] = _finish_stage(stage, splits[stage], stats, entries, manifests, report, note)
    return outputs


def _prepare_subsets(data_folder, subsets, split_ratio, seed, durations, manifests, report):
    """The original's alternative path: pool ``subsets``, shuffle (seeded), cut by ``split_ratio``."""
    for subset in subsets:
        _split_folder(data_folder, subset)
    entries, stats = _scan(data_folder, subsets, "all", *durations, report)
    report["sets"]["all"] = {"subsets": subsets, **stats}
    random.Random(seed).shuffle(entries)
    total = sum(split_ratio)
    n_train = int(len(entries) * split_ratio[0] / total)
    n_valid = int(len(entries) * split_ratio[1] / total)
    parts = {
        "train": entries[:n_train],
        "valid": entries[n_train : n_train + n_valid],
        "test": entries[n_train + n_valid :],
    }
    outputs = {}
    for stage, part in parts.items():
        note = f"{list(split_ratio)} split of {len(entries)} usable"
        part_stats = {"found": len(part), "usable": len(part)}
        outputs[stage] = _finish_stage(stage, subsets, part_stats, part, manifests, report, note)
    return outputs


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Write LibriTTS train/valid/test manifests (read-only).")
    parser.add_argument("data_folder", help="the LibriTTS root (contains train-clean-100/, dev-clean/, ...)")
    parser.add_argument("out_dir", help="where to write train.json, valid.json, test.json")
    parser.add_argument("--train_split", nargs="+", default=["train-clean-100"])
    parser.add_argument("--valid_split", nargs="+", default=["dev-clean"])
    parser.add_argument("--test_split", nargs="+", default=["test-clean"])
    parser.add_argument("--valid_size", type=int, default=500)
    parser.add_argument("--min_duration", type=float, default=1.0)
    parser.add_argument("--max_duration", type=float, default=None)
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    prepare_libritts(
        args.data_folder,
        os.path.join(args.out_dir, "train.json"),
        os.path.join(args.out_dir, "valid.json"),
        os.path.join(args.out_dir, "test.json"),
        train_split=args.train_split,
        valid_split=args.valid_split,
        test_split=args.test_split,
        seed=args.seed,
        valid_size=args.valid_size,
        min_duration=args.min_duration,
        max_duration=args.max_duration,
    )
