"""The preparation every corpus format shares: candidate files -> validated entries -> sets -> manifests.

A format module (:mod:`utils.corpus.libritts`, :mod:`utils.corpus.folder`, :mod:`utils.corpus.filelist`)
lists its files as :class:`Candidate` s grouped in :class:`SetSource` s, then calls
:func:`run_preparation` with a ``build`` function, which usually is :func:`build_sets`:

* sets with their own files (``fixed``: LibriTTS subsets, set folders, a list's split column) are scanned
  one by one; the valid set is a seeded draw of ``valid_size`` of its usable files;
* the other sets are drawn from one ``pool`` of files by a split function (proportions, speaker-disjoint,
  LibriTTS's ``split_ratio``), the pool being reported as the set ``"all"``.

:func:`run_preparation` makes the whole thing idempotent and atomic (see :mod:`utils.corpus.manifest`) and
writes the report (:mod:`utils.corpus.report`), also when a set turns out unusable.
"""

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from tqdm import tqdm

from focalcodec.files import atomic_write_json
from utils.corpus.manifest import (
    OPTIONS_FILE,
    REPORT_FILE,
    ManifestEntry,
    forget_options,
    is_prepared,
    manifest_json,
    write_outputs,
)
from utils.corpus.report import UNREADABLE_REASONS, CorpusError, PrepareReport, SetReport
from utils.corpus.splits import SPLITS, draw_valid
from utils.corpus.validate import MIN_ENCODABLE_SECONDS, check_name, printable, validate_audio

__all__ = [
    "Candidate",
    "Plan",
    "SetSource",
    "build_sets",
    "manifest_paths",
    "run_preparation",
    "scan",
    "uttid_from_path",
]

logger = logging.getLogger(__name__)

# Warn when a listed duration and the file's differ by more than this (seconds)
DURATION_TOLERANCE = 0.1

# (wav path, uttid) -> (label, "") or (None, why the label is missing)
LabelReader = Callable[[str, str], tuple[str | None, str]]
# usable pool entries -> ({stage: entries}, note for the console)
PoolSplit = Callable[[list[ManifestEntry]], tuple[dict[str, list[ManifestEntry]], str]]


@dataclass
class Candidate:
    """A file to validate, with what its format already knows about it."""

    path: str  # absolute
    uttid: str
    spk_id: str | None = ""  # None: no speaker could be read (skipped as no_speaker)
    label: str = ""
    listed_duration: float | None = None  # from a list, checked against the file


@dataclass
class SetSource:
    """The candidates of one set (or of the pool) and where they come from (``subsets`` in the report)."""

    subsets: list[str]
    candidates: list[Candidate] = field(default_factory=list)


@dataclass
class Plan:
    """What a preparation writes, and the options that decide whether it must be redone."""

    corpus: str  # console prefix, e.g. "LibriTTS"
    data_folder: str
    manifests: dict[str, str]  # stage -> absolute path
    options: dict
    report_file: str | None = None  # default: prepare_report.json beside the first manifest

    @property
    def out_dir(self) -> str:
        return os.path.dirname(next(iter(self.manifests.values())))

    @property
    def report_path(self) -> str:
        if self.report_file:
            return os.path.abspath(os.fspath(self.report_file))
        return os.path.join(self.out_dir, REPORT_FILE)


def uttid_from_path(relative_path: str) -> str:
    """A stable, file-name-safe utterance id: the ``/``-separated relative path without its suffix, each
    ``/`` written ``__`` (``spk1/book/0001.flac`` -> ``spk1__book__0001``)."""
    return os.path.splitext(relative_path)[0].replace("/", "__")


def manifest_paths(stages, save_json_train, save_json_valid, save_json_test) -> dict[str, str]:
    """``{stage: absolute manifest path}`` for ``stages``; ``ValueError`` naming any that is missing."""
    given = {"train": save_json_train, "valid": save_json_valid, "test": save_json_test}
    missing = [stage for stage in stages if not given[stage]]
    if missing:
        raise ValueError(f"No manifest path given for: {', '.join(missing)}")
    return {stage: os.path.abspath(os.fspath(given[stage])) for stage in stages}


def run_preparation(plan: Plan, build: Callable[[PrepareReport], dict[str, dict]]) -> PrepareReport | None:
    """Skip when already prepared with ``plan.options``; else ``build`` the manifests, write them, the
    report and the options file. Returns the report, or ``None`` when nothing was done."""
    options_path = os.path.join(plan.out_dir, OPTIONS_FILE)
    if is_prepared(options_path, plan.options, plan.manifests):
        logger.info(
            f"{plan.corpus} manifests already prepared with the same options ({options_path}): skipping."
        )
        return None
    # From here on the old manifests are stale: drop the options file first.
    forget_options(options_path)
    report = PrepareReport(plan.data_folder, plan.options)
    logger.info(f"Preparing {plan.corpus} manifests from {plan.data_folder} (the corpus is only read)")
    try:
        outputs = build(report)
    finally:
        if report.sets or report.skipped:
            atomic_write_json(plan.report_path, report.to_json(), indent=2)
    write_outputs(plan.manifests, outputs, options_path, plan.options)
    skipped = len(report.skipped)
    logger.info(
        f"{plan.corpus} manifests written to {plan.out_dir}; report: {plan.report_path}"
        + (f" ({skipped} files skipped, reasons listed there)" if skipped else "")
    )
    return report


def _check(candidate: Candidate, floor: float, max_duration: float | None) -> tuple[dict | None, str, str]:
    """``(info, "", "")`` for a usable file (``info`` with its ``duration``), else ``(info or None, reason,
    detail)``."""
    failed = check_name(candidate.path)
    if failed is None and candidate.spk_id is None:
        failed = None, "no_speaker", "no speaker: the speaker pattern does not match this path"
    if failed is None:
        failed = validate_audio(candidate.path)
    info, reason, detail = failed
    if info is None:
        return None, reason, detail
    info["duration"] = duration = info["frames"] / info["sample_rate"]
    if duration < floor:
        return info, "too_short", f"{duration:.3f} s < {floor:g} s"
    if max_duration is not None and duration > max_duration:
        return info, "too_long", f"{duration:.3f} s > {max_duration:g} s"
    return info, "", ""


def _count_skip(report: PrepareReport, stage: str, path: str, info: dict | None, reason: str, detail: str):
    """Count and list one skipped file."""
    if reason in UNREADABLE_REASONS:
        report.sets[stage].count("skipped_unreadable", reason)
    elif reason in ("too_short", "too_long"):
        report.sets[stage].count(reason, reason)
    else:
        report.sets[stage].skip_reasons[reason] = report.sets[stage].skip_reasons.get(reason, 0) + 1
    duration = info["duration"] if info is not None else None
    report.skip(stage, printable(path) if reason == "bad_name" else path, reason, detail, duration)


def scan(
    source: SetSource,
    stage: str,
    durations: tuple[float, float | None],
    report: PrepareReport,
    read_label: LabelReader | None = None,
) -> list[ManifestEntry]:
    """Validate every candidate of ``source``: the usable entries, with ``report.sets[stage]`` counting
    the rest (each skipped file listed in ``report.skipped``). ``durations`` is ``(min, max or None)``."""
    report.sets[stage] = counts = SetReport.scanned(source.subsets, len(source.candidates))
    floor, max_duration = max(durations[0], MIN_ENCODABLE_SECONDS), durations[1]
    entries, seen = [], {}
    desc = f"Checking {stage} ({'+'.join(source.subsets)})"
    for candidate in tqdm(source.candidates, desc=desc, unit="file", dynamic_ncols=True):
        info, reason, detail = _check(candidate, floor, max_duration)
        if not reason and candidate.uttid in seen:
            reason, detail = "duplicate", f"same utterance id as {seen[candidate.uttid]}"
            counts.count("duplicate", "duplicate")
            report.skip(stage, candidate.path, reason, detail)
            continue
        if reason:
            _count_skip(report, stage, candidate.path, info, reason, detail)
            continue
        seen[candidate.uttid] = candidate.path
        entries.append(_entry(candidate, info, stage, report, read_label))
    counts.usable = len(entries)
    return entries


def _entry(candidate: Candidate, info: dict, stage: str, report: PrepareReport, read_label) -> ManifestEntry:
    """The manifest entry of a usable file (its label read, a listed duration compared)."""
    label = candidate.label
    if read_label is not None:
        label, why = read_label(candidate.path, candidate.uttid)
        if label is None:
            report.sets[stage].count("missing_text")
            report.warn(stage, candidate.path, "missing_text", why)
            label = ""
    listed = candidate.listed_duration
    if listed is not None and abs(listed - info["duration"]) > DURATION_TOLERANCE:
        detail = f"listed as {listed:g} s, the file holds {info['duration']:.3f} s (the manifest says so)"
        report.warn(stage, candidate.path, "duration_mismatch", detail)
    return ManifestEntry(
        candidate.uttid,
        candidate.path,
        info["duration"],
        info["sample_rate"],
        info["channels"],
        candidate.spk_id or "",
        label,
    )


def _finish(stage, entries, report, plan, note="", hint="") -> dict:
    """Record the kept entries of a set, log its line, and return its manifest (``CorpusError`` if empty)."""
    stats = report.sets[stage]
    stats.kept = len(entries)
    stats.hours = round(sum(entry.duration for entry in entries) / 3600, 4)
    stats.manifest = plan.manifests[stage]
    report.log_set(plan.corpus, stage, note)
    if not entries:
        scanned = stats if stats.counts is not None else report.sets.get("all", stats)  # drawn: the pool's
        counts = scanned.counts or {}
        raise CorpusError(
            f"The {stage} set ({'+'.join(stats.subsets)}) has no usable utterance: {scanned.found} found, "
            f"{counts.get('skipped_unreadable', 0)} unreadable, {counts.get('too_short', 0)} too short, "
            f"{counts.get('too_long', 0)} too long. See the report for each file."
            + (f" {hint}" if hint else "")
        )
    return manifest_json(entries, plan.manifests[stage])


def build_sets(
    plan: Plan,
    report: PrepareReport,
    fixed: dict[str, SetSource],
    pool: SetSource | None = None,
    split_pool: PoolSplit | None = None,
    **options,
) -> dict[str, dict]:
    """The manifests ``{stage: SpeechBrain JSON}`` of the sets of ``plan``: ``fixed`` ones scanned (valid
    drawn to ``valid_size``), the others drawn from ``pool`` by ``split_pool``.

    ``options``: ``durations`` ``(min, max)``, ``valid_size``, ``seed``, ``read_label`` (LibriTTS), ``hint``
    (appended to the error of an empty set), ``pool_hint`` (the same, for a set drawn from the pool) and
    ``expand`` (``(stage, file entries) -> utterance entries``, applied to each set's files before the valid
    draw: Libri-Light's cut into pieces).
    """
    durations, read_label = options["durations"], options.get("read_label")
    expand = options.get("expand") or (lambda stage, entries: entries)
    outputs = {}
    for stage in (stage for stage in SPLITS if stage in fixed):
        entries = expand(stage, scan(fixed[stage], stage, durations, report, read_label))
        note = ""
        if stage == "valid":
            entries, report.sets[stage].not_drawn, note = draw_valid(
                entries, options.get("valid_size"), options.get("seed", 0)
            )
        outputs[stage] = _finish(stage, entries, report, plan, note, options.get("hint", ""))
    if pool is not None:
        entries = scan(pool, "all", durations, report, read_label)
        parts, note = split_pool(entries)
        hint = " ".join(filter(None, (options.get("pool_hint"), options.get("hint"))))
        for stage, part in parts.items():
            part = expand(stage, part)
            report.sets[stage] = SetReport(pool.subsets, len(part), len(part))
            outputs[stage] = _finish(stage, part, report, plan, note, hint)
    return {stage: outputs[stage] for stage in SPLITS if stage in outputs}
