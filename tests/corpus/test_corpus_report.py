"""utils/corpus/report.py: the preparation report's dataclasses and their documented JSON form."""

import json
import logging

from helpers.corpus_helpers import manifest_args

from libritts_prepare import prepare_libritts
from utils.corpus.report import PrepareReport, ReportWarning, SetReport, SkippedFile
from utils.corpus.samples import make_sample_corpus

COUNT_KEYS = ["skipped_unreadable", "too_short", "too_long", "duplicate", "missing_text", "skip_reasons"]


def test_set_json_forms():
    scanned = SetReport.scanned(["train-clean-100"], found=5)
    scanned.count("skipped_unreadable", "empty_file")
    scanned.count("too_short", "too_short")
    scanned.count("missing_text")
    scanned.usable = 3
    # The pool of a proportional split: counts, no kept/hours/manifest
    assert list(scanned.to_json()) == ["subsets", "found", "usable", *COUNT_KEYS]
    assert scanned.to_json()["skip_reasons"] == {"empty_file": 1, "too_short": 1}
    assert scanned.to_json()["missing_text"] == 1
    # A scanned set: counts and kept, hours, manifest (and not_drawn for a drawn valid set)
    scanned.kept, scanned.hours, scanned.manifest, scanned.not_drawn = 2, 0.01, "/o/valid.json", 1
    keys = ["subsets", "found", "usable", "kept", *COUNT_KEYS, "not_drawn", "hours", "manifest"]
    assert list(scanned.to_json()) == keys
    # A set drawn from the pool: found, usable, kept, hours, manifest
    drawn = SetReport(["pool"], 4, 4, kept=4, hours=0.5, manifest="/o/train.json")
    assert drawn.to_json() == {
        "subsets": ["pool"], "found": 4, "usable": 4, "kept": 4, "hours": 0.5, "manifest": "/o/train.json",
    }  # fmt: skip


def test_files_json_forms():
    assert SkippedFile("train", "/a.wav", "empty_file", "zero bytes").to_json() == {
        "stage": "train", "wav": "/a.wav", "reason": "empty_file", "detail": "zero bytes",
    }  # fmt: skip
    assert SkippedFile("test", "/b.wav", "too_long", "9 s > 5 s", 9.0).to_json()["duration"] == 9.0
    warning = ReportWarning("valid", "/c.wav", "missing_text", "no c.normalized.txt")
    assert list(warning.to_json()) == ["stage", "wav", "reason", "detail"]


def test_report_round_trip_and_summary(caplog):
    report = PrepareReport("/corpus", {"seed": 1})
    report.sets["train"] = SetReport.scanned(["a", "b"], 3)
    report.sets["train"].count("skipped_unreadable", "not_audio")
    report.sets["train"].skip_reasons["no_speaker"] = 1
    report.sets["train"].usable = report.sets["train"].kept = 1
    report.sets["train"].hours = 0.25
    report.skip("train", "/x.wav", "not_audio", "text")
    report.warn("train", "/y.wav", "duration_mismatch", "listed as 3 s")
    data = report.to_json()
    assert list(data) == ["data_folder", "options", "sets", "skipped", "warnings"]
    assert PrepareReport.from_json(json.loads(json.dumps(data))).to_json() == data
    assert (
        report.sets["train"].summary() == "1 kept of 3 found, 1 unreadable/invalid, 1 without speaker, 0.25 h"
    )
    with caplog.at_level(logging.INFO):
        report.log_set("Folder corpus", "train", "a note")
    (record,) = caplog.records
    assert record.levelno == logging.WARNING  # files were skipped as invalid
    assert record.getMessage() == f"Folder corpus train (a+b): {report.sets['train'].summary()}; a note"


def test_written_report_is_the_dataclass_json(tmp_path):
    """What prepare writes and returns is exactly ``PrepareReport.to_json()`` (same keys, same order)."""
    splits = {"train-clean-100": (1, 2), "dev-clean": (1, 1)}
    corpus = make_sample_corpus(tmp_path / "c", splits, engine="synthetic", bad=True, long_seconds=6.0)
    returned = prepare_libritts(
        corpus, *manifest_args(tmp_path / "out")[:2], None,
        train_split="train-clean-100", valid_split="dev-clean", max_duration=5.0,
    )  # fmt: skip
    text = (tmp_path / "out" / "prepare_report.json").read_text(encoding="utf-8")
    assert json.loads(text) == returned
    rebuilt = PrepareReport.from_json(returned)
    assert json.dumps(rebuilt.to_json(), indent=2, ensure_ascii=False) + "\n" == text
    assert {item.reason for item in rebuilt.skipped} >= {"empty_file", "truncated", "not_audio", "too_short"}
