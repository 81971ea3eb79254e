"""utils/corpus/folder.py: a folder of audio files in mixed formats, rates and channel counts, with sets
from folders, from proportions (seeded, optionally speaker-disjoint) or both."""

import json
import logging
import os
import shutil

import pytest
import soundfile as sf
from helpers.corpus_helpers import load, manifest_args, mtimes, snapshot, write_tone
from speechbrain.dataio.dataset import DynamicItemDataset

from focalcodec.audio import load_audio
from utils.corpus.folder import prepare_folder
from utils.corpus.report import CorpusError
from utils.corpus.samples import FOLDER_BAD_FILES, FOLDER_RATES, make_folder_corpus

FORMATS = ("wav", "flac", "ogg", "mp3") if "MP3" in sf.available_formats() else ("wav", "flac", "ogg")
SETS = {"train_folder": "train", "valid_folder": "valid", "test_folder": "test"}
FLAT = {"": (6, 5)}  # 6 speakers x 5 utterances right under the root: spkNN/spkNN_UUU.<ext>
BY_FOLDER = "^([^/]+)/"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """train 3 speakers x 3, valid 1 x 2, test 1 x 2; every format, rate and channel count; bad files."""
    root = tmp_path_factory.mktemp("folder") / "my corpus"
    make_folder_corpus(root, formats=FORMATS, bad=True)
    return root


@pytest.fixture(scope="module")
def flat(tmp_path_factory):
    root = tmp_path_factory.mktemp("flat") / "corpus"
    make_folder_corpus(root, FLAT, formats=FORMATS, min_seconds=1.1, max_seconds=1.3)
    return root


def _prepare(data_folder, out, **options):
    return prepare_folder(data_folder, *manifest_args(out), **options)


def test_sets_from_folders(corpus, tmp_path):
    report = _prepare(corpus, tmp_path, **SETS, speaker_pattern=BY_FOLDER).to_json()
    seen = {"rates": set(), "channels": set(), "suffixes": set()}
    for stage in ("train", "valid", "test"):
        manifest = load(tmp_path, stage)
        files = sorted(p for p in (corpus / stage).rglob("*.*") if p.parent.name != "spk99")
        assert sorted(manifest) == [
            str(p.relative_to(corpus / stage).with_suffix("")).replace("/", "__") for p in files
        ]
        for path in files:
            entry = manifest[str(path.relative_to(corpus / stage).with_suffix("")).replace("/", "__")]
            info = sf.info(str(path))
            assert entry["wav"] == str(path) and entry["spk_id"] == path.parent.name
            assert (entry["sample_rate"], entry["channels"]) == (info.samplerate, info.channels)
            assert entry["duration"] == pytest.approx(info.duration, abs=0.03)
            assert entry["label"] == "" and entry["segment"] is (stage == "train")
            seen["rates"].add(info.samplerate)
            seen["channels"].add(info.channels)
            seen["suffixes"].add(path.suffix)
        assert report["sets"][stage]["kept"] == len(files)
    assert seen == {"rates": set(FOLDER_RATES), "channels": {1, 2}, "suffixes": {f".{f}" for f in FORMATS}}
    skipped = {os.path.relpath(item["wav"], corpus / "train"): item["reason"] for item in report["skipped"]}
    assert skipped == FOLDER_BAD_FILES
    assert report["sets"]["train"]["skip_reasons"] == {
        "empty_file": 1,
        "not_audio": 1,
        "too_short": 1,
        "truncated": 1,
    }


def test_manifests_load_as_16k_mono(corpus, tmp_path):
    _prepare(corpus, tmp_path, **SETS)
    dataset = DynamicItemDataset.from_json(str(tmp_path / "train.json"), replacements={"data_root": "x"})
    for uttid in dataset.data_ids:
        entry = dataset.data[uttid]
        sig = load_audio(entry["wav"], 16000)
        assert sig.ndim == 1 and len(sig) == pytest.approx(entry["duration"] * 16000, abs=40)


def test_proportions_are_honoured_and_reproducible(flat, tmp_path):
    options = {"valid_proportion": 0.2, "test_proportion": 0.1, "seed": 7}
    report = _prepare(flat, tmp_path / "a", **options).to_json()
    parts = {stage: set(load(tmp_path / "a", stage)) for stage in ("train", "valid", "test")}
    assert {stage: len(ids) for stage, ids in parts.items()} == {"train": 21, "valid": 6, "test": 3}
    assert parts["train"] | parts["valid"] | parts["test"] == {
        str(p.relative_to(flat).with_suffix("")).replace("/", "__") for p in flat.rglob("*.*")
    }
    assert not parts["train"] & parts["valid"] and not parts["valid"] & parts["test"]
    assert report["sets"]["all"]["found"] == 30 and report["sets"]["valid"]["kept"] == 6
    _prepare(flat, tmp_path / "b", **options)
    assert all(load(tmp_path / "a", s) == load(tmp_path / "b", s) for s in parts)
    _prepare(flat, tmp_path / "c", **{**options, "seed": 8})
    assert set(load(tmp_path / "c", "valid")) != parts["valid"]
    # valid_size caps the drawn valid set; the rest stays in train
    _prepare(flat, tmp_path / "d", **options, valid_size=4)
    assert [len(load(tmp_path / "d", s)) for s in ("train", "valid", "test")] == [23, 4, 3]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_speaker_disjoint(flat, tmp_path, seed):
    options = {"valid_proportion": 0.2, "test_proportion": 0.2, "seed": seed}
    _prepare(flat, tmp_path, **options, speaker_pattern=BY_FOLDER, speaker_disjoint=True)
    speakers = {s: {e["spk_id"] for e in load(tmp_path, s).values()} for s in ("train", "valid", "test")}
    assert not speakers["train"] & speakers["valid"]
    assert not speakers["train"] & speakers["test"]
    assert not speakers["valid"] & speakers["test"]
    assert {len(speakers[s]) for s in ("valid", "test")} == {1} and len(speakers["train"]) == 4
    for entry in load(tmp_path, "train").values():
        assert entry["uttid"].startswith(entry["spk_id"] + "__")


def test_train_and_test_folders_valid_drawn_from_train(corpus, tmp_path):
    report = _prepare(
        corpus, tmp_path, train_folder="train", test_folder=str(corpus / "test"), valid_proportion=0.25
    )
    sets = report.to_json()["sets"]
    assert list(sets) == ["test", "all", "train", "valid"]
    assert sets["all"]["subsets"] == [str(corpus / "train")] and sets["all"]["usable"] == 9
    assert (sets["train"]["kept"], sets["valid"]["kept"], sets["test"]["kept"]) == (7, 2, 2)
    assert set(load(tmp_path, "valid")) <= {f"spk0{s}__spk0{s}_00{u}" for s in (1, 2, 3) for u in (1, 2, 3)}


def test_pool_leaves_out_the_given_set_folders(corpus, tmp_path):
    _prepare(corpus, tmp_path, valid_folder="valid", test_folder="test", speaker_pattern="([^/]+)/[^/]+$")
    train = load(tmp_path, "train")
    assert {entry["spk_id"] for entry in train.values()} == {"spk01", "spk02", "spk03"}
    assert all(uttid.startswith("train__") for uttid in train)  # ids relative to data_folder


def test_second_run_does_nothing_a_changed_option_redoes_corpus_untouched(corpus, tmp_path, caplog):
    before = snapshot(corpus)
    assert _prepare(corpus, tmp_path, **SETS) is not None
    first = mtimes(tmp_path)
    with caplog.at_level(logging.INFO):
        assert _prepare(corpus, tmp_path, **SETS) is None
    assert "already prepared" in caplog.text and mtimes(tmp_path) == first
    assert _prepare(corpus, tmp_path, **SETS, min_duration=0.2) is not None
    assert "train__spk99__short" not in load(tmp_path, "train")  # ids are relative to the set folder
    assert "spk99__short" in load(tmp_path, "train")
    assert json.loads((tmp_path / "prepare_options.json").read_text())["min_duration"] == 0.2
    _prepare(corpus, tmp_path, valid_proportion=0.3, speaker_pattern="([^/]+)/[^/]+$", speaker_disjoint=True)
    assert snapshot(corpus) == before  # same files, bytes, sizes and mtimes; nothing added


def test_ids_are_stable_across_locations(corpus, tmp_path):
    copy = tmp_path / "elsewhere"
    shutil.copytree(corpus, copy)
    _prepare(corpus, tmp_path / "a", **SETS)
    _prepare(copy, tmp_path / "b", **SETS)
    for stage in ("train", "valid", "test"):
        assert list(load(tmp_path / "a", stage)) == list(load(tmp_path / "b", stage))


def test_same_name_in_two_formats_is_a_duplicate(tmp_path):
    write_tone(tmp_path / "c" / "a" / "x.wav")
    write_tone(tmp_path / "c" / "a" / "x.flac")
    for name in ("y", "z", "w"):
        write_tone(tmp_path / "c" / "b" / f"{name}.wav")
    report = _prepare(tmp_path / "c", tmp_path / "out", valid_proportion=0.2, test_proportion=0.2).to_json()
    assert [(os.path.basename(s["wav"]), s["reason"]) for s in report["skipped"]] == [("x.wav", "duplicate")]


def test_partial_pattern_skips_the_files_it_does_not_match(flat, tmp_path):
    report = _prepare(flat, tmp_path, speaker_pattern=r"^(spk0[1-4])/").to_json()
    assert report["sets"]["all"]["skip_reasons"] == {"no_speaker": 10}
    assert report["sets"]["all"]["usable"] == 20
    assert {item["reason"] for item in report["skipped"]} == {"no_speaker"}


# --------------------------------------------------------------------------------------------------
# Errors that say what to fix


def test_empty_folder(tmp_path):
    (tmp_path / "corpus" / "sub").mkdir(parents=True)
    (tmp_path / "corpus" / "sub" / "a.m4a").write_bytes(b"x")
    with pytest.raises(FileNotFoundError) as error:
        _prepare(tmp_path / "corpus", tmp_path / "out")
    message = str(error.value)
    assert f"No audio file (.wav, .flac, .ogg, .mp3) found under {tmp_path / 'corpus'}" in message
    assert ".m4a (1)" in message and "convert the audio" in message and "train_folder" in message
    assert not (tmp_path / "out").exists()


def test_missing_folders(corpus, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"data_folder not found .*nowhere"):
        _prepare(tmp_path / "nowhere", tmp_path / "out")
    with pytest.raises(FileNotFoundError) as error:
        _prepare(corpus, tmp_path / "out", train_folder="train", valid_folder="dev", test_folder="test")
    assert "valid_folder 'dev' is not a folder" in str(error.value)
    assert "folders in" in str(error.value) and "test, train, valid" in str(error.value)


def test_pattern_problems(flat, tmp_path):
    with pytest.raises(
        ValueError, match=r"finds no speaker in any of the 30 paths .* e\.g\. 'spk01/spk01_001"
    ):
        _prepare(flat, tmp_path, speaker_pattern=r"^speaker_(\d+)/")
    with pytest.raises(ValueError, match="exactly one"):
        _prepare(flat, tmp_path, speaker_pattern="^spk")
    with pytest.raises(ValueError, match="speaker_disjoint needs speakers: set speaker_pattern"):
        _prepare(flat, tmp_path, speaker_disjoint=True)
    with pytest.raises(ValueError, match="leave nothing for train"):
        _prepare(flat, tmp_path, valid_proportion=0.6, test_proportion=0.4)
    assert not (tmp_path / "prepare_report.json").exists()


def test_too_few_speakers_for_a_disjoint_split(tmp_path):
    for speaker in ("a", "b"):
        for n in range(3):
            write_tone(tmp_path / "c" / speaker / f"{n}.wav")
    with pytest.raises(CorpusError, match=r"has no usable utterance.*whole speakers \(speaker_disjoint\)"):
        _prepare(tmp_path / "c", tmp_path / "out", speaker_pattern=BY_FOLDER, speaker_disjoint=True)


def test_all_too_short_says_to_lower_min_duration(tmp_path):
    for n in range(4):
        write_tone(tmp_path / "c" / f"{n}.wav", seconds=0.5)
    with pytest.raises(CorpusError, match=r"4 too short.*lower --min_duration"):
        _prepare(tmp_path / "c", tmp_path / "out")
    report = _prepare(
        tmp_path / "c", tmp_path / "out", min_duration=0.3, valid_proportion=0.25, test_proportion=0.25
    )
    assert [report.sets[s].kept for s in ("train", "valid", "test")] == [2, 1, 1]
