"""The ``folder`` corpus format: any tree of audio files (WAV, FLAC, OGG, MP3), in any language.

    <data_folder>/**/<anything>.{wav,flac,ogg,mp3}

The train/valid/test sets are either folders (``train_folder``, ``valid_folder``, ``test_folder``: relative
to ``data_folder`` or absolute, e.g. its subfolders ``train``/``dev``/``test``), or drawn from the pool by
proportions with a seed, or a mix (e.g. train and test folders, valid drawn from train): see
:mod:`utils.corpus.custom`. Without ``train_folder`` the pool is every audio file under ``data_folder``
outside the other set folders.

Each file's id is its path relative to the folder scanned (the set folder, or ``data_folder`` for the pool)
without its suffix, ``/`` written ``__`` (``spk1/book/0001.flac`` -> ``spk1__book__0001``): stable, unique,
usable as a file name. Two files differing only by their suffix get the same id: the second is skipped as a
``duplicate``. ``speaker_pattern`` (a regular expression with one group, searched in that relative path)
gives ``spk_id``; files it does not match are skipped (``no_speaker``). ``label`` is ``""``.

Validation, report, idempotence and atomic writes are the shared ones (``utils/corpus/``); the corpus is
only read. Mixed rates and channel counts are fine: the data pipeline downmixes and resamples on load.
"""

import logging
import os
from collections import Counter
from functools import partial

from utils.corpus.custom import FORMAT_VERSION, DrawOptions, build_with_pool, candidate
from utils.corpus.prepare import Plan, SetSource, manifest_paths, run_preparation
from utils.corpus.report import PrepareReport
from utils.corpus.splits import SPLITS, require_speaker_matches
from utils.corpus.validate import AUDIO_SUFFIXES, find_audio

__all__ = ["prepare_folder"]

logger = logging.getLogger(__name__)

LAYOUT = (
    "With corpus_format folder, data_folder is the root of a tree of audio files "
    f"({', '.join(AUDIO_SUFFIXES)}, any depth, any names); train_folder/valid_folder/test_folder name the "
    "folders of the sets (relative to data_folder, or absolute), and the sets without one are drawn from "
    "the training files by valid_proportion/test_proportion."
)


def _folder(data_folder: str, folder, key: str) -> str:
    """The absolute set folder, or ``FileNotFoundError`` naming it and the folders that are there."""
    path = os.path.abspath(os.path.join(data_folder, os.fspath(folder)))
    if os.path.isdir(path):
        return path
    try:
        present = sorted(entry.name for entry in os.scandir(data_folder) if entry.is_dir())
    except OSError:
        present = []
    raise FileNotFoundError(
        f"{key} {folder!r} is not a folder: {path} (folders in {data_folder}: "
        f"{', '.join(present[:20]) if present else 'none'}).\n{LAYOUT}"
    )


def _no_audio(root: str, exclude: tuple[str, ...]) -> FileNotFoundError:
    """The error for a folder without audio: what is there instead."""
    suffixes = Counter()
    for _, _, files in os.walk(root, followlinks=True):
        suffixes.update(os.path.splitext(name)[1].lower() or "(none)" for name in files)
    found = ", ".join(f"{suffix} ({count})" for suffix, count in suffixes.most_common(8)) or "no file at all"
    outside = f" (outside {', '.join(exclude)})" if exclude else ""
    return FileNotFoundError(
        f"No audio file ({', '.join(AUDIO_SUFFIXES)}) found under {root}{outside}; file suffixes there: "
        f"{found}. Check --data_folder (and the set folders), convert the audio to one of these formats, or "
        f"use --corpus_format libritts or list.\n{LAYOUT}"
    )


def _source(root: str, pattern, draw: DrawOptions, exclude: tuple[str, ...] = ()) -> SetSource:
    """Every audio file under ``root`` (not entering ``exclude``) as a candidate."""
    paths = find_audio(root, exclude=exclude)
    if not paths:
        raise _no_audio(root, exclude)
    relative = [os.path.relpath(path, root).replace(os.sep, "/") for path in paths]
    require_speaker_matches(pattern, relative, root)
    return SetSource([root], [candidate(p, r, pattern, draw) for p, r in zip(paths, relative, strict=True)])


def _build(report: PrepareReport, plan: Plan, data_folder: str, folders: dict, draw: DrawOptions):
    pattern = draw.check()
    fixed = {stage: _source(folders[stage], pattern, draw) for stage in ("valid", "test") if folders[stage]}
    if folders["train"]:
        pool = _source(folders["train"], pattern, draw)
    else:
        pool = _source(data_folder, pattern, draw, exclude=tuple(f for f in folders.values() if f))
    return build_with_pool(plan, report, fixed, pool, draw)


def prepare_folder(
    data_folder,
    save_json_train,
    save_json_valid,
    save_json_test,
    train_folder=None,
    valid_folder=None,
    test_folder=None,
    skip_prep=False,
    report_file=None,
    **options,
) -> PrepareReport | None:
    """Write the train/valid/test manifests of a folder of audio files (see the module docstring).

    Arguments
    ---------
    data_folder : the corpus root. save_json_train, save_json_valid, save_json_test : the manifests.
    train_folder, valid_folder, test_folder : the sets' folders (relative to ``data_folder`` or absolute),
        or ``None`` for a set drawn from the pool.
    skip_prep : do nothing. report_file : the JSON report (default ``prepare_report.json`` beside the
        train manifest).
    **options : the fields of :class:`utils.corpus.custom.DrawOptions` (``valid_proportion``,
        ``test_proportion``, ``seed``, ``speaker_pattern``, ``speaker_disjoint``, ``valid_size``,
        ``min_duration``, ``max_duration``, ``sample_rate``).

    Returns the report, or ``None`` when skipped or already prepared with the same options. Raises
    ``FileNotFoundError`` (missing folder, no audio), ``ValueError`` (options, a speaker pattern that
    matches nothing) or ``CorpusError`` (a set without usable audio).
    """
    if skip_prep:
        return None
    draw = DrawOptions(**options)
    if data_folder is None or not os.path.isdir(os.fspath(data_folder)):
        raise FileNotFoundError(f"data_folder not found (or not a folder): {data_folder}.\n{LAYOUT}")
    data_folder = os.path.abspath(os.fspath(data_folder))
    given = {"train": train_folder, "valid": valid_folder, "test": test_folder}
    folders = {stage: _folder(data_folder, f, f"{stage}_folder") if f else None for stage, f in given.items()}
    draw.check()
    draw.shares({stage for stage, folder in folders.items() if folder})
    manifests = manifest_paths(SPLITS, save_json_train, save_json_valid, save_json_test)
    options = {
        "format_version": FORMAT_VERSION,
        "corpus_format": "folder",
        "data_folder": data_folder,
        "manifests": manifests,
        "folders": folders,
        **draw.to_options(),
    }
    plan = Plan("Folder corpus", data_folder, manifests, options, report_file)
    build = partial(_build, plan=plan, data_folder=data_folder, folders=folders, draw=draw)
    return run_preparation(plan, build)
