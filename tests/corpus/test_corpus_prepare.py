"""utils/corpus/prepare.py: the pipeline every format shares (scan, sets, idempotent and atomic writing)."""

import json
import logging
import os

import pytest
from helpers.corpus_helpers import manifest_args, mtimes, write_tone

from utils.corpus.prepare import (
    Candidate,
    Plan,
    SetSource,
    build_sets,
    manifest_paths,
    run_preparation,
    scan,
    uttid_from_path,
)
from utils.corpus.report import CorpusError, PrepareReport
from utils.corpus.splits import cut


def test_uttid_from_path():
    assert uttid_from_path("spk1/book/0001.flac") == "spk1__book__0001"
    assert uttid_from_path("a.b/c.d.wav") == "a.b__c.d"
    assert uttid_from_path("x.wav") == uttid_from_path("x.flac") == "x"  # reported as duplicates


def test_manifest_paths(tmp_path):
    paths = manifest_paths(("train", "test"), "o/train.json", None, tmp_path / "test.json")
    assert paths == {"train": os.path.abspath("o/train.json"), "test": str(tmp_path / "test.json")}
    with pytest.raises(ValueError, match="No manifest path given for: valid"):
        manifest_paths(("train", "valid"), "t.json", "", None)


@pytest.fixture
def files(tmp_path):
    corpus = tmp_path / "corpus"
    paths = {
        "ok": write_tone(corpus / "ok.flac", 1.5, 22050, 2),
        "short": write_tone(corpus / "short.wav", 0.3),
        "long": write_tone(corpus / "long.ogg", 4.0, format="OGG", subtype="VORBIS"),
        "empty": corpus / "empty.wav",
        "again": write_tone(corpus / "again" / "ok.wav", 1.2),
    }
    paths["empty"].write_bytes(b"")
    return paths


def test_scan_counts_and_lists_every_skip(files):
    report = PrepareReport("/corpus", {})
    candidates = [
        Candidate(str(files["ok"]), "ok", "spk", listed_duration=3.0),
        Candidate(str(files["short"]), "short"),
        Candidate(str(files["long"]), "long"),
        Candidate(str(files["empty"]), "empty"),
        Candidate(str(files["again"]), "ok"),  # same id
        Candidate(str(files["ok"].parent / "gone.wav"), "gone"),
        Candidate(str(files["ok"]), "nospeaker", None),
    ]
    entries = scan(SetSource(["corpus"], candidates), "train", (1.0, 3.5), report)
    assert [(e.uttid, e.sample_rate, e.channels, e.spk_id) for e in entries] == [("ok", 22050, 2, "spk")]
    assert entries[0].duration == pytest.approx(1.5)
    reasons = {os.path.basename(item.wav): item.reason for item in report.skipped}
    assert reasons == {
        "short.wav": "too_short", "long.ogg": "too_long", "empty.wav": "empty_file", "ok.wav": "duplicate",
        "gone.wav": "missing_file", "ok.flac": "no_speaker",
    }  # fmt: skip
    stats = report.sets["train"].to_json()
    assert (stats["found"], stats["usable"], stats["skipped_unreadable"]) == (7, 1, 2)
    assert (stats["too_short"], stats["too_long"], stats["duplicate"]) == (1, 1, 1)
    assert stats["skip_reasons"]["no_speaker"] == 1
    (warning,) = report.warnings
    assert warning.reason == "duration_mismatch" and "listed as 3 s" in warning.detail
    assert next(s for s in report.skipped if s.reason == "too_short").duration == pytest.approx(0.3)


def test_encodable_floor(tmp_path):
    """Below 25 ms WavLM gives no frame: dropped even with min_duration 0."""
    path = write_tone(tmp_path / "tiny.wav", 0.02)
    report = PrepareReport("/c", {})
    assert scan(SetSource(["c"], [Candidate(str(path), "tiny")]), "train", (0.0, None), report) == []
    assert report.skipped[0].reason == "too_short"


def _plan(tmp_path, **options) -> Plan:
    manifests = dict(zip(("train", "valid", "test"), manifest_args(tmp_path / "out"), strict=True))
    return Plan("Test corpus", str(tmp_path), manifests, {"option": 1, **options})


def _build_from(files, plan, pool=True):
    def build(report):
        sources = [Candidate(str(p), name) for name, p in files.items() if name != "empty"]
        if not pool:
            fixed = {stage: SetSource([stage], sources) for stage in ("train", "valid", "test")}
            return build_sets(plan, report, fixed, durations=(0.1, None), valid_size=2, seed=0)

        def split(entries):
            return cut(entries, {"train": 2, "valid": 1, "test": 1}, 0), "a note"

        source = SetSource(["pool"], sources)
        return build_sets(plan, report, {}, source, split, durations=(0.1, None), hint="Add files.")

    return build


def test_run_preparation_is_idempotent(files, tmp_path, caplog):
    plan = _plan(tmp_path)
    report = run_preparation(plan, _build_from(files, plan))
    assert list(report.sets) == ["all", "train", "valid", "test"]
    assert [report.sets[stage].kept for stage in ("train", "valid", "test")] == [2, 1, 1]
    on_disk = json.loads((tmp_path / "out" / "prepare_report.json").read_text())
    assert on_disk == report.to_json()
    assert json.loads((tmp_path / "out" / "prepare_options.json").read_text()) == plan.options
    before = mtimes(tmp_path / "out")
    with caplog.at_level(logging.INFO):
        assert run_preparation(plan, _build_from(files, plan)) is None
    assert "Test corpus manifests already prepared" in caplog.text
    assert mtimes(tmp_path / "out") == before
    # Another option: done again; valid drawn to valid_size from a fixed set
    plan = _plan(tmp_path, option=2)
    report = run_preparation(plan, _build_from(files, plan, pool=False))
    assert report.sets["valid"].kept == 2 and report.sets["valid"].not_drawn == 2
    assert "all" not in report.sets


def test_an_empty_set_is_an_error_with_the_report_written(files, tmp_path):
    plan = _plan(tmp_path)

    def build(report):
        sources = [Candidate(str(files["empty"]), "empty"), Candidate(str(files["ok"]), "ok")]

        def split(entries):
            return {"train": entries, "valid": [], "test": []}, ""

        return build_sets(
            plan, report, {}, SetSource(["pool"], sources), split, durations=(1, None), hint="Hint."
        )

    with pytest.raises(CorpusError, match=r"The valid set \(pool\) has no usable utterance: .* Hint\."):
        run_preparation(plan, build)
    report = json.loads((tmp_path / "out" / "prepare_report.json").read_text())
    assert report["skipped"][0]["reason"] == "empty_file"
    assert not (tmp_path / "out" / "prepare_options.json").exists()
    assert not (tmp_path / "out" / "train.json").exists()
