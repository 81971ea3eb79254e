"""utils/corpus/filelist.py: a CSV/TSV/JSON/text list of audio files (mixed formats, rates, channels), with
optional durations, speakers, splits and texts."""

import json
import logging
import os

import pytest
import soundfile as sf
from helpers.corpus_helpers import load, manifest_args, mtimes, snapshot, write_tone

from utils.corpus.filelist import ListRow, prepare_list, read_list
from utils.corpus.samples import FOLDER_RATES, make_list_corpus

FORMATS = ("wav", "flac", "ogg", "mp3") if "MP3" in sf.available_formats() else ("wav", "flac", "ogg")


@pytest.fixture(scope="module")
def listed(tmp_path_factory):
    """files.csv (path,duration,speaker,split) over audio/<split>/spkNN/..., plus bad files not listed."""
    return make_list_corpus(tmp_path_factory.mktemp("list") / "corpus", formats=FORMATS, bad=True)


def _prepare(list_file, out, **options):
    return prepare_list(list_file, *manifest_args(out), **options)


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------------
# Reading lists


def test_read_csv_tsv_with_aliases(tmp_path):
    csv_file = _write(
        tmp_path / "a.csv", "\ufeffWav,Seconds,Spk_ID,Set,Transcript\na.wav,1.5,s1,dev,hi\nb.flac,,,,\n\n"
    )
    assert read_list(csv_file) == [
        ListRow("line 2", "a.wav", 1.5, "s1", "valid", "hi"),
        ListRow("line 3", "b.flac", None, "", None, ""),
    ]
    tsv_file = _write(tmp_path / "a.tsv", "speaker\tpath\nx\tdir/c.ogg\n")
    assert read_list(tsv_file) == [ListRow("line 2", "dir/c.ogg", None, "x")]
    # One column without header: paths
    assert [row.path for row in read_list(_write(tmp_path / "p.csv", "a.wav\nb.mp3\n"))] == ["a.wav", "b.mp3"]


def test_read_json_jsonl_txt(tmp_path):
    rows = [{"path": "a.wav", "duration": 2, "split": "test"}, "b.wav"]
    assert [
        (r.path, r.duration, r.split) for r in read_list(_write(tmp_path / "a.json", json.dumps(rows)))
    ] == [
        ("a.wav", 2.0, "test"),
        ("b.wav", None, None),
    ]
    jsonl = _write(tmp_path / "a.jsonl", '{"file": "x.flac", "speaker": 7}\n\n{"audio": "y.flac"}\n')
    assert [(r.where, r.path, r.speaker) for r in read_list(jsonl)] == [
        ("line 1", "x.flac", "7"),
        ("line 3", "y.flac", ""),
    ]
    txt = _write(tmp_path / "a.txt", "# my files\nx.wav\n  y.wav  \n")
    assert [row.path for row in read_list(txt)] == ["x.wav", "y.wav"]
    # A SpeechBrain manifest: {id: {"wav": "{data_root}/...", ...}}
    manifest = {"u1": {"wav": "{data_root}/a.wav", "duration": 1.0, "spk_id": "s"}}
    rows = read_list(_write(tmp_path / "m.json", json.dumps(manifest)), data_folder="/data")
    assert rows == [ListRow("item 'u1'", "/data/a.wav", 1.0, "s")]


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        (
            "a.csv",
            "file_name,duration\na.wav,1\n",
            r"no path column in its header row \['file_name', 'duration'\]",
        ),
        ("a.csv", "path,duration\na.wav,long\n", r"line 2: duration 'long' is not a number of seconds"),
        ("a.csv", "path,split\na.wav,holdout\n", r"line 2: split 'holdout' is not one of train, valid, dev"),
        ("a.csv", "path,speaker\n,s1\n", r"line 2: no path \(the column is named one of: path, wav"),
        ("a.json", "{not json", r"a.json is not valid JSON"),
        ("a.json", "[1, 2]", r"item 0: expected an object or a path, got 1"),
        ("a.xlsx", "x", r"unknown list format; use one of .csv, .tsv"),
    ],
)
def test_malformed_lists_say_what_to_fix(tmp_path, name, text, message):
    with pytest.raises(ValueError, match=message):
        read_list(_write(tmp_path / name, text))


# --------------------------------------------------------------------------------------------------
# Preparing


def test_split_column_sets(listed, tmp_path):
    report = _prepare(listed, tmp_path).to_json()
    rows = {row.path: row for row in read_list(listed)}
    rates, channels = set(), set()
    for stage in ("train", "valid", "test"):
        manifest = load(tmp_path, stage)
        expected = {path for path, row in rows.items() if row.split == stage}
        assert {os.path.relpath(e["wav"], listed.parent) for e in manifest.values()} == expected
        for uttid, entry in manifest.items():
            relative = os.path.relpath(entry["wav"], listed.parent)
            assert uttid == os.path.splitext(relative)[0].replace("/", "__")
            info = sf.info(entry["wav"])
            assert (entry["sample_rate"], entry["channels"]) == (info.samplerate, info.channels)
            assert entry["spk_id"] == rows[relative].speaker
            rates.add(info.samplerate)
            channels.add(info.channels)
    assert rates == set(FOLDER_RATES) and channels == {1, 2}
    assert report["sets"]["valid"]["subsets"] == [f"{listed}:valid"] and report["warnings"] == []
    assert (
        report["options"]["corpus_list"] == str(listed) and len(report["options"]["corpus_list_sha256"]) == 64
    )


def test_bad_and_missing_files_are_reported(listed, tmp_path):
    bad = sorted(p for p in (listed.parent / "audio").rglob("*.*") if p.parent.name == "spk99")
    rows = [{"path": str(p.relative_to(listed.parent)), "speaker": "spk99"} for p in bad]
    rows += [{"path": "audio/gone.wav"}] + [
        {"path": r.path, "duration": r.duration} for r in read_list(listed)
    ]
    rows[-1]["duration"] += 1.0  # a wrong duration: a warning, the manifest has the file's
    list_file = _write(listed.parent / "with_bad.json", json.dumps(rows))
    report = _prepare(list_file, tmp_path, test_proportion=0.2).to_json()
    reasons = {os.path.basename(item["wav"]): item["reason"] for item in report["skipped"]}
    assert reasons == {
        "empty.wav": "empty_file", "notaudio.flac": "not_audio", "truncated.wav": "truncated",
        "short.ogg": "too_short", "gone.wav": "missing_file",
    }  # fmt: skip
    assert report["sets"]["all"]["skipped_unreadable"] == 4
    (warning,) = report["warnings"]
    assert warning["reason"] == "duration_mismatch" and warning["wav"].endswith(rows[-1]["path"])
    kept = {**load(tmp_path, "train"), **load(tmp_path, "valid"), **load(tmp_path, "test")}
    assert len(kept) == len(read_list(listed))


def test_proportions_and_speakers_from_the_column(listed, tmp_path):
    rows = [{"path": r.path, "speaker": r.speaker} for r in read_list(listed)]  # no split column
    list_file = _write(
        listed.parent / "nosplit.csv",
        "path,speaker\n" + "".join(f"{r['path']},{r['speaker']}\n" for r in rows),
    )
    for seed in (0, 1):
        _prepare(
            list_file,
            tmp_path / str(seed),
            valid_proportion=0.2,
            test_proportion=0.2,
            speaker_disjoint=True,
            seed=seed,
        )
        speakers = {
            s: {e["spk_id"] for e in load(tmp_path / str(seed), s).values()}
            for s in ("train", "valid", "test")
        }
        assert not speakers["train"] & speakers["valid"] and not speakers["train"] & speakers["test"]
        assert not speakers["valid"] & speakers["test"] and all(speakers.values())
    _prepare(list_file, tmp_path / "r", valid_proportion=0.2, test_proportion=0.2, seed=3)
    _prepare(list_file, tmp_path / "r2", valid_proportion=0.2, test_proportion=0.2, seed=3)
    sizes = [len(load(tmp_path / "r", s)) for s in ("train", "valid", "test")]
    assert sizes == [7, 3, 3]  # round(0.2 * 13) = 3
    assert all(load(tmp_path / "r", s) == load(tmp_path / "r2", s) for s in ("train", "valid", "test"))


def test_speaker_pattern_on_list_paths(listed, tmp_path):
    list_file = _write(listed.parent / "paths.txt", "".join(f"{r.path}\n" for r in read_list(listed)))
    _prepare(list_file, tmp_path, speaker_pattern=r"/(spk\d+)/", speaker_disjoint=True, valid_proportion=0.2)
    assert {e["spk_id"] for e in load(tmp_path, "valid").values()} <= {f"spk0{n}" for n in range(1, 6)}
    with pytest.raises(ValueError, match=r"finds no speaker in any of the 13 paths of .*paths.txt"):
        _prepare(list_file, tmp_path / "x", speaker_pattern=r"^speaker(\d+)/")
    with pytest.raises(ValueError, match="speaker_disjoint needs speakers"):
        _prepare(list_file, tmp_path / "y", speaker_disjoint=True)


def test_absolute_paths_and_data_folder(listed, tmp_path):
    rows = read_list(listed)
    list_file = _write(
        tmp_path / "elsewhere" / "abs.csv", "path\n" + "".join(f"{listed.parent / r.path}\n" for r in rows)
    )
    _prepare(list_file, tmp_path / "a", test_proportion=0.2)
    assert all(
        uttid.startswith(str(listed.parent).lstrip("/").replace("/", "__"))
        for uttid in load(tmp_path / "a", "train")
    )
    _prepare(list_file, tmp_path / "b", test_proportion=0.2, data_folder=listed.parent)
    assert all(uttid.startswith("audio__") for uttid in load(tmp_path / "b", "train"))


def test_paths_relative_to_data_folder(tmp_path):
    """Common Voice style: <root>/train.tsv lists clip names that live in <root>/clips/."""
    for name in ("a.mp3" if "MP3" in sf.available_formats() else "a.flac", "b.wav", "c.ogg", "d.flac"):
        write = {"format": "OGG", "subtype": "VORBIS"} if name.endswith(".ogg") else {}
        write_tone(tmp_path / "cv" / "clips" / name, 1.2, 48000 if name != "b.wav" else 16000, **write)
    names = sorted(p.name for p in (tmp_path / "cv" / "clips").iterdir())
    rows = "".join(f"{client}\t{name}\tsentence {name}\n" for client, name in zip("xxyz", names, strict=True))
    tsv = _write(tmp_path / "cv" / "train.tsv", "client_id\tpath\tsentence\n" + rows)
    (tmp_path / "other").mkdir()
    with pytest.raises(FileNotFoundError, match=r"list's folder .*/cv \(then from data_folder .*/other\)"):
        _prepare(tsv, tmp_path / "o", data_folder=tmp_path / "other")
    _prepare(tsv, tmp_path / "o", data_folder=tmp_path / "cv" / "clips", speaker_disjoint=True,
             valid_proportion=0.25, test_proportion=0.25)  # fmt: skip
    manifests = {s: load(tmp_path / "o", s) for s in ("train", "valid", "test")}
    assert sorted(uttid for m in manifests.values() for uttid in m) == [
        f"clips__{n[0]}" for n in names
    ]  # list-relative
    assert {e["spk_id"] for e in manifests["train"].values()} == {"x"}
    assert all(
        e["label"] == f"sentence {os.path.basename(e['wav'])}" for m in manifests.values() for e in m.values()
    )


def test_idempotent_edits_redo_and_the_corpus_is_untouched(listed, tmp_path, caplog):
    before = snapshot(listed.parent)
    list_file = tmp_path / "files.csv"
    list_file.write_text(listed.read_text().replace("audio/", f"{listed.parent}/audio/"))
    assert _prepare(list_file, tmp_path / "out") is not None
    first = mtimes(tmp_path / "out")
    with caplog.at_level(logging.INFO):
        assert _prepare(list_file, tmp_path / "out") is None
    assert "List corpus manifests already prepared" in caplog.text and mtimes(tmp_path / "out") == first
    list_file.write_text("\n".join(list_file.read_text().splitlines()[:-1]) + "\n")  # one row less: redone
    assert _prepare(list_file, tmp_path / "out") is not None
    assert _prepare(list_file, tmp_path / "out", min_duration=0.5) is not None  # an option: redone
    assert snapshot(listed.parent) == before


def test_errors(listed, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"The corpus list is not a file: .*nothing.csv"):
        _prepare(tmp_path / "nothing.csv", tmp_path / "out")
    moved = _write(tmp_path / "moved" / "files.csv", listed.read_text())
    with pytest.raises(FileNotFoundError) as error:
        _prepare(moved, tmp_path / "out")
    message = str(error.value)
    assert (
        "None of the 13 files listed in" in message
        and f"read from the list's folder {moved.parent}" in message
    )
    first = read_list(listed)[0].path
    assert f"{first!r} -> {moved.parent / first}" in message
    with pytest.raises(ValueError, match="lists no file"):
        _prepare(_write(tmp_path / "empty.csv", "path,duration\n"), tmp_path / "out")
    only_test = _write(listed.parent / "only_test.csv", f"path,split\n{read_list(listed)[0].path},test\n")
    with pytest.raises(ValueError, match="has no row for training"):
        _prepare(only_test, tmp_path / "out")
