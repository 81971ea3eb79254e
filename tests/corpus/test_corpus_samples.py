"""utils/corpus/samples.py: generated corpora in the folder and list formats (mixed formats, rates and
channel counts; broken files on request)."""

import re

import numpy as np
import pytest
import soundfile as sf
from helpers.corpus_helpers import digest

from utils.corpus.filelist import read_list
from utils.corpus.samples import (
    FOLDER_BAD_FILES,
    FOLDER_FORMATS,
    FOLDER_RATES,
    FOLDER_SPLITS,
    make_folder_corpus,
    make_list_corpus,
)


def test_folder_corpus(tmp_path):
    files = make_folder_corpus(tmp_path / "a", seed=2, bad=True)
    n_good = sum(s * u for s, u in FOLDER_SPLITS.values())
    assert len(files) == n_good and files == sorted(files)
    combos, speakers = set(), {}
    for path in files:
        split, speaker = path.relative_to(tmp_path / "a").parts[:2]
        assert re.fullmatch(rf"{speaker}_\d{{3}}", path.stem)
        speakers.setdefault(split, set()).add(speaker)
        info = sf.info(str(path))
        assert path.suffix[1:] in FOLDER_FORMATS and info.samplerate in FOLDER_RATES
        assert 1.2 - 1e-3 <= info.duration <= 2.0 + 0.06  # lossy formats pad a little
        combos.add((path.suffix, info.samplerate, info.channels))
    assert {c[1] for c in combos} == set(FOLDER_RATES) and {c[2] for c in combos} == {1, 2}
    assert len({c[0] for c in combos}) == 3
    assert not speakers["train"] & speakers["valid"] and not speakers["valid"] & speakers["test"]
    for name in FOLDER_BAD_FILES:
        assert (tmp_path / "a" / "train" / name).is_file()
    # Deterministic: the same bytes, except the random stream serial number of Ogg containers
    again = make_folder_corpus(tmp_path / "b", seed=2, bad=True)
    assert [p.relative_to(tmp_path / "b") for p in again] == [p.relative_to(tmp_path / "a") for p in files]
    first, second = digest(tmp_path / "a"), digest(tmp_path / "b")
    assert {k: v for k, v in first.items() if not k.endswith(".ogg")} == {
        k: v for k, v in second.items() if not k.endswith(".ogg")
    }
    for name in (k for k in first if k.endswith(".ogg")):
        assert np.array_equal(sf.read(str(tmp_path / "a" / name))[0], sf.read(str(tmp_path / "b" / name))[0])


@pytest.mark.skipif("MP3" not in sf.available_formats(), reason="this libsndfile cannot write MP3")
def test_folder_corpus_flat_with_mp3(tmp_path):
    files = make_folder_corpus(tmp_path, {"": (2, 2)}, formats=("mp3",), stereo_every=0)
    assert [str(p.relative_to(tmp_path)) for p in files] == [
        "spk01/spk01_001.mp3", "spk01/spk01_002.mp3", "spk02/spk02_001.mp3", "spk02/spk02_002.mp3",
    ]  # fmt: skip
    assert {sf.info(str(p)).channels for p in files} == {1}


@pytest.mark.parametrize("name", ["files.csv", "files.tsv", "files.json", "files.jsonl"])
def test_list_corpus(tmp_path, name):
    list_path = make_list_corpus(tmp_path, name, splits={"train": (1, 2), "": (1, 2)})
    assert list_path == tmp_path / name
    rows = read_list(list_path)
    assert [(r.path, r.speaker, r.split) for r in rows] == [
        ("audio/spk02/spk02_001.ogg", "spk02", None),
        ("audio/spk02/spk02_002.wav", "spk02", None),
        ("audio/train/spk01/spk01_001.wav", "spk01", "train"),
        ("audio/train/spk01/spk01_002.flac", "spk01", "train"),
    ]
    for row in rows:
        assert row.duration == pytest.approx(sf.info(str(tmp_path / row.path)).duration, abs=1e-3)
    absolute = make_list_corpus(tmp_path / "abs", "x.csv", absolute=True, splits={"": (1, 1)})
    assert read_list(absolute)[0].path == str(tmp_path / "abs" / "audio" / "spk01" / "spk01_001.wav")
