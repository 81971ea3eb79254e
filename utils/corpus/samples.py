"""Small generated corpora in the ``folder`` and ``list`` formats (tests, demos), in the synthetic voice of
:mod:`utils.sample_corpus` (``python -m utils.sample_corpus OUT_DIR --layout folder|list``).

* :func:`make_folder_corpus`: ``<root>/<split>/<speaker>/<speaker>_<utt>.<ext>`` in mixed formats (wav,
  flac, ogg; mp3 on request), sample rates (16, 22.05, 24, 44.1 kHz) and channel counts (every third file
  stereo), with optional broken files (``FOLDER_BAD_FILES``);
* :func:`make_list_corpus`: the same audio under ``<root>/audio/`` and a CSV/TSV/JSON list of it.
"""

import json
from pathlib import Path

import numpy as np
import soundfile as sf

from utils.sample_corpus import _rng, _speaker, synthesize

__all__ = [
    "FOLDER_BAD_FILES",
    "FOLDER_FORMATS",
    "FOLDER_RATES",
    "FOLDER_SPLITS",
    "make_folder_corpus",
    "make_list_corpus",
]

# Folder and list corpora: {split folder: (n_speakers, n_utterances)}; "" is no split folder
FOLDER_SPLITS = {"train": (3, 3), "valid": (1, 2), "test": (1, 2)}
FOLDER_FORMATS = ("wav", "flac", "ogg")
FOLDER_RATES = (16000, 22050, 24000, 44100)
# soundfile (format, subtype) of each suffix; mp3 where libsndfile writes it (1.1 and later)
_SUFFIX_FORMATS = {
    "wav": ("WAV", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
    "ogg": ("OGG", "VORBIS"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
}
# Bad files of make_folder_corpus(bad=True), relative to the first split folder -> expected skip reason
FOLDER_BAD_FILES = {
    "spk99/empty.wav": "empty_file",
    "spk99/notaudio.flac": "not_audio",
    "spk99/truncated.wav": "truncated",
    "spk99/short.ogg": "too_short",
}


def _write_audio(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    """Write in the format of ``path``'s suffix (see ``_SUFFIX_FORMATS``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    file_format, subtype = _SUFFIX_FORMATS[path.suffix.lstrip(".").lower()]
    sf.write(str(path), np.clip(audio, -1.0, 1.0), sample_rate, format=file_format, subtype=subtype)


def make_folder_corpus(
    root,
    splits: dict | None = None,
    formats: tuple[str, ...] = FOLDER_FORMATS,
    sample_rates: tuple[int, ...] = FOLDER_RATES,
    stereo_every: int = 3,
    min_seconds: float = 1.2,
    max_seconds: float = 2.0,
    seed: int = 0,
    bad: bool = False,
) -> list[Path]:
    """Write a tree of synthetic speech in mixed formats, rates and channel counts; return its audio files.

    Arguments
    ---------
    root : where to write (created if needed).
    splits : ``{split folder: (n_speakers, n_utterances_per_speaker)}``, default ``FOLDER_SPLITS``; the
        folder ``""`` puts the speakers right under ``root``.
    formats, sample_rates : file ``i`` (counted over the whole corpus) is ``formats[i % len(formats)]`` at
        ``sample_rates[i % len(sample_rates)]`` (``"mp3"`` where ``soundfile`` can write it).
    stereo_every : every ``stereo_every``-th file has two different channels (0: none).
    min_seconds, max_seconds, seed : lengths drawn in this range; everything follows from ``seed``.
    bad : also write ``FOLDER_BAD_FILES`` into the first split folder (not returned).

    Files are ``<root>/<split>/spkNN/spkNN_UUU.<ext>`` with speakers numbered across splits (no speaker in
    two splits). The same arguments give the same audio (and bytes, but for the random stream serial
    number of Ogg containers).
    """
    root, files, index = Path(root), [], 0
    speaker_number = 0
    for split, (n_speakers, n_utts) in (FOLDER_SPLITS if splits is None else splits).items():
        for _ in range(n_speakers):
            speaker_number += 1
            speaker = f"spk{speaker_number:02d}"
            voice = _speaker(seed, speaker)
            for u in range(n_utts):
                rate = sample_rates[index % len(sample_rates)]
                path = root / split / speaker / f"{speaker}_{u + 1:03d}.{formats[index % len(formats)]}"
                rng = _rng(seed, "folder", speaker, u)
                n = round(rng.uniform(min_seconds, max_seconds) * rate)
                audio = synthesize(n, rate, voice, rng)
                if stereo_every and index % stereo_every == stereo_every - 1:
                    audio = np.stack([audio, synthesize(n, rate, voice, _rng(seed, "right", speaker, u))], 1)
                _write_audio(path, audio, rate)
                files.append(path)
                index += 1
    if bad:
        _make_folder_bad_files(root / next(iter(FOLDER_SPLITS if splits is None else splits)), seed)
    return sorted(files)


def _make_folder_bad_files(folder: Path, seed: int) -> None:
    """The files of ``FOLDER_BAD_FILES`` under ``folder``."""
    paths = {name: folder / name for name in FOLDER_BAD_FILES}
    paths["spk99/empty.wav"].parent.mkdir(parents=True, exist_ok=True)
    paths["spk99/empty.wav"].write_bytes(b"")
    paths["spk99/notaudio.flac"].write_text("Not audio at all.\n", encoding="utf-8")
    voice = _speaker(seed, "spk99")
    _write_audio(paths["spk99/truncated.wav"], synthesize(32000, 16000, voice, _rng(seed, "cut")), 16000)
    data = paths["spk99/truncated.wav"].read_bytes()
    paths["spk99/truncated.wav"].write_bytes(data[: 44 + (len(data) - 44) // 2])
    _write_audio(paths["spk99/short.ogg"], synthesize(4800, 16000, voice, _rng(seed, "short")), 16000)


def make_list_corpus(root, list_name: str = "files.csv", absolute: bool = False, **folder_options) -> Path:
    """Audio as :func:`make_folder_corpus` under ``root/audio/`` and a list of it; return the list's path.

    The list (``.csv``, ``.tsv``, ``.json`` or ``.jsonl``, after ``list_name``) has the columns ``path``
    (relative to the list, or ``absolute``), ``duration`` (seconds), ``speaker`` and ``split`` (the split
    folder's name, empty for ``""``). ``folder_options`` go to :func:`make_folder_corpus` (``bad`` files
    are written but not listed).
    """
    root = Path(root)
    rows = []
    for path in make_folder_corpus(root / "audio", **folder_options):
        relative = path.relative_to(root / "audio")
        split = relative.parts[0] if len(relative.parts) > 2 else ""
        rows.append(
            {
                "path": str(path if absolute else path.relative_to(root)),
                "duration": round(sf.info(str(path)).duration, 3),
                "speaker": path.parent.name,
                "split": split,
            }
        )
    list_path = root / list_name
    suffix = list_path.suffix.lower()
    if suffix == ".json":
        text = json.dumps(rows, indent=1)
    elif suffix == ".jsonl":
        text = "".join(json.dumps(row) + "\n" for row in rows)
    else:
        delimiter = "\t" if suffix == ".tsv" else ","
        lines = [delimiter.join(rows[0])] + [delimiter.join(str(v) for v in row.values()) for row in rows]
        text = "\n".join(lines) + "\n"
    list_path.write_text(text, encoding="utf-8")
    return list_path
