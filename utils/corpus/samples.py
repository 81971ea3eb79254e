"""Small generated corpora for the quickstart, the tests and demos (``python -m utils.sample_corpus``), in the
voices of :mod:`utils.corpus.voice`:

* :func:`make_sample_corpus`: the LibriTTS layout, ``<root>/<split>/<speaker>/<chapter>/<uttid>.wav`` (16-bit,
  24 kHz) with ``.normalized.txt`` / ``.original.txt`` beside each file and a ``.trans.tsv`` per chapter;
  :func:`make_bad_files` adds deliberately broken or unusual files (``BAD_KINDS``);

* :func:`make_folder_corpus`: ``<root>/<split>/<speaker>/<speaker>_<utt>.<ext>`` in mixed formats (wav,
  flac, ogg; mp3 on request), sample rates (16, 22.05, 24, 44.1 kHz) and channel counts (every third file
  stereo), with optional broken files (``FOLDER_BAD_FILES``);
* :func:`make_list_corpus`: the same audio under ``<root>/audio/`` and a CSV/TSV/JSON list of it;
* :func:`make_librilight_corpus`: the Libri-Light layout, ``<root>/<subset>/<speaker>/<book>/<name>.flac``
  (long files of voiced stretches and pauses) with the ``.json`` of their voice activity beside each.
"""

import json
import struct
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from utils.corpus.voice import SENTENCES, resolve_engine, seeded_rng, speak, speaker_voice, synthesize

__all__ = [
    "BAD_KINDS",
    "DEFAULT_SPLITS",
    "FOLDER_BAD_FILES",
    "FOLDER_FORMATS",
    "FOLDER_RATES",
    "FOLDER_SPLITS",
    "make_bad_files",
    "make_folder_corpus",
    "make_librilight_corpus",
    "make_list_corpus",
    "make_sample_corpus",
]

DEFAULT_SPLITS = {"train-clean-100": (4, 6), "dev-clean": (2, 4), "test-clean": (2, 3)}

# Kinds of files added by make_bad_files, in order. Names: <speaker>_<chapter>_<kind>_000000.wav
BAD_KINDS = ("zerobyte", "truncated", "notaudio", "stereo44k", "rate8k", "tooshort", "toolong", "notext")
BAD_SPEAKER = "9999"
BAD_CHAPTER = "999999"

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
    "spk99/empty.wav": "empty_file",  # zero bytes
    "spk99/notaudio.flac": "not_audio",  # a text file with an audio suffix
    "spk99/truncated.wav": "truncated",  # half of its audio data cut off
    "spk99/short.ogg": "too_short",
    "spk99/no_frames.wav": "no_frames",  # a valid header, zero samples
    "spk99/nan.wav": "non_finite",  # float samples, some NaN
    "spk99/huge_header.wav": "truncated",  # the header declares 1 GiB of audio data
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
            voice = speaker_voice(seed, speaker)
            for u in range(n_utts):
                rate = sample_rates[index % len(sample_rates)]
                path = root / split / speaker / f"{speaker}_{u + 1:03d}.{formats[index % len(formats)]}"
                rng = seeded_rng(seed, "folder", speaker, u)
                n = round(rng.uniform(min_seconds, max_seconds) * rate)
                audio = synthesize(n, rate, voice, rng)
                if stereo_every and index % stereo_every == stereo_every - 1:
                    audio = np.stack(
                        [audio, synthesize(n, rate, voice, seeded_rng(seed, "right", speaker, u))], 1
                    )
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
    voice = speaker_voice(seed, "spk99")
    _write_audio(
        paths["spk99/truncated.wav"], synthesize(32000, 16000, voice, seeded_rng(seed, "cut")), 16000
    )
    data = paths["spk99/truncated.wav"].read_bytes()
    paths["spk99/truncated.wav"].write_bytes(data[: 44 + (len(data) - 44) // 2])
    _write_audio(paths["spk99/short.ogg"], synthesize(4800, 16000, voice, seeded_rng(seed, "short")), 16000)
    _write_audio(paths["spk99/no_frames.wav"], np.zeros(0, np.float32), 16000)
    audio = synthesize(16000, 16000, voice, seeded_rng(seed, "nan")).astype("<f4")
    audio[100:200] = np.nan
    paths["spk99/nan.wav"].write_bytes(_float_wav(audio, 16000))
    _write_audio(
        paths["spk99/huge_header.wav"], synthesize(16000, 16000, voice, seeded_rng(seed, "huge")), 16000
    )
    data = bytearray(paths["spk99/huge_header.wav"].read_bytes())
    at = data.index(b"data") + 4
    data[at : at + 4] = (1 << 30).to_bytes(4, "little")
    paths["spk99/huge_header.wav"].write_bytes(bytes(data))


def _float_wav(audio: np.ndarray, sample_rate: int) -> bytes:
    """A mono 32-bit float WAV file of ``audio`` (little-endian float32), without libsndfile's PEAK chunk
    (which holds a time stamp: the same samples would not give the same bytes)."""
    data = audio.astype("<f4").tobytes()
    fmt = struct.pack("<HHIIHH", 3, 1, sample_rate, 4 * sample_rate, 4, 32)  # IEEE float, mono
    chunks = (
        b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    )
    return b"RIFF" + struct.pack("<I", len(chunks)) + chunks


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


def _voice_activity(rng: np.random.Generator, seconds: float, voiced: tuple[float, float], long: float):
    """``[[onset, offset], ...]`` (seconds, 10 ms steps) of voiced stretches drawn in ``voiced`` with pauses
    of 0.3-1.5 s between them, within ``seconds``; the first stretch lasts ``long`` seconds when given."""
    segments, time = [], round(float(rng.uniform(0.2, 1.0)), 2)
    while True:
        length = long if long and not segments else float(rng.uniform(*voiced))
        end = round(time + length, 2)
        if end > seconds - 0.2:
            return segments
        segments.append([time, end])
        time = round(end + float(rng.uniform(0.3, 1.5)), 2)


def make_librilight_corpus(
    root,
    subset: str = "small",
    speakers: int = 3,
    files_per_speaker: int = 2,
    file_seconds: float = 30.0,
    voiced_seconds: tuple[float, float] = (1.0, 6.0),
    long_seconds: float = 0.0,
    sample_rate: int = 16000,
    seed: int = 0,
) -> list[Path]:
    """Write a small Libri-Light-layout corpus and return its audio files.

    Files are ``<root>/<subset>/<speaker>/book<b>/chapter<f>_book<b>.flac`` (speakers ``100``, ``101``, ...,
    one book each) of ``file_seconds``: voiced stretches (lengths drawn in ``voiced_seconds``) separated by
    pauses of a faint noise floor, the first stretch of the first file ``long_seconds`` long when given (to
    exercise the split of a segment longer than the cut). Beside each, ``chapter<f>_book<b>.json`` as
    Libri-Light's: ``{"speaker", "book_meta": {"id", "title"}, "snr", "voice_activity": [[onset, offset],
    ...]}`` (seconds), the stretches exactly. Everything follows from ``seed``.
    """
    files = []
    for s in range(speakers):
        speaker = str(100 + s)
        voice, book = speaker_voice(seed, speaker), f"book{s + 1}"
        for f in range(files_per_speaker):
            rng = seeded_rng(seed, "librilight", speaker, f)
            long = long_seconds if (s, f) == (0, 0) else 0.0
            segments = _voice_activity(rng, file_seconds, voiced_seconds, long)
            audio = 0.001 * rng.standard_normal(round(file_seconds * sample_rate))
            for onset, offset in segments:
                start, stop = int(onset * sample_rate), int(offset * sample_rate)
                audio[start:stop] = synthesize(stop - start, sample_rate, voice, rng)
            path = Path(root) / subset / speaker / book / f"chapter{f + 1:02d}_{book}.flac"
            _write_audio(path, audio, sample_rate)
            meta = {
                "speaker": speaker,
                "book_meta": {"id": str(s + 1), "title": f"Book {s + 1}"},
                "snr": 20.0,
            }
            path.with_suffix(".json").write_text(json.dumps({**meta, "voice_activity": segments}, indent=1))
            files.append(path)
    return files


# ----------------------------------------------------------------------------------------------------
# Corpus
# ----------------------------------------------------------------------------------------------------


def make_sample_corpus(
    root,
    splits: dict | None = None,
    sample_rate: int = 24000,
    min_seconds: float = 1.2,
    max_seconds: float = 3.0,
    seed: int = 0,
    engine: str = "auto",
    bad: bool = False,
    long_seconds: float = 12.0,
) -> Path:
    """Write a small LibriTTS-layout corpus under ``root`` and return ``root`` (the recipe's data_folder).

    Arguments
    ---------
    root : where to write (created if needed); existing files of the same names are overwritten.
    splits : ``{split_name: (n_speakers, n_utterances_per_speaker)}``; default ``DEFAULT_SPLITS``
        (train-clean-100 4x6, dev-clean 2x4, test-clean 2x3).
    sample_rate : rate of the 16-bit PCM wavs (24 kHz as LibriTTS).
    min_seconds, max_seconds : each utterance's length is drawn in this range.
    seed : everything (speakers, sentences, lengths, audio) follows from it.
    engine : ``"auto"``, ``"espeak"`` or ``"synthetic"`` (see the module docstring).
    bad : also add the files of ``make_bad_files`` to every split.
    long_seconds : length of the ``toolong`` bad file.

    Speakers are numbered ``1001, 1002, ...`` in the first split, ``2001, ...`` in the second, and so on
    (no speaker in two splits); each speaker has chapters of up to 4 utterances.
    """
    if not 0 < min_seconds <= max_seconds:
        raise ValueError(f"need 0 < min_seconds <= max_seconds, got {min_seconds}, {max_seconds}")
    root = Path(root)
    splits = DEFAULT_SPLITS if splits is None else splits
    engine = resolve_engine(engine)
    with tempfile.TemporaryDirectory(prefix="sample_corpus_") as workdir:
        for split_index, (split, (n_speakers, n_utts)) in enumerate(splits.items()):
            for s in range(n_speakers):
                speaker_id = str(1000 * (split_index + 1) + s + 1)
                speaker = speaker_voice(seed, speaker_id)
                transcripts: dict[Path, list[str]] = {}
                for u in range(n_utts):
                    chapter = f"{speaker_id}{u // 4 + 1:02d}"
                    uttid = f"{speaker_id}_{chapter}_{u + 1:06d}_000000"
                    rng = seeded_rng(seed, split, speaker_id, u)
                    text = SENTENCES[int(rng.integers(len(SENTENCES)))]
                    folder = root / split / speaker_id / chapter
                    if engine == "espeak":
                        audio = speak(text, speaker, sample_rate, min_seconds, max_seconds, rng, workdir)
                    else:
                        n = round(rng.uniform(min_seconds, max_seconds) * sample_rate)
                        audio = synthesize(n, sample_rate, speaker, rng)
                    _write_audio(folder / f"{uttid}.wav", audio, sample_rate)
                    (folder / f"{uttid}.normalized.txt").write_text(text, encoding="utf-8")
                    (folder / f"{uttid}.original.txt").write_text(text, encoding="utf-8")
                    transcripts.setdefault(folder / f"{speaker_id}_{chapter}.trans.tsv", []).append(
                        f"{uttid}\t{text}\t{text}\n"
                    )
                for path, lines in transcripts.items():
                    path.write_text("".join(lines), encoding="utf-8")
            if bad:
                make_bad_files(root / split, sample_rate=sample_rate, long_seconds=long_seconds, seed=seed)
    return root


def make_bad_files(
    split_dir,
    speaker: str = BAD_SPEAKER,
    chapter: str = BAD_CHAPTER,
    sample_rate: int = 24000,
    long_seconds: float = 12.0,
    seed: int = 0,
) -> dict[str, Path]:
    """Add one file of each kind in ``BAD_KINDS`` under ``split_dir/<speaker>/<chapter>/``.

    Each is ``<speaker>_<chapter>_<kind>_000000.wav``, with a ``.normalized.txt`` beside it except for
    ``notext``:

    * ``zerobyte``: an empty file;
    * ``truncated``: a valid 2 s WAV header with half of its audio data cut off;
    * ``notaudio``: a text file named ``.wav``;
    * ``stereo44k``: valid 2-channel 44.1 kHz audio (2 s);
    * ``rate8k``: valid mono 8 kHz audio (2 s);
    * ``tooshort``: valid, 0.3 s;
    * ``toolong``: valid, ``long_seconds``;
    * ``notext``: valid (2 s) but without its ``.normalized.txt``.

    Returns ``{kind: wav path}``.
    """
    folder = Path(split_dir) / speaker / chapter
    folder.mkdir(parents=True, exist_ok=True)
    voice = speaker_voice(seed, speaker)
    paths = {kind: folder / f"{speaker}_{chapter}_{kind}_000000.wav" for kind in BAD_KINDS}

    def speech(seconds, rate, key):
        return synthesize(round(seconds * rate), rate, voice, seeded_rng(seed, "bad", key))

    paths["zerobyte"].write_bytes(b"")
    _write_audio(paths["truncated"], speech(2.0, sample_rate, "truncated"), sample_rate)
    data = paths["truncated"].read_bytes()
    paths["truncated"].write_bytes(data[: 44 + (len(data) - 44) // 2])
    paths["notaudio"].write_text("This is a text file, not audio.\n", encoding="utf-8")
    stereo = np.stack([speech(2.0, 44100, "left"), speech(2.0, 44100, "right")], axis=1)
    _write_audio(paths["stereo44k"], stereo, 44100)
    _write_audio(paths["rate8k"], speech(2.0, 8000, "rate8k"), 8000)
    _write_audio(paths["tooshort"], speech(0.3, sample_rate, "tooshort"), sample_rate)
    _write_audio(paths["toolong"], speech(long_seconds, sample_rate, "toolong"), sample_rate)
    _write_audio(paths["notext"], speech(2.0, sample_rate, "notext"), sample_rate)
    for kind, path in paths.items():
        text_path = path.with_name(path.name[: -len(".wav")] + ".normalized.txt")
        if kind == "notext":
            text_path.unlink(missing_ok=True)
        else:
            text_path.write_text(f"A deliberately unusual file of kind {kind}.", encoding="utf-8")
    return paths
