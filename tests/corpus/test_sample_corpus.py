"""The generated LibriTTS-layout corpus (utils/corpus/samples.py, voices in utils/corpus/voice.py, the CLI
utils/sample_corpus.py): layout, determinism, engines, bad files."""

import re
import struct

import numpy as np
import pytest
import soundfile as sf
from helpers.corpus_helpers import digest

from utils import sample_corpus
from utils.corpus import voice
from utils.corpus.samples import (
    BAD_KINDS,
    FOLDER_BAD_FILES,
    FOLDER_SPLITS,
    make_bad_files,
    make_sample_corpus,
)
from utils.corpus.voice import espeak_available

SMALL = {"train-clean-100": (2, 5), "dev-clean": (1, 2)}
UTTID = re.compile(r"^(\d+)_(\d+)_\d{6}_\d{6}$")


def test_layout(tmp_path):
    root = make_sample_corpus(tmp_path / "corpus", splits=SMALL, engine="synthetic", seed=3)
    assert root == tmp_path / "corpus"
    speakers_per_split = {}
    for split, (n_speakers, n_utts) in SMALL.items():
        wavs = sorted((root / split).rglob("*.wav"))
        assert len(wavs) == n_speakers * n_utts
        speakers = set()
        for wav in wavs:
            uttid = wav.stem
            match = UTTID.match(uttid)
            assert match, uttid
            speaker, chapter = match.groups()
            # <split>/<speaker>/<chapter>/<speaker>_<chapter>_<utt>_<seg>.wav
            assert wav.parent.name == chapter and wav.parent.parent.name == speaker
            assert wav.parent.parent.parent == root / split
            text = (wav.parent / f"{uttid}.normalized.txt").read_text(encoding="utf-8")
            assert text in voice.SENTENCES
            assert (wav.parent / f"{uttid}.original.txt").is_file()
            assert uttid in (wav.parent / f"{speaker}_{chapter}.trans.tsv").read_text(encoding="utf-8")
            info = sf.info(str(wav))
            assert (info.samplerate, info.channels, info.subtype, info.format) == (24000, 1, "PCM_16", "WAV")
            assert 1.2 - 1e-3 <= info.duration <= 3.0 + 1e-3
            speakers.add(speaker)
        assert len(speakers) == n_speakers
        speakers_per_split[split] = speakers
    assert not speakers_per_split["train-clean-100"] & speakers_per_split["dev-clean"]


def test_synthetic_is_deterministic(tmp_path):
    a = make_sample_corpus(tmp_path / "a", splits=SMALL, engine="synthetic", seed=5)
    b = make_sample_corpus(tmp_path / "b", splits=SMALL, engine="synthetic", seed=5)
    c = make_sample_corpus(tmp_path / "c", splits=SMALL, engine="synthetic", seed=6)
    assert digest(a) == digest(b)
    wav_digests = {k: v for k, v in digest(a).items() if k.endswith(".wav")}
    assert all(digest(c).get(k) != v for k, v in wav_digests.items())


def _frame_db(x, sr):
    hop = sr // 100
    frames = x[: len(x) // hop * hop].reshape(-1, hop)
    return 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)


def _pitch(x, sr):
    """Median autocorrelation pitch over the loudest frames."""
    n = int(0.04 * sr)
    energies = [np.sum(x[i : i + n] ** 2) for i in range(0, len(x) - n, n)]
    pitches = []
    for i in np.argsort(energies)[-8:]:
        frame = x[i * n : i * n + n] * np.hanning(n)
        ac = np.correlate(frame, frame, "full")[n - 1 :]
        lo, hi = sr // 400, sr // 60
        pitches.append(sr / (lo + np.argmax(ac[lo:hi])))
    return float(np.median(pitches))


def test_synthetic_is_speech_like(tmp_path):
    """Not silence, not a steady tone: syllable-rate energy changes, pauses, different voices."""
    root = make_sample_corpus(tmp_path, splits={"train-clean-100": (4, 1)}, engine="synthetic", seed=0)
    pitches = []
    for wav in sorted(root.rglob("*.wav")):
        x, sr = sf.read(str(wav))
        db = _frame_db(x, sr)
        assert np.abs(x).max() < 0.99  # no clipping
        assert db.max() - np.median(db) < 30  # mostly sound
        assert db.max() - db.min() > 40  # with pauses / silence at the ends
        assert np.mean(np.abs(np.diff(db)) > 3) > 0.05  # energy moves at syllable rate
        pitches.append(_pitch(x, sr))
    assert all(60 < p < 350 for p in pitches), pitches
    assert max(pitches) / min(pitches) > 1.2, pitches  # the speakers do not share one voice


@pytest.mark.skipif(not espeak_available(), reason="espeak-ng is not installed (apt-get install espeak-ng)")
def test_espeak_engine(tmp_path):
    root = make_sample_corpus(
        tmp_path, splits={"train-clean-100": (2, 2)}, engine="espeak", seed=0, sample_rate=16000
    )
    wavs = sorted(root.rglob("*.wav"))
    assert len(wavs) == 4
    for wav in wavs:
        x, sr = sf.read(str(wav))
        assert sr == 16000 and x.ndim == 1
        assert 1.2 - 1e-3 <= len(x) / sr <= 3.0 + 1e-3
        assert np.abs(x).max() > 0.1
        assert (wav.parent / f"{wav.stem}.normalized.txt").read_text(encoding="utf-8") in voice.SENTENCES
    voices = {voice.speaker_voice(0, wav.parent.parent.name)["espeak_voice"] for wav in wavs}
    assert len(voices) == 2


def test_engine_choice(tmp_path, monkeypatch):
    monkeypatch.setattr(voice.shutil, "which", lambda name: None)
    assert voice.resolve_engine("auto") == "synthetic"
    with pytest.raises(RuntimeError, match="espeak-ng"):
        make_sample_corpus(tmp_path, splits=SMALL, engine="espeak")
    with pytest.raises(ValueError, match="engine"):
        make_sample_corpus(tmp_path, splits=SMALL, engine="festival")
    monkeypatch.setattr(voice.shutil, "which", lambda name: "/usr/bin/espeak-ng")
    assert voice.resolve_engine("auto") == "espeak"


def test_bad_files(tmp_path):
    paths = make_bad_files(tmp_path / "train-clean-100", sample_rate=24000, long_seconds=7.5)
    assert list(paths) == list(BAD_KINDS)
    for kind, path in paths.items():
        assert path.name == f"9999_999999_{kind}_000000.wav"
        assert path.parent == tmp_path / "train-clean-100" / "9999" / "999999"
        assert path.with_name(f"{path.stem}.normalized.txt").is_file() == (kind != "notext")

    assert paths["zerobyte"].stat().st_size == 0
    with pytest.raises(sf.LibsndfileError):
        sf.info(str(paths["notaudio"]))
    # Truncated: the header still declares the full 2 s of data, the file holds half of it.
    data = paths["truncated"].read_bytes()
    assert data[:4] == b"RIFF" and data[36:40] == b"data"
    declared = struct.unpack("<I", data[40:44])[0]
    assert declared == 2 * 24000 * 2 and len(data) - 44 == declared // 2
    expected = {
        "stereo44k": (44100, 2, 2.0),
        "rate8k": (8000, 1, 2.0),
        "tooshort": (24000, 1, 0.3),
        "toolong": (24000, 1, 7.5),
        "notext": (24000, 1, 2.0),
    }
    for kind, (rate, channels, seconds) in expected.items():
        info = sf.info(str(paths[kind]))
        assert (info.samplerate, info.channels) == (rate, channels), kind
        assert info.duration == pytest.approx(seconds, abs=1e-3), kind
    left, right = sf.read(str(paths["stereo44k"]))[0].T
    assert not np.allclose(left, right)


def test_bad_option_adds_bad_files_to_every_split(tmp_path):
    root = make_sample_corpus(tmp_path, splits=SMALL, engine="synthetic", bad=True, long_seconds=4.0)
    for split in SMALL:
        names = {p.name for p in (root / split / "9999" / "999999").glob("*.wav")}
        assert names == {f"9999_999999_{kind}_000000.wav" for kind in BAD_KINDS}


def test_cli(tmp_path, capsys):
    sample_corpus.main([str(tmp_path / "out"), "--engine", "synthetic", "--bad", "--long-seconds", "3"])
    out = capsys.readouterr().out
    n_good = sum(s * u for s, u in sample_corpus.DEFAULT_SPLITS.values())
    n_bad = len(BAD_KINDS) * len(sample_corpus.DEFAULT_SPLITS)
    assert f"Wrote {n_good + n_bad} .wav files" in out
    assert f"{n_bad} deliberately bad" in out
    assert str((tmp_path / "out").resolve()) in out
    assert len(list((tmp_path / "out").rglob("*.wav"))) == n_good + n_bad


# --------------------------------------------------------------------------------------------------
# Folder and list corpora (other corpus formats)


@pytest.mark.parametrize("layout", ["folder", "list"])
def test_cli_layouts(tmp_path, capsys, layout):
    sample_corpus.main([str(tmp_path / "out"), "--layout", layout, "--bad"])
    out = capsys.readouterr().out
    n_good = sum(s * u for s, u in FOLDER_SPLITS.values())
    assert f"Wrote {n_good + len(FOLDER_BAD_FILES)} audio files ({layout} layout)" in out
    assert f"--corpus_format {layout} --data_folder {(tmp_path / 'out').resolve()}" in out
    if layout == "list":
        assert (tmp_path / "out" / "files.csv").is_file() and "files.csv" in out
    else:
        assert "--train_folder train --valid_folder valid --test_folder test" in out
