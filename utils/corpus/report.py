"""The preparation report: what was found, kept and skipped, per set and per file.

Written as ``prepare_report.json`` (beside the train manifest by default) by :meth:`PrepareReport.to_json`::

    {"data_folder": "/abs/corpus", "options": {...the options that shaped the manifests...},
     "sets": {
        "train": {"subsets": [...], "found": 120, "usable": 117, "kept": 117,
                  "skipped_unreadable": 2, "too_short": 1, "too_long": 0, "duplicate": 0, "missing_text": 0,
                  "skip_reasons": {"empty_file": 1, "not_audio": 1, "too_short": 1},
                  "hours": 0.1534, "manifest": "/abs/save/train.json"},
        "valid": {..., "not_drawn": 20},      # valid_size drawn from more usable utterances
        "test": {...}},
     "skipped": [{"stage": "train", "wav": "/abs/x.wav", "reason": "empty_file", "detail": "zero bytes"},
                 {"stage": "train", "wav": "/abs/y.wav", "reason": "too_short", "detail": "0.300 s < 1 s",
                  "duration": 0.3}, ...],
     "warnings": [{"stage": "train", "wav": "/abs/z.wav", "reason": "missing_text", "detail": "..."}]}

``subsets`` names where a set comes from (LibriTTS subset names, a folder, a list file). A set scanned on
its own has every count; when the train/valid/test sets are drawn from one pool of files, the pool appears
as the set ``"all"`` (found, usable and the counts, no ``kept``) and each drawn set has only ``found``,
``usable``, ``kept``, ``hours`` and ``manifest``.

Skip reasons: those of :mod:`utils.corpus.validate` and ``bad_name``, all counted in
``skipped_unreadable``; then ``no_speaker`` (the speaker pattern does not match the path, or no speaker is
known for a speaker-disjoint split), ``too_short``, ``too_long`` and ``duplicate`` (same utterance id twice
in one set). Warning reasons: ``missing_text`` (LibriTTS: no ``.normalized.txt``, label ``""``) and
``duration_mismatch`` (a list's duration differs from the file's; the manifest holds the file's).
"""

import logging
from dataclasses import dataclass, field, fields

__all__ = ["UNREADABLE_REASONS", "CorpusError", "PrepareReport", "ReportWarning", "SetReport", "SkippedFile"]

logger = logging.getLogger(__name__)

# Reasons counted in "skipped_unreadable"
UNREADABLE_REASONS = (
    "missing_file", "empty_file", "not_audio", "unreadable", "truncated", "no_frames", "non_finite",
    "bad_name",
)  # fmt: skip
# Counts of a scanned set, in their JSON order, with the words of the console line
_COUNTS = {
    "skipped_unreadable": "unreadable/invalid",
    "too_short": "too short",
    "too_long": "too long",
    "duplicate": "duplicate ids",
    "missing_text": "without text (label '')",
}


class CorpusError(RuntimeError):
    """The corpus cannot give a usable set (for example no readable utterance at all)."""


@dataclass
class SkippedFile:
    """A file left out of the manifests: where, which, why (``duration`` for too_short/too_long)."""

    stage: str
    wav: str
    reason: str
    detail: str
    duration: float | None = None

    def to_json(self) -> dict:
        out = {"stage": self.stage, "wav": self.wav, "reason": self.reason, "detail": self.detail}
        if self.duration is not None:
            out["duration"] = self.duration
        return out


@dataclass
class ReportWarning:
    """A file kept with a caveat (``missing_text``, ``duration_mismatch``)."""

    stage: str
    wav: str
    reason: str
    detail: str

    def to_json(self) -> dict:
        return {"stage": self.stage, "wav": self.wav, "reason": self.reason, "detail": self.detail}


@dataclass
class SetReport:
    """One set (train, valid, test, or the pool ``all``) of the report.

    ``counts`` (skipped_unreadable, too_short, too_long, duplicate, missing_text) and ``skip_reasons``
    are ``None`` for a set drawn from a pool (the pool holds them); ``kept``, ``hours`` and ``manifest``
    are ``None`` for the pool itself.
    """

    subsets: list[str]
    found: int = 0
    usable: int = 0
    kept: int | None = None
    counts: dict[str, int] | None = None
    skip_reasons: dict[str, int] | None = None
    not_drawn: int | None = None
    hours: float | None = None
    manifest: str | None = None

    @classmethod
    def scanned(cls, subsets: list[str], found: int) -> "SetReport":
        """An empty report of a set about to be scanned (every count at zero)."""
        return cls(list(subsets), found, counts=dict.fromkeys(_COUNTS, 0), skip_reasons={})

    def count(self, key: str, reason: str | None = None) -> None:
        """Add one to ``counts[key]`` (and to ``skip_reasons[reason]``)."""
        self.counts[key] = self.counts.get(key, 0) + 1
        if reason is not None:
            self.skip_reasons[reason] = self.skip_reasons.get(reason, 0) + 1

    def to_json(self) -> dict:
        out = {"subsets": self.subsets, "found": self.found, "usable": self.usable}
        if self.kept is not None:
            out["kept"] = self.kept
        if self.counts is not None:
            out.update({key: self.counts.get(key, 0) for key in _COUNTS})
            out["skip_reasons"] = dict(sorted(self.skip_reasons.items()))
        for key in ("not_drawn", "hours", "manifest"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out

    @classmethod
    def from_json(cls, data: dict) -> "SetReport":
        counts = {key: data[key] for key in _COUNTS if key in data} if "skip_reasons" in data else None
        known = {f.name for f in fields(cls)} - {"counts"}
        return cls(**{key: value for key, value in data.items() if key in known}, counts=counts)

    def summary(self) -> str:
        """``"9 kept of 12 found, 3 unreadable/invalid, 0.02 h"`` (the counts that are not zero)."""
        parts = [f"{self.kept} kept of {self.found} found"]
        counts = self.counts or {}
        parts += [f"{counts[key]} {words}" for key, words in _COUNTS.items() if counts.get(key)]
        no_speaker = (self.skip_reasons or {}).get("no_speaker", 0)
        if no_speaker:
            parts.append(f"{no_speaker} without speaker")
        text = ", ".join(parts)
        return f"{text}, {self.hours:.2f} h" if self.kept else text


@dataclass
class PrepareReport:
    """The whole report; ``to_json()`` is what ``prepare_report.json`` holds (see the module docstring)."""

    data_folder: str
    options: dict
    sets: dict[str, SetReport] = field(default_factory=dict)
    skipped: list[SkippedFile] = field(default_factory=list)
    warnings: list[ReportWarning] = field(default_factory=list)

    def skip(self, stage: str, wav: str, reason: str, detail: str, duration: float | None = None) -> None:
        self.skipped.append(SkippedFile(stage, wav, reason, detail, duration))

    def warn(self, stage: str, wav: str, reason: str, detail: str) -> None:
        self.warnings.append(ReportWarning(stage, wav, reason, detail))

    def log_set(self, corpus: str, stage: str, note: str = "") -> None:
        """One console line with the counts of a set, a warning when files were skipped as invalid."""
        report = self.sets[stage]
        message = f"{corpus} {stage} ({'+'.join(report.subsets)}): {report.summary()}"
        if note:
            message += f"; {note}"
        counts = report.counts or {}
        loud = counts.get("skipped_unreadable") or counts.get("duplicate")
        logger.log(logging.WARNING if loud else logging.INFO, message)

    def to_json(self) -> dict:
        return {
            "data_folder": self.data_folder,
            "options": self.options,
            "sets": {name: report.to_json() for name, report in self.sets.items()},
            "skipped": [item.to_json() for item in self.skipped],
            "warnings": [item.to_json() for item in self.warnings],
        }

    @classmethod
    def from_json(cls, data: dict) -> "PrepareReport":
        return cls(
            data["data_folder"],
            data["options"],
            {name: SetReport.from_json(value) for name, value in data["sets"].items()},
            [SkippedFile(**item) for item in data["skipped"]],
            [ReportWarning(**item) for item in data["warnings"]],
        )
