"""Corpus preparation for every format: validate the audio, write the train/valid/test manifests.

The recipe calls :func:`prepare_data` on the main process; it reads the keys of the YAML's Data section
and dispatches on ``corpus_format``:

* ``libritts`` (default): the LibriTTS layout (:mod:`utils.corpus.libritts`, also ``libritts_prepare.py``;
  subsets named by ``train_split``/``valid_split``/``test_split``; ``download: True`` first fetches the
  missing ones);
* ``folder``: any tree of audio files under ``data_folder`` (:mod:`utils.corpus.folder`);
* ``list``: a CSV/TSV/JSON list of audio files, ``corpus_list`` or ``data_folder`` itself
  (:mod:`utils.corpus.filelist`);
* ``librilight``: Libri-Light's subsets (``train_split``), long files cut into utterances of at most
  ``cut_seconds`` along their voice activity, by offset (:mod:`utils.corpus.librilight`).

Modules: ``libritts``, ``validate`` (one file), ``report`` (the report's dataclasses and JSON), ``splits``
(valid draw, proportional and speaker-disjoint splits), ``manifest`` (entries, escaping, options file),
``prepare`` (the pipeline all formats share), ``custom`` (what folder and list share), ``folder``,
``filelist``, ``librilight``, ``download`` (LibriTTS from OpenSLR), ``audio`` (audio as training reads it),
``shards`` (WebDataset tar shards of prepared manifests, their index, reading them back) and
``samples``/``voice`` (generated corpora for the quickstart, tests and demos). Every format gives the
same guarantees: the corpus is only read, every file is validated and each skipped one is reported with
its reason (``prepare_report.json``), a second run with the same options does nothing
(``prepare_options.json``), manifests are written atomically, and errors say what to fix. Using
them: docs/training.md, "Training on your own data".
"""

import logging
import os
from collections.abc import Mapping

from utils.corpus.audio import as_prepared
from utils.corpus.filelist import prepare_list
from utils.corpus.folder import prepare_folder
from utils.corpus.librilight import DEFAULT_CUT_SECONDS, prepare_librilight
from utils.corpus.libritts import download_splits, prepare_libritts
from utils.corpus.splits import SPLITS

__all__ = ["CORPUS_FORMATS", "SPLITS", "as_prepared", "download_data", "prepare_data"]

logger = logging.getLogger(__name__)

CORPUS_FORMATS = ("libritts", "folder", "list", "librilight")


def _common(hparams: Mapping) -> dict:
    """The arguments every format takes, from the YAML."""
    return {
        "save_json_train": hparams["train_json"],
        "save_json_valid": hparams["valid_json"],
        "save_json_test": hparams["test_json"],
        "sample_rate": hparams["sample_rate"],
        "seed": hparams["prepare_seed"],
        "valid_size": hparams["valid_size"],
        "min_duration": hparams["min_duration"],
    }


def _draw_options(hparams: Mapping) -> dict:
    """The options of the folder and list formats, from the YAML (defaults when a key is absent)."""
    return {
        "valid_proportion": hparams.get("valid_proportion", 0.1),
        "test_proportion": hparams.get("test_proportion", 0.1),
        "speaker_pattern": hparams.get("speaker_pattern"),
        "speaker_disjoint": bool(hparams.get("speaker_disjoint", False)),
    }


def _corpus_format(hparams: Mapping) -> str:
    corpus_format = str(hparams.get("corpus_format") or "libritts").lower()
    if corpus_format not in CORPUS_FORMATS:
        raise ValueError(f"corpus_format must be one of {', '.join(CORPUS_FORMATS)}, not {corpus_format!r}")
    return corpus_format


def download_data(hparams: Mapping) -> None:
    """With ``download: True`` (libritts), fetch the subsets of ``train_split``/``valid_split``/
    ``test_split`` missing from ``data_folder`` (resumable; nothing to do when all are there). Called by
    :func:`prepare_data`; with ``data_per_node`` the recipe calls it first once per node
    (``run_once_per_node``), for nodes that share no file system."""
    if _corpus_format(hparams) != "libritts" or not hparams.get("download", False):
        return
    download_splits(
        hparams["data_folder"],
        *(hparams[key] for key in ("train_split", "valid_split", "test_split")),
        base_url=hparams.get("download_url"),
        checksums=hparams.get("download_checksums"),
    )


def _prepare_libritts(hparams: Mapping) -> None:
    splits = {key: hparams[key] for key in ("train_split", "valid_split", "test_split")}
    download_data(hparams)
    prepare_libritts(hparams["data_folder"], **_common(hparams), **splits, model_name="HiFi-GAN")


def _prepare_librilight(hparams: Mapping) -> None:
    prepare_librilight(
        hparams["data_folder"],
        **_common(hparams),
        subsets=hparams["train_split"],
        cut_seconds=hparams.get("cut_seconds", DEFAULT_CUT_SECONDS),
        **{key: value for key, value in _draw_options(hparams).items() if key != "speaker_pattern"},
    )


def prepare_data(hparams: Mapping) -> None:
    """Prepare the manifests ``train_json``/``valid_json``/``test_json`` of the corpus the YAML names.

    Reads ``corpus_format`` (``libritts`` when absent), ``data_folder``, ``skip_prep``, ``sample_rate``,
    ``prepare_seed``, ``valid_size``, ``min_duration``; for ``libritts`` ``train_split``, ``valid_split``,
    ``test_split``, ``download``, ``download_url``, ``download_checksums``; for ``folder``
    ``train_folder``, ``valid_folder``, ``test_folder``; for ``list`` ``corpus_list``; for both
    ``valid_proportion``, ``test_proportion``, ``speaker_pattern``, ``speaker_disjoint``; for ``librilight``
    ``train_split`` (the subsets), ``cut_seconds`` and the proportions (see the Data section of
    ``hparams/bsq.yaml``). Call it on the main process only (``run_on_main``).
    """
    corpus_format = _corpus_format(hparams)
    if hparams.get("skip_prep", False):
        logger.info("skip_prep: using the manifests as they are")
        return
    if corpus_format == "libritts":
        _prepare_libritts(hparams)
    elif corpus_format == "librilight":
        _prepare_librilight(hparams)
    elif corpus_format == "folder":
        folders = {key: hparams.get(key) for key in ("train_folder", "valid_folder", "test_folder")}
        prepare_folder(hparams["data_folder"], **_common(hparams), **folders, **_draw_options(hparams))
    else:
        data_folder, corpus_list = os.fspath(hparams["data_folder"]), hparams.get("corpus_list")
        if corpus_list:  # relative to data_folder (os.path.join keeps an absolute path)
            corpus_list = os.path.join(data_folder, os.fspath(corpus_list))
        else:  # data_folder is the list itself
            corpus_list, data_folder = data_folder, None
        prepare_list(corpus_list, **_common(hparams), data_folder=data_folder, **_draw_options(hparams))
