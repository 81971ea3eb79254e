"""The ``list`` corpus format: a CSV, TSV, JSON or text file listing audio files, in any language.

Columns (CSV/TSV: a header row; JSON: the keys of each object; names are case-insensitive):

* ``path`` (required; also ``wav``, ``file``, ``filepath``, ``audio``, ``filename``): relative to the
  list's folder (or, for a file not there, to ``data_folder``), or absolute;
* ``duration`` (optional, seconds): checked against the file, a difference over 0.1 s is a
  ``duration_mismatch`` warning in the report (the manifest holds the file's own duration);
* ``speaker`` (optional; also ``spk_id``, ``speaker_id``, ``spk``, ``client_id``): the ``spk_id``, and what a
  speaker-disjoint split keeps together (else ``speaker_pattern`` reads it from the path);
* ``split`` (optional; also ``set``, ``subset``): ``train``, ``valid`` (or ``dev``, ``validation``,
  ``val``) or ``test``; an empty cell puts the row in the pool;
* ``text`` (optional; also ``label``, ``transcript``, ``sentence``): the manifest's ``label``.

Accepted files: ``.csv``, ``.tsv``/``.tab``, ``.json`` (a list of objects or of paths, or a SpeechBrain
manifest ``{id: {"wav": ..., ...}}`` whose ``{data_root}`` is replaced by ``data_folder``), ``.jsonl`` (one
object per line) and ``.txt``/``.lst`` (one path per line, ``#`` comments). A CSV/TSV without a header is
read as one path per line when it has a single column.

Rows with a ``split`` are their set; the sets no row names are drawn from the pool (``train`` rows and rows
without a split) by proportions: see :mod:`utils.corpus.custom`. Each file's id comes from its path
relative to the list's folder (or to ``data_folder``; else the absolute path) without its suffix, ``/``
written ``__``. Listed files that do not exist are skipped (``missing_file``); when none exists the
preparation stops with an error that shows where the paths were looked for.
"""

import csv
import hashlib
import json
import os
from dataclasses import dataclass
from functools import partial

from utils.corpus.custom import FORMAT_VERSION, DrawOptions, build_with_pool, candidate
from utils.corpus.prepare import Plan, SetSource, manifest_paths, run_preparation
from utils.corpus.report import PrepareReport
from utils.corpus.splits import SPLITS, require_speaker_matches
from utils.corpus.validate import AUDIO_SUFFIXES

__all__ = ["ListRow", "prepare_list", "read_list"]

COLUMNS = {
    "path": ("path", "wav", "file", "filepath", "file_path", "audio", "audio_path", "filename"),
    "duration": ("duration", "seconds", "duration_seconds"),
    "speaker": ("speaker", "spk_id", "speaker_id", "spk", "client_id"),
    "split": ("split", "set", "subset"),
    "text": ("text", "label", "transcript", "transcription", "sentence"),
}
SPLIT_NAMES = {"train": "train", "valid": "valid", "dev": "valid", "validation": "valid", "val": "valid"}
SPLIT_NAMES["test"] = "test"
FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".json": "json", ".jsonl": "jsonl"}
FORMATS.update({".txt": "lines", ".lst": "lines", ".list": "lines"})
LAYOUT = (
    "With corpus_format list, corpus_list (or data_folder itself) is a CSV/TSV/JSON/text file listing the "
    "audio files: a header row with a 'path' column (relative to the list's folder, or absolute) and "
    "optional 'duration', 'speaker', 'split' (train/valid/test) and 'text' columns."
)


@dataclass
class ListRow:
    """One listed file, as written in the list (``where`` says which line or item)."""

    where: str
    path: str
    duration: float | None = None
    speaker: str = ""
    split: str | None = None
    text: str = ""


def _field(record: dict, name: str):
    """The value of column ``name`` (any of its aliases, case-insensitive), or ``None``."""
    lowered = {str(key).strip().lower(): value for key, value in record.items()}
    return next((lowered[alias] for alias in COLUMNS[name] if alias in lowered), None)


def _row(record: dict | str, where: str, list_file: str, data_folder: str | None) -> ListRow:
    """A :class:`ListRow` from one object or path; ``ValueError`` naming the line for a bad value."""
    if isinstance(record, str):
        record = {"path": record}
    if not isinstance(record, dict):
        raise ValueError(f"{list_file}, {where}: expected an object or a path, got {record!r}")
    path = str(_field(record, "path") or "").strip()
    if not path:
        names = ", ".join(COLUMNS["path"])
        raise ValueError(f"{list_file}, {where}: no path (the column is named one of: {names}).\n{LAYOUT}")
    if data_folder:
        path = path.replace("{data_root}", data_folder)
    duration, split = _field(record, "duration"), str(_field(record, "split") or "").strip().lower()
    try:
        duration = None if duration in (None, "") else float(duration)
    except (TypeError, ValueError):
        raise ValueError(f"{list_file}, {where}: duration {duration!r} is not a number of seconds") from None
    if split and split not in SPLIT_NAMES:
        allowed = ", ".join(SPLIT_NAMES)
        raise ValueError(f"{list_file}, {where}: split {split!r} is not one of {allowed} (or empty)")
    speaker, text = (str(_field(record, key) or "").strip() for key in ("speaker", "text"))
    return ListRow(where, path, duration, speaker, SPLIT_NAMES.get(split), text)


def _tabular(stream, delimiter: str, list_file: str) -> list[tuple[str, dict | str]]:
    """``(where, record)`` of each data row of a CSV/TSV (a single headerless column: paths)."""
    rows = [(n, row) for n, row in enumerate(csv.reader(stream, delimiter=delimiter), 1) if any(row)]
    if not rows:
        return []
    header = [cell.strip().lower() for cell in rows[0][1]]
    if not any(name in COLUMNS["path"] for name in header):
        if len(header) == 1 and header[0].endswith(AUDIO_SUFFIXES):
            return [(f"line {n}", row[0]) for n, row in rows]
        raise ValueError(
            f"{list_file} has no path column in its header row {rows[0][1]!r}: name it one of "
            f"{', '.join(COLUMNS['path'])} (the delimiter is {delimiter!r}).\n{LAYOUT}"
        )
    return [(f"line {n}", dict(zip(header, row, strict=False))) for n, row in rows[1:]]


def _records(list_file: str, data_folder: str | None) -> list[tuple[str, dict | str]]:
    """``(where, record)`` of every entry of the list file, whatever its format."""
    kind = FORMATS.get(os.path.splitext(list_file)[1].lower())
    if kind is None:
        raise ValueError(f"{list_file}: unknown list format; use one of {', '.join(FORMATS)}.\n{LAYOUT}")
    with open(list_file, encoding="utf-8-sig", newline="") as stream:
        if kind in ("csv", "tsv"):
            return _tabular(stream, "," if kind == "csv" else "\t", list_file)
        lines = [(n, line.strip()) for n, line in enumerate(stream, 1) if line.strip()]
        if kind == "lines":
            return [(f"line {n}", line) for n, line in lines if not line.startswith("#")]
        try:
            if kind == "jsonl":
                return [(f"line {n}", json.loads(line)) for n, line in lines]
            data = json.loads("\n".join(line for _, line in lines) or "[]")
        except json.JSONDecodeError as error:
            raise ValueError(f"{list_file} is not valid JSON: {error}") from None
    if isinstance(data, dict):  # a SpeechBrain manifest: {id: {"wav": ...}}
        return [(f"item {key!r}", value) for key, value in data.items()]
    if isinstance(data, list):
        return [(f"item {n}", value) for n, value in enumerate(data)]
    raise ValueError(f"{list_file}: expected a JSON list of objects or paths, got {type(data).__name__}")


def read_list(list_file, data_folder: str | None = None) -> list[ListRow]:
    """The rows of a list file (see the module docstring); ``ValueError`` for a malformed one."""
    list_file = os.fspath(list_file)
    return [_row(record, where, list_file, data_folder) for where, record in _records(list_file, data_folder)]


def _relative(path: str, bases: list[str]) -> str:
    """``path`` relative to the first base that holds it (``/`` separators), else absolute without ``/``."""
    for base in bases:
        relative = os.path.relpath(path, base)
        if not relative.startswith(os.pardir):
            return relative.replace(os.sep, "/")
    return path.lstrip(os.sep).replace(os.sep, "/")


def _locate(listed: str, bases: list[str]) -> str:
    """The absolute path of a listed one: as it is when absolute, else under the first base (the list's
    folder, then data_folder) where it exists, else under the list's folder (reported missing)."""
    listed = os.path.expanduser(listed)
    if os.path.isabs(listed):
        return os.path.normpath(listed)
    candidates = [os.path.normpath(os.path.join(base, listed)) for base in bases]
    return next((path for path in candidates if os.path.lexists(path)), candidates[0])


def _resolve(rows: list[ListRow], list_file: str, bases: list[str]) -> list[tuple[ListRow, str, str]]:
    """``(row, absolute path, relative path)``; ``FileNotFoundError`` when no listed file exists."""
    resolved = []
    for row in rows:
        path = _locate(row.path, bases)
        resolved.append((row, path, _relative(path, bases)))
    if not any(os.path.lexists(path) for _, path, _ in resolved):
        examples = "; ".join(f"{row.path!r} -> {path}" for row, path, _ in resolved[:3])
        where = " (then from data_folder " + bases[1] + ")" if len(bases) > 1 else ""
        raise FileNotFoundError(
            f"None of the {len(rows)} files listed in {list_file} exists (e.g. {examples}). Relative paths "
            f"are read from the list's folder {bases[0]}{where}: fix the paths (or make them absolute), set "
            "--data_folder to the folder they are relative to, or move the list there."
        )
    return resolved


def _build(report: PrepareReport, plan: Plan, list_file: str, bases: list[str], draw: DrawOptions):
    rows = read_list(list_file, plan.data_folder if os.path.isdir(plan.data_folder) else None)
    if not rows:
        raise ValueError(f"{list_file} lists no file.\n{LAYOUT}")
    pattern = draw.check(speakers_listed=any(row.speaker for row in rows))
    resolved = _resolve(rows, list_file, bases)
    require_speaker_matches(pattern, [rel for row, _, rel in resolved if not row.speaker], list_file)
    sources = {stage: SetSource([f"{list_file}:{stage}"]) for stage in ("valid", "test")}
    pool = SetSource([list_file])
    for row, path, rel in resolved:
        item = candidate(path, rel, pattern, draw, row.speaker, label=row.text, listed_duration=row.duration)
        sources.get(row.split, pool).candidates.append(item)
    if not pool.candidates:
        raise ValueError(f"{list_file} has no row for training: give some rows the split 'train' (or none)")
    fixed = {stage: source for stage, source in sources.items() if source.candidates}
    return build_with_pool(plan, report, fixed, pool, draw)


def prepare_list(
    corpus_list,
    save_json_train,
    save_json_valid,
    save_json_test,
    data_folder=None,
    skip_prep=False,
    report_file=None,
    **options,
) -> PrepareReport | None:
    """Write the train/valid/test manifests of the files a list names (see the module docstring).

    Arguments
    ---------
    corpus_list : the list file (CSV, TSV, JSON, JSON lines or text).
    save_json_train, save_json_valid, save_json_test : the manifests.
    data_folder : optional corpus root: ids of absolute paths under it are relative to it, and it
        replaces ``{data_root}`` in a SpeechBrain manifest.
    skip_prep, report_file, **options : as :func:`utils.corpus.folder.prepare_folder`.

    Returns the report, or ``None`` when skipped or already prepared with the same options (and the same
    list content). Raises ``FileNotFoundError`` (no list, no listed file exists), ``ValueError`` (a
    malformed list, options, a speaker pattern that matches nothing) or ``CorpusError``.
    """
    if skip_prep:
        return None
    draw = DrawOptions(**options)
    draw.check(speakers_listed=True)
    if corpus_list is None or not os.path.isfile(os.fspath(corpus_list)):
        raise FileNotFoundError(f"The corpus list is not a file: {corpus_list}.\n{LAYOUT}")
    list_file = os.path.abspath(os.fspath(corpus_list))
    root = os.path.abspath(os.fspath(data_folder)) if data_folder else os.path.dirname(list_file)
    manifests = manifest_paths(SPLITS, save_json_train, save_json_valid, save_json_test)
    with open(list_file, "rb") as stream:
        digest = hashlib.file_digest(stream, "sha256").hexdigest()
    options = {
        "format_version": FORMAT_VERSION,
        "corpus_format": "list",
        "data_folder": root,
        "manifests": manifests,
        "corpus_list": list_file,
        "corpus_list_sha256": digest,  # an edited list is prepared again
        **draw.to_options(),
    }
    plan = Plan("List corpus", root, manifests, options, report_file)
    bases = [os.path.dirname(list_file)] + ([root] if os.path.isdir(root) and data_folder else [])
    return run_preparation(plan, partial(_build, plan=plan, list_file=list_file, bases=bases, draw=draw))
