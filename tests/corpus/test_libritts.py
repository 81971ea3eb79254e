"""The LibriTTS layer of the corpus preparation (utils/corpus/libritts.py) through libritts_prepare.py, which
gives it SpeechBrain's signature: generated LibriTTS-layout corpora (clean and broken), its download
wiring and the script's command line."""

import inspect
import json
import logging
import os
import shutil
import subprocess
import sys

import pytest
import soundfile as sf
from helpers.corpus_helpers import load, mtimes, snapshot
from helpers.http_server import libritts_archives, serve
from speechbrain.dataio.dataset import DynamicItemDataset
from speechbrain.utils.distributed import run_on_main

import libritts_prepare
from libritts_prepare import CorpusError, download_splits, prepare_libritts, validate_wav
from utils.corpus import manifest
from utils.corpus.samples import BAD_KINDS, make_sample_corpus
from utils.corpus.validate import validate_audio

SPLITS = {"train-clean-100": (3, 4), "dev-clean": (2, 3), "test-clean": (2, 2)}
RECIPE_SPLITS = {
    "train_split": ["train-clean-100"],
    "valid_split": ["dev-clean"],
    "test_split": ["test-clean"],
}
STAGE_SPLIT = {"train": "train-clean-100", "valid": "dev-clean", "test": "test-clean"}
LONG_SECONDS = 6.0
# What prepare must do with each kind of bad file: skip reason, or kept.
BAD_OUTCOME = {
    "zerobyte": "empty_file",
    "truncated": "truncated",
    "notaudio": "not_audio",
    "tooshort": "too_short",
    "toolong": "too_long",
    "stereo44k": "kept",
    "rate8k": "kept",
    "notext": "kept",
}


@pytest.fixture(scope="module")
def clean_corpus(tmp_path_factory):
    return make_sample_corpus(
        tmp_path_factory.mktemp("clean") / "LibriTTS", splits=SPLITS, engine="synthetic"
    )


@pytest.fixture(scope="module")
def bad_corpus(tmp_path_factory):
    return make_sample_corpus(
        tmp_path_factory.mktemp("bad") / "LibriTTS",
        splits=SPLITS,
        engine="synthetic",
        bad=True,
        long_seconds=LONG_SECONDS,
    )


def _paths(out):
    return {stage: str(out / f"{stage}.json") for stage in ("train", "valid", "test")}


def _prepare(data_folder, out, **kwargs):
    paths = _paths(out)
    options = {**RECIPE_SPLITS, "model_name": "HiFi-GAN", **kwargs}
    return prepare_libritts(
        data_folder, paths["train"], paths["valid"], paths["test"], sample_rate=16000, **options
    )


def test_signature_keeps_the_original_arguments():
    params = list(inspect.signature(prepare_libritts).parameters)
    original = [
        "data_folder", "save_json_train", "save_json_valid", "save_json_test", "sample_rate", "split_ratio",
        "libritts_subsets", "train_split", "valid_split", "test_split", "seed", "model_name", "skip_prep",
    ]  # fmt: skip
    assert params[: len(original)] == original


def test_manifests(clean_corpus, tmp_path):
    report = _prepare(clean_corpus, tmp_path)
    for stage, split in STAGE_SPLIT.items():
        text = (tmp_path / f"{stage}.json").read_text(encoding="utf-8")
        assert text.startswith('{\n  "')  # SpeechBrain JSON, indent 2
        manifest = json.loads(text)
        wavs = sorted((clean_corpus / split).rglob("*.wav"))
        assert sorted(manifest) == [w.stem for w in wavs]
        for wav in wavs:
            entry = manifest[wav.stem]
            assert set(entry) == {
                "uttid", "wav", "duration", "sample_rate", "channels", "spk_id", "label", "segment",
            }  # fmt: skip
            assert entry["uttid"] == wav.stem
            assert os.path.isabs(entry["wav"]) and entry["wav"] == str(wav)
            assert entry["duration"] == pytest.approx(sf.info(str(wav)).duration, abs=1e-6)
            assert 1.2 - 1e-3 <= entry["duration"] <= 3.0 + 1e-3
            assert (entry["sample_rate"], entry["channels"]) == (24000, 1)
            assert entry["spk_id"] == wav.parent.parent.name == wav.stem.split("_")[0]
            assert entry["label"] == (wav.parent / f"{wav.stem}.normalized.txt").read_text(encoding="utf-8")
            assert entry["segment"] is (stage == "train")
        counts = report["sets"][stage]
        assert counts["found"] == counts["kept"] == len(wavs)
        assert counts["skipped_unreadable"] == counts["too_short"] == counts["missing_text"] == 0
    assert report["skipped"] == [] and report["warnings"] == []
    on_disk = json.loads((tmp_path / "prepare_report.json").read_text(encoding="utf-8"))
    assert on_disk["sets"]["train"]["kept"] == report["sets"]["train"]["kept"]
    options = json.loads((tmp_path / "prepare_options.json").read_text(encoding="utf-8"))
    assert options["data_folder"] == str(clean_corpus)
    assert options["splits"]["valid"] == ["dev-clean"]


def test_labels_strip_braces(tmp_path):
    root = make_sample_corpus(tmp_path / "c", splits={"train-clean-100": (1, 1)}, engine="synthetic")
    (wav,) = root.rglob("*.wav")
    (wav.parent / f"{wav.stem}.normalized.txt").write_text("Hello {brace} world", encoding="utf-8")
    prepare_libritts(
        root, str(tmp_path / "o" / "train.json"), None, None, train_split="train-clean-100", valid_size=1
    )
    assert load(tmp_path / "o", "train")[wav.stem]["label"] == "Hello brace world"


def test_corpus_is_byte_identical_afterwards(bad_corpus, tmp_path):
    before = snapshot(bad_corpus)
    _prepare(bad_corpus, tmp_path / "a", max_duration=5.0)
    _prepare(bad_corpus, tmp_path / "a", max_duration=5.0)  # skipped
    _prepare(bad_corpus, tmp_path / "a", min_duration=0.2)  # redone
    assert snapshot(bad_corpus) == before  # same files, bytes, sizes and mtimes; nothing added


def test_second_call_skips(clean_corpus, tmp_path, caplog):
    _prepare(clean_corpus, tmp_path)
    before = mtimes(tmp_path)
    with caplog.at_level(logging.INFO):
        assert _prepare(clean_corpus, tmp_path) is None
    assert "already prepared" in caplog.text
    assert mtimes(tmp_path) == before


def test_changed_option_redoes(bad_corpus, tmp_path):
    _prepare(bad_corpus, tmp_path)
    assert "9999_999999_tooshort_000000" not in load(tmp_path, "train")
    first = mtimes(tmp_path)
    report = _prepare(bad_corpus, tmp_path, min_duration=0.2)
    assert report is not None
    assert "9999_999999_tooshort_000000" in load(tmp_path, "train")
    assert all(mtimes(tmp_path)[name] != first[name] for name in ("train.json", "prepare_options.json"))
    # And back: the options file records what is on disk now, so the old options redo too.
    _prepare(bad_corpus, tmp_path)
    assert "9999_999999_tooshort_000000" not in load(tmp_path, "train")
    assert json.loads((tmp_path / "prepare_options.json").read_text())["min_duration"] == 1.0


def test_bad_corpus(bad_corpus, tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        report = _prepare(bad_corpus, tmp_path, max_duration=LONG_SECONDS - 1)
    assert report == json.loads((tmp_path / "prepare_report.json").read_text(encoding="utf-8"))
    skipped = {(item["stage"], os.path.basename(item["wav"])): item for item in report["skipped"]}
    warnings = {(item["stage"], os.path.basename(item["wav"])): item for item in report["warnings"]}
    for stage, split in STAGE_SPLIT.items():
        manifest = load(tmp_path, stage)
        for kind, outcome in BAD_OUTCOME.items():
            uttid = f"9999_999999_{kind}_000000"
            key = (stage, f"{uttid}.wav")
            if outcome == "kept":
                assert uttid in manifest, (stage, kind)
                assert key not in skipped
            else:
                assert uttid not in manifest, (stage, kind)
                assert skipped[key]["reason"] == outcome, (stage, kind, skipped[key])
                assert skipped[key]["wav"] == str(bad_corpus / split / "9999" / "999999" / f"{uttid}.wav")
                assert skipped[key]["detail"]
        stereo = manifest["9999_999999_stereo44k_000000"]
        assert (stereo["sample_rate"], stereo["channels"]) == (44100, 2)
        assert stereo["duration"] == pytest.approx(2.0)
        assert manifest["9999_999999_rate8k_000000"]["sample_rate"] == 8000
        assert manifest["9999_999999_notext_000000"]["label"] == ""
        assert warnings[(stage, "9999_999999_notext_000000.wav")]["reason"] == "missing_text"

        n_good = SPLITS[split][0] * SPLITS[split][1]
        counts = report["sets"][stage]
        assert counts["found"] == n_good + len(BAD_KINDS)
        assert counts["kept"] == len(manifest) == n_good + 3
        assert counts["skipped_unreadable"] == 3
        assert (counts["too_short"], counts["too_long"], counts["missing_text"]) == (1, 1, 1)
        assert counts["skip_reasons"] == {
            "empty_file": 1, "not_audio": 1, "truncated": 1, "too_short": 1, "too_long": 1,
        }  # fmt: skip
        # One console line per split with the counts.
        line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith(f"LibriTTS {stage} "))
        assert f"{n_good + 3} kept of {n_good + len(BAD_KINDS)} found" in line
        assert "3 unreadable" in line and "1 too short" in line and "1 too long" in line
        assert "1 without text" in line
    assert "prepare_report.json" in caplog.text


def test_custom_report_file(bad_corpus, tmp_path):
    report_file = tmp_path / "elsewhere" / "report.json"
    _prepare(bad_corpus, tmp_path / "out", report_file=str(report_file))
    assert json.loads(report_file.read_text())["sets"]["train"]["skipped_unreadable"] == 3
    assert not (tmp_path / "out" / "prepare_report.json").exists()


def test_missing_data_folder(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as info:
        _prepare(missing, tmp_path / "out")
    message = str(info.value)
    assert str(missing) in message
    assert "train-clean-100/<speaker>/<chapter>/" in message and "openslr.org/60" in message
    assert not (tmp_path / "out").exists()


def test_missing_split(clean_corpus, tmp_path):
    corpus = tmp_path / "LibriTTS"
    shutil.copytree(clean_corpus / "train-clean-100", corpus / "train-clean-100")
    shutil.copytree(clean_corpus / "dev-clean", corpus / "dev-clean")
    with pytest.raises(FileNotFoundError) as info:
        _prepare(corpus, tmp_path / "out")
    message = str(info.value)
    assert str(corpus / "test-clean") in message
    assert f"{corpus}/test-clean/<speaker>/<chapter>/" in message and "openslr.org/60" in message
    assert "dev-clean, train-clean-100" in message  # what is there instead
    # Checked before any scan: nothing was written.
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_data_folder_one_level_too_high(clean_corpus):
    with pytest.raises(FileNotFoundError, match=r"set data_folder to .*LibriTTS"):
        _prepare(clean_corpus.parent, clean_corpus.parent / "out")


def test_split_without_wavs(tmp_path):
    for split in STAGE_SPLIT.values():
        (tmp_path / "LibriTTS" / split / "1" / "2").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"No \.wav file found under .*train-clean-100"):
        _prepare(tmp_path / "LibriTTS", tmp_path / "out")


def test_split_with_no_usable_file(tmp_path):
    small = {"train-clean-100": (1, 1), "dev-clean": (1, 1), "test-clean": (1, 2)}
    corpus = make_sample_corpus(tmp_path / "LibriTTS", splits=small, engine="synthetic")
    for wav in (corpus / "test-clean").rglob("*.wav"):
        wav.write_bytes(b"")
    with pytest.raises(CorpusError, match=r"test set .* has no usable utterance"):
        _prepare(corpus, tmp_path / "out")
    report = json.loads((tmp_path / "out" / "prepare_report.json").read_text())
    assert {item["reason"] for item in report["skipped"]} == {"empty_file"}
    assert not (tmp_path / "out" / "prepare_options.json").exists()


def test_valid_split_draw(clean_corpus, tmp_path):
    dev = sorted(w.stem for w in (clean_corpus / "dev-clean").rglob("*.wav"))
    # Fewer usable utterances than valid_size (500, as the original): all of them.
    _prepare(clean_corpus, tmp_path / "all")
    assert sorted(load(tmp_path / "all", "valid")) == dev
    # valid_size smaller: a seeded draw among the usable files.
    _prepare(clean_corpus, tmp_path / "a", valid_size=3)
    _prepare(clean_corpus, tmp_path / "b", valid_size=3)
    drawn = load(tmp_path / "a", "valid")
    assert len(drawn) == 3 and set(drawn) <= set(dev)
    assert drawn == load(tmp_path / "b", "valid")
    draws = set()
    for seed in range(6):
        _prepare(clean_corpus, tmp_path / f"s{seed}", valid_size=3, seed=seed)
        draws.add(tuple(sorted(load(tmp_path / f"s{seed}", "valid"))))
    assert len(draws) > 1
    assert len(load(tmp_path / "a", "train")) == 12  # train and test are not sampled


def test_valid_draw_is_after_filtering(bad_corpus, tmp_path):
    _prepare(bad_corpus, tmp_path, valid_size=8)
    valid = load(tmp_path, "valid")
    assert len(valid) == 8  # 6 good + 3 usable bad (stereo44k, rate8k, notext) = 9 usable
    assert not any(
        kind in uttid for uttid in valid for kind in ("zerobyte", "truncated", "notaudio", "tooshort")
    )


def test_skip_prep(tmp_path):
    assert _prepare(tmp_path / "nowhere", tmp_path / "out", skip_prep=True) is None
    assert not (tmp_path / "out").exists()


def test_interrupted_run_is_redone(clean_corpus, tmp_path, monkeypatch):
    # Options A prepared; then a run with options B dies while writing the valid manifest.
    _prepare(clean_corpus, tmp_path)
    real_write = manifest.atomic_write_json

    def dying_write(path, data, indent=None):
        if os.path.basename(path) == "valid.json":
            raise KeyboardInterrupt
        real_write(path, data, indent)

    monkeypatch.setattr(manifest, "atomic_write_json", dying_write)
    with pytest.raises(KeyboardInterrupt):
        _prepare(clean_corpus, tmp_path, min_duration=2.0)
    monkeypatch.undo()
    # train.json now holds B's content, and the options file (A) is gone, so A is redone, not skipped.
    assert not (tmp_path / "prepare_options.json").exists()
    assert _prepare(clean_corpus, tmp_path) is not None
    assert len(load(tmp_path, "train")) == 12
    assert not list(tmp_path.glob(".*.partial"))


def test_manifest_without_options_file_is_redone(clean_corpus, tmp_path):
    _prepare(clean_corpus, tmp_path)
    (tmp_path / "prepare_options.json").unlink()
    (tmp_path / "train.json").write_text("{}")
    assert _prepare(clean_corpus, tmp_path) is not None
    assert len(load(tmp_path, "train")) == 12
    # A manifest deleted by hand is redone too.
    (tmp_path / "test.json").unlink()
    assert _prepare(clean_corpus, tmp_path) is not None
    assert (tmp_path / "test.json").is_file()


def test_through_run_on_main(clean_corpus, tmp_path):
    paths = _paths(tmp_path)
    run_on_main(
        prepare_libritts,
        kwargs={
            "data_folder": str(clean_corpus),
            "train_split": ["train-clean-100"],
            "valid_split": ["dev-clean"],
            "test_split": ["test-clean"],
            "save_json_train": paths["train"],
            "save_json_valid": paths["valid"],
            "save_json_test": paths["test"],
            "sample_rate": 16000,
            "skip_prep": False,
            "model_name": "HiFi-GAN",
        },
    )
    assert all(os.path.isfile(p) for p in paths.values())


def test_split_names_as_strings(clean_corpus, tmp_path):
    _prepare(
        clean_corpus,
        tmp_path,
        train_split="train-clean-100",
        valid_split="dev-clean",
        test_split="test-clean",
    )
    assert len(load(tmp_path, "test")) == 4


def test_model_name(clean_corpus, tmp_path):
    with pytest.raises(ValueError, match="model_name"):
        _prepare(clean_corpus, tmp_path, model_name="FastSpeech2")
    _prepare(clean_corpus, tmp_path, model_name="Tacotron2")
    assert "label_phoneme" not in next(iter(load(tmp_path, "train").values()))


def test_libritts_subsets_split_ratio(clean_corpus, tmp_path):
    paths = _paths(tmp_path)
    prepare_libritts(
        clean_corpus,
        paths["train"],
        paths["valid"],
        paths["test"],
        libritts_subsets=["train-clean-100", "dev-clean"],
        split_ratio=[60, 20, 20],
        seed=3,
    )
    parts = {stage: set(load(tmp_path, stage)) for stage in ("train", "valid", "test")}
    every = {
        w.stem for split in ("train-clean-100", "dev-clean") for w in (clean_corpus / split).rglob("*.wav")
    }
    assert parts["train"] | parts["valid"] | parts["test"] == every
    assert sum(len(p) for p in parts.values()) == len(every) == 18
    assert (len(parts["train"]), len(parts["valid"]), len(parts["test"])) == (10, 3, 5)  # int(N r / sum)


def test_validate_wav_is_the_shared_validation(tmp_path):
    """``libritts_prepare.validate_wav`` stays importable: it is utils.corpus.validate.validate_audio."""
    assert validate_wav is validate_audio
    (tmp_path / "text.wav").write_text("hello")
    assert validate_wav(str(tmp_path / "text.wav"))[1] == "not_audio"


def test_odd_files_in_a_split_are_reported_not_fatal(tmp_path):
    corpus = make_sample_corpus(tmp_path / "LibriTTS", splits=SPLITS, engine="synthetic")
    chapter = next((corpus / "train-clean-100").glob("*/*"))
    other = next((corpus / "train-clean-100").glob("*/*/*_000001_000000.wav"))
    os.symlink(chapter / "missing.wav", chapter / "1001_100101_broken_000000.wav")
    (chapter / "1001_100101_dir_000000.wav").mkdir()  # a folder named .wav is not a file: ignored
    (chapter / "._1001_100101_000001_000000.wav").write_bytes(b"\x00\x05\x16\x07" + bytes(60))
    upper = chapter / "1001_100101_upper_000000.WAV"
    shutil.copy(next(chapter.glob("*.wav")), upper)
    # A copy of an utterance under the same id elsewhere in the split: the second is skipped as a duplicate.
    dup_dir = corpus / "train-clean-100" / "zzzz"
    dup_dir.mkdir()
    shutil.copy(other, dup_dir / other.name)
    report = _prepare(corpus, tmp_path / "out")
    reasons = {os.path.basename(item["wav"]): item["reason"] for item in report["skipped"]}
    assert reasons == {
        "1001_100101_broken_000000.wav": "unreadable",
        "._1001_100101_000001_000000.wav": "not_audio",
        other.name: "duplicate",
    }
    assert load(tmp_path / "out", "train")["1001_100101_upper_000000"]["label"] == ""  # no text beside it
    assert report["sets"]["train"]["duplicate"] == 1


def test_awkward_paths(tmp_path):
    """Braces survive SpeechBrain's ``{data_root}`` formatting; a non-UTF-8 file name is reported."""
    small = {"train-clean-100": (1, 2), "dev-clean": (1, 1), "test-clean": (1, 1)}
    corpus = make_sample_corpus(tmp_path / "my {corpus}" / "LibriTTS", splits=small, engine="synthetic")
    chapter = next((corpus / "train-clean-100").glob("*/*"))
    raw = os.fsencode(chapter) + b"/1001_100101_caf\xe9_000000.wav"
    with open(raw, "wb") as f:
        f.write(next(chapter.glob("*.wav")).read_bytes())
    report = _prepare(corpus, tmp_path / "out")
    (bad,) = report["skipped"]
    assert bad["reason"] == "bad_name" and bad["wav"].endswith("caf\ufffd_000000.wav")
    json.loads((tmp_path / "out" / "prepare_report.json").read_text(encoding="utf-8"))

    dataset = DynamicItemDataset.from_json(
        str(tmp_path / "out" / "train.json"), replacements={"data_root": "x"}
    )
    wavs = [dataset.data[uttid]["wav"] for uttid in dataset.data_ids]
    assert len(wavs) == 2 and all(os.path.isfile(w) and "my {corpus}" in w for w in wavs)


def test_download_splits_fetches_the_missing_subsets(tmp_path):
    """download_splits: the union of the split lists, each missing subset once, from the given server."""
    archives = libritts_archives(["train-clean-100", "dev-clean", "test-clean"], seconds=1.2)
    data = tmp_path / "LibriTTS"
    (data / "test-clean").mkdir(parents=True)  # already there: not downloaded
    with serve(archives) as server:
        kwargs = {"base_url": server.url, "checksums": server.checksums}
        fetched = download_splits(
            data, ["train-clean-100"], "dev-clean", ["test-clean", "dev-clean"], **kwargs
        )
        assert fetched == ["train-clean-100", "dev-clean"]
        assert [r["path"] for r in server.state.requests] == ["/train-clean-100.tar.gz", "/dev-clean.tar.gz"]
        assert download_splits(data, ["train-clean-100"], None, **kwargs) == []
    assert download_splits(data, None, []) == []
    report = prepare_libritts(
        data, *[str(tmp_path / "o" / f"{s}.json") for s in ("train", "valid")], None,
        train_split="train-clean-100", valid_split="dev-clean",
    )  # fmt: skip
    assert report["sets"]["train"]["kept"] == 2 and report["sets"]["valid"]["kept"] == 2


def test_command_line(clean_corpus, tmp_path):
    """python libritts_prepare.py DATA_FOLDER OUT_DIR [options], as the module docstring says."""
    script = os.path.join(os.path.dirname(libritts_prepare.__file__), "libritts_prepare.py")
    command = [sys.executable, script, str(clean_corpus), str(tmp_path), "--valid_size", "2", "--seed", "5"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(load(tmp_path, "valid")) == 2 and len(load(tmp_path, "train")) == 12
    assert "LibriTTS train (train-clean-100): 12 kept of 12 found" in result.stderr
    options = json.loads((tmp_path / "prepare_options.json").read_text())
    assert (options["seed"], options["valid_size"]) == (5, 2)
