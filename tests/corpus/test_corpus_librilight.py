"""The librilight corpus format: long files cut along their voice activity into utterances read by offset."""

import json

import numpy as np
import pytest
import soundfile as sf

from utils.corpus import prepare_data
from utils.corpus.audio import load_utterance
from utils.corpus.librilight import cut_pieces, read_voice_activity
from utils.corpus.samples import make_librilight_corpus

RATE = 16000
CUT = 5.0  # seconds: below the 7 s stretch of the first file, which must be split


@pytest.fixture(scope="module")
def librilight(tmp_path_factory):
    """2 speakers x 2 files of 20 s (voiced stretches of 1-4 s, the first one 7 s) and their manifests."""
    root = tmp_path_factory.mktemp("librilight")
    files = make_librilight_corpus(
        root / "corpus", speakers=2, files_per_speaker=2, file_seconds=20.0, voiced_seconds=(1.0, 4.0),
        long_seconds=7.0,
    )  # fmt: skip
    before = {path: path.stat().st_mtime_ns for path in (root / "corpus").rglob("*")}
    manifests = {stage: root / "save" / f"{stage}.json" for stage in ("train", "valid", "test")}
    hparams = {f"{stage}_json": str(path) for stage, path in manifests.items()}
    hparams.update(corpus_format="librilight", data_folder=str(root / "corpus"), train_split=["small"])
    hparams.update(sample_rate=RATE, prepare_seed=1234, valid_size=500, min_duration=0.5, cut_seconds=CUT)
    hparams.update(valid_proportion=0.25, test_proportion=0.25)
    prepare_data(hparams)
    entries = {}
    for stage, path in manifests.items():
        entries.update(
            {uttid: {**entry, "stage": stage} for uttid, entry in json.loads(path.read_text()).items()}
        )
    return root, files, before, entries


def voiced_samples(path) -> int:
    voice_activity, _ = read_voice_activity(str(path.with_suffix(".json")))
    return sum(int(offset * RATE) - int(onset * RATE) for onset, offset in voice_activity)


def test_pieces_hold_the_voiced_time_within_the_limit(librilight):
    root, files, before, entries = librilight
    assert all(entry["duration"] <= CUT for entry in entries.values())
    for path in files:
        pieces = [entry for entry in entries.values() if entry["wav"] == str(path)]
        assert pieces and len({entry["stage"] for entry in pieces}) == 1  # whole files to each set
        samples = sum(stop - start for entry in pieces for start, stop in entry["segments"])
        assert samples == voiced_samples(path)
        assert sum(entry["duration"] for entry in pieces) == pytest.approx(samples / RATE)
    assert {path: path.stat().st_mtime_ns for path in (root / "corpus").rglob("*")} == before  # only read


def test_a_piece_reads_its_ranges_of_the_file(librilight):
    _, files, _, entries = librilight
    uttid = f"small__100__book1__{files[0].stem}_0000"  # the 7 s stretch, split in two
    entry = entries[uttid]
    assert len(entry["segments"]) == 1 and entry["duration"] == pytest.approx(3.5, abs=0.01)
    whole, _ = sf.read(files[0], dtype="float32")
    start, stop = entry["segments"][0]
    assert np.array_equal(load_utterance(entry["wav"], RATE, entry["segments"]).numpy(), whole[start:stop])


def test_cut_pieces_joins_segments_and_splits_long_ones():
    vad = [(0.0, 1.0), (2.0, 2.5), (3.0, 3.4), (4.0, 7.0), (6.5, 8.0)]  # the last overlaps the one before
    pieces = cut_pieces(vad, frames=80, rate=10, max_samples=10)
    assert pieces == [[[0, 10]], [[20, 25], [30, 34]], [[40, 50]], [[50, 60]], [[60, 70]], [[70, 80]]]


def test_a_file_without_voice_activity_is_skipped_and_reported(tmp_path):
    files = make_librilight_corpus(tmp_path / "corpus", speakers=2, files_per_speaker=3, file_seconds=6.0)
    files[0].with_suffix(".json").unlink()
    files[1].with_suffix(".json").write_text("{}")
    hparams = {f"{stage}_json": str(tmp_path / f"{stage}.json") for stage in ("train", "valid", "test")}
    hparams.update(corpus_format="librilight", data_folder=str(tmp_path / "corpus"), train_split=["small"])
    hparams.update(sample_rate=RATE, prepare_seed=0, valid_size=500, min_duration=0.5)
    prepare_data(hparams)  # the two files fall in train, which keeps the other two
    skipped = json.loads((tmp_path / "prepare_report.json").read_text())["skipped"]
    assert sorted((item["wav"], item["reason"]) for item in skipped) == [
        (str(f), "no_vad") for f in files[:2]
    ]
    train = json.loads((tmp_path / "train.json").read_text())
    assert {entry["wav"] for entry in train.values()} == {str(f) for f in files[2:]} - {
        entry["wav"]
        for stage in ("valid", "test")
        for entry in json.loads((tmp_path / f"{stage}.json").read_text()).values()
    }
