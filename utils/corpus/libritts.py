"""The LibriTTS layout: ``prepare_libritts`` (the signature and manifests of SpeechBrain's
``libritts_prepare.py``) on top of the shared preparation of :mod:`utils.corpus`, and ``download_splits``
(missing subsets fetched first).

The top-level ``libritts_prepare.py`` documents the manifests, the report and its command line, and
re-exports this module; what differs from SpeechBrain's preparation: docs/deviations.md #1-5.
"""

import logging
import os
from collections.abc import Sequence
from functools import partial

from utils.corpus.download import LIBRITTS_SHA256, download_libritts
from utils.corpus.download import LIBRITTS_URL as DOWNLOAD_URL
from utils.corpus.prepare import Candidate, Plan, SetSource, build_sets, manifest_paths, run_preparation
from utils.corpus.report import CorpusError
from utils.corpus.splits import cut, ratio_counts
from utils.corpus.validate import MIN_ENCODABLE_SECONDS, find_audio
from utils.corpus.validate import validate_audio as validate_wav

__all__ = [
    "LIBRITTS_URL",
    "MIN_ENCODABLE_SECONDS",
    "CorpusError",
    "download_splits",
    "find_wavs",
    "prepare_libritts",
    "validate_wav",
]

logger = logging.getLogger(__name__)

LIBRITTS_URL = "https://www.openslr.org/60"
FORMAT_VERSION = 1
SUPPORTED_MODEL_NAMES = (None, "HiFi-GAN", "Tacotron2")


def _layout_hint(data_folder: str, split: str = "<split>") -> str:
    return (
        "Expected the LibriTTS layout: "
        f"{data_folder}/{split}/<speaker>/<chapter>/<speaker>_<chapter>_<utt>_<seg>.wav "
        "(with <uttid>.normalized.txt beside each wav), i.e. data_folder is the LibriTTS/ folder that "
        "contains train-clean-100/, dev-clean/, test-clean/, ... "
        f"Download and unpack it from {LIBRITTS_URL} (or pass --download True to the training scripts), "
        "or run `python -m utils.sample_corpus DATA_FOLDER` for a small generated corpus. Another layout: "
        "--corpus_format folder or list (docs/training.md, 'Training on your own data')."
    )


def _as_list(value) -> list[str]:
    """``None``/``""``/``[]`` -> ``[]``; ``"a"`` -> ``["a"]``; a list or tuple is kept."""
    if not value:
        return []
    if isinstance(value, str | os.PathLike):
        return [os.fspath(value)]
    return [os.fspath(v) for v in value]


# ----------------------------------------------------------------------------------------------------
# Finding files
# ----------------------------------------------------------------------------------------------------


def _split_folder(data_folder: str, split: str) -> str:
    """The folder of one split, or ``FileNotFoundError`` with the expected layout."""
    folder = os.path.join(data_folder, split)
    if os.path.isdir(folder):
        return folder
    message = f"LibriTTS split folder not found: {folder}"
    if os.path.exists(folder):
        message = f"LibriTTS split path is not a folder: {folder}"
    if os.path.isfile(folder + ".tar.gz"):
        message += f" (the archive {folder}.tar.gz is there: unpack it first)"
    nested = os.path.join(data_folder, "LibriTTS", split)
    if os.path.isdir(nested):
        message += f" (but {nested} exists: set data_folder to {os.path.join(data_folder, 'LibriTTS')})"
    else:
        try:
            present = sorted(e.name for e in os.scandir(data_folder) if e.is_dir())
        except OSError:
            present = []
        message += f". Folders in {data_folder}: {', '.join(present[:20]) if present else 'none'}"
    raise FileNotFoundError(f"{message}.\n{_layout_hint(data_folder, split)}")


def find_wavs(folder: str) -> list[str]:
    """Every ``*.wav`` file (case-insensitive) under ``folder``, recursively, sorted.

    Symbolic links to folders are followed (each real folder is visited once). Broken links and other
    non-files named ``*.wav`` are included, so that validation reports them.
    """
    return find_audio(folder, (".wav",))


def _read_label(wav_path: str, uttid: str) -> tuple[str | None, str]:
    """The normalized text (braces removed), or ``(None, why)`` when missing or unreadable."""
    text_path = os.path.join(os.path.dirname(wav_path), f"{uttid}.normalized.txt")
    if not os.path.isfile(text_path):
        return None, f"no {os.path.basename(text_path)}"
    try:
        with open(text_path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError as error:
        return None, f"cannot read {os.path.basename(text_path)}: {error}"
    return text.replace("{", "").replace("}", "").strip(), ""


def _source(data_folder: str, subsets: list[str], stage: str) -> SetSource:
    """The wavs of ``subsets`` as candidates (``FileNotFoundError`` for a subset without any)."""
    source = SetSource(subsets)
    for subset in subsets:
        folder = _split_folder(data_folder, subset)
        found = find_wavs(folder)
        if not found:
            raise FileNotFoundError(
                f"No .wav file found under {folder} (split {subset!r} of the {stage} set).\n"
                f"{_layout_hint(data_folder, subset)}"
            )
        for wav in found:
            path = os.path.abspath(wav)
            uttid = os.path.basename(path)[: -len(".wav")]
            source.candidates.append(Candidate(path, uttid, uttid.split("_")[0]))
    return source


# ----------------------------------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------------------------------


def _check_data_folder(data_folder) -> str:
    if data_folder is None or str(data_folder) == "":
        raise FileNotFoundError(f"data_folder is not set.\n{_layout_hint('<data_folder>')}")
    data_folder = os.path.abspath(os.fspath(data_folder))
    if not os.path.isdir(data_folder):
        raise FileNotFoundError(
            f"LibriTTS data_folder not found (or not a folder): {data_folder}.\n"
            + _layout_hint(data_folder, "train-clean-100")
        )
    return data_folder


def _sets(splits: dict, libritts_subsets, split_ratio, manifest_args: dict) -> tuple[list[str], list | None]:
    """The stages to prepare and the pooled subsets (``None`` unless ``libritts_subsets`` is used)."""
    if libritts_subsets is not None and not all(splits.values()):
        libritts_subsets = _as_list(libritts_subsets)
        if not libritts_subsets:
            raise ValueError("libritts_subsets is empty")
        if len(split_ratio) != 3 or sum(split_ratio) <= 0 or min(split_ratio) < 0:
            raise ValueError(f"split_ratio must be 3 non-negative numbers, got {split_ratio!r}")
        return ["train", "valid", "test"], libritts_subsets
    stages = [stage for stage in ("train", "valid", "test") if splits[stage]]
    if not stages:
        raise ValueError("Nothing to prepare: give train_split, valid_split, test_split or libritts_subsets")
    for stage in ("train", "valid", "test"):
        if not splits[stage]:
            logger.warning(f"No {stage}_split given: {manifest_args[stage]} is not written.")
    return stages, None


def _build(report, plan, data_folder, splits, subsets, split_ratio, seed, valid_size, durations):
    """The manifests: one set per stage (``splits``), or ``subsets`` pooled and cut by ``split_ratio``."""
    options = {"durations": durations, "valid_size": valid_size, "seed": seed, "read_label": _read_label}
    if subsets is None:
        fixed = {stage: _source(data_folder, splits[stage], stage) for stage in plan.manifests}
        return build_sets(plan, report, fixed, **options)

    def split_pool(entries):
        note = f"{list(split_ratio)} split of {len(entries)} usable"
        return cut(entries, ratio_counts(len(entries), split_ratio), seed), note

    return build_sets(plan, report, {}, _source(data_folder, subsets, "all"), split_pool, **options)


def _options(data_folder, manifests, splits, subsets, split_ratio, **values) -> dict:
    """Everything that shapes the output: a change in any of these redoes the preparation."""
    return {
        "format_version": FORMAT_VERSION,
        "data_folder": data_folder,
        "manifests": manifests,
        "mode": "splits" if subsets is None else "subsets",
        "splits": dict.fromkeys(manifests) if subsets else splits,
        "libritts_subsets": subsets,
        "split_ratio": list(split_ratio) if subsets else None,
        "sample_rate": values["sample_rate"],
        "seed": values["seed"],
        "valid_size": values["valid_size"],
        "min_duration": float(values["min_duration"]),
        "max_duration": None if values["max_duration"] is None else float(values["max_duration"]),
    }


def prepare_libritts(
    data_folder, save_json_train, save_json_valid, save_json_test, sample_rate=16000,
    split_ratio=(80, 10, 10), libritts_subsets=None, train_split=None, valid_split=None, test_split=None,
    seed=1234, model_name=None, skip_prep=False, valid_size=500, min_duration=1.0, max_duration=None,
    report_file=None,
):  # fmt: skip
    """Write the train/valid/test JSON manifests of a LibriTTS corpus (call it through ``run_on_main``).

    Arguments
    ---------
    data_folder : the LibriTTS root, the folder that contains ``train-clean-100/``, ``dev-clean/``, ...
    save_json_train, save_json_valid, save_json_test : where to write the manifests.
    sample_rate : the rate the recipe works at, recorded with the options (the corpus is not resampled:
        the data pipeline resamples on load).
    split_ratio : train/valid/test proportions, used only with ``libritts_subsets``.
    libritts_subsets : pool these subsets and split them at random by ``split_ratio``, used when the three
        ``*_split`` arguments are not all given.
    train_split, valid_split, test_split : the subsets of each set (a name or a list), e.g.
        ``["train-clean-100"]``, ``["dev-clean"]``, ``["test-clean"]``.
    seed : seeds the validation-set draw and the ``libritts_subsets`` shuffle (a private ``random.Random``).
    model_name : ``"HiFi-GAN"`` (what the recipe passes), ``"Tacotron2"`` or ``None``: plain manifests.
        Other names (phonemes from a G2P model) raise ``ValueError``.
    skip_prep : do nothing.
    valid_size : the number of utterances drawn from the usable ``valid_split`` files (500 by default);
        all of them when fewer are available, or when ``None``/``0``.
    min_duration, max_duration : keep utterances with ``min_duration <= duration <= max_duration`` seconds.
    report_file : the JSON report (default: ``prepare_report.json`` beside the train manifest): per-set
        counts and every skipped file with its reason.

    Returns the report (a dict, ``PrepareReport.to_json()``), or ``None`` when ``skip_prep`` is set or the
    manifests were already prepared. Raises ``FileNotFoundError`` (``data_folder`` or a split folder is
    missing, or a split holds no ``.wav``), ``CorpusError`` (a set ends up with no usable utterance, see
    the report) or ``ValueError`` (unsupported ``model_name``, inconsistent arguments).
    """
    if skip_prep:
        return None
    if model_name not in SUPPORTED_MODEL_NAMES:
        raise ValueError(
            f"model_name={model_name!r} is not supported: this port writes plain manifests only "
            f"(no grapheme-to-phoneme labels); use one of {SUPPORTED_MODEL_NAMES}."
        )
    data_folder = _check_data_folder(data_folder)
    splits = {"train": _as_list(train_split), "valid": _as_list(valid_split), "test": _as_list(test_split)}
    manifest_args = {"train": save_json_train, "valid": save_json_valid, "test": save_json_test}
    stages, subsets = _sets(splits, libritts_subsets, split_ratio, manifest_args)
    manifests = manifest_paths(stages, save_json_train, save_json_valid, save_json_test)
    if max_duration is not None and max_duration < min_duration:
        raise ValueError(f"max_duration ({max_duration}) is smaller than min_duration ({min_duration})")
    values = {"sample_rate": sample_rate, "seed": seed, "valid_size": valid_size}
    values.update(min_duration=min_duration, max_duration=max_duration)
    options = _options(data_folder, manifests, splits, subsets, split_ratio, **values)
    plan = Plan("LibriTTS", data_folder, manifests, options, report_file)
    build = partial(
        _build, plan=plan, data_folder=data_folder, splits=splits, subsets=subsets, split_ratio=split_ratio,
        seed=seed, valid_size=valid_size, durations=(float(min_duration), max_duration),
    )  # fmt: skip
    report = run_preparation(plan, build)
    return None if report is None else report.to_json()


def download_splits(
    data_folder, *splits: Sequence[str] | str | None, base_url: str | None = None, checksums=None
) -> list[str]:
    """Fetch the LibriTTS subsets named in ``splits`` (each a name or a list) missing from ``data_folder``
    with :func:`~utils.corpus.download.download_libritts` (``base_url``/``checksums``: its defaults when
    ``None``).

    Returns the subsets downloaded (``[]`` when all were there).
    """
    subsets = list(dict.fromkeys(name for split in splits for name in _as_list(split)))
    if not subsets:
        return []
    return download_libritts(
        os.fspath(data_folder),
        subsets,
        base_url=base_url or DOWNLOAD_URL,
        checksums=dict(checksums) if checksums else LIBRITTS_SHA256,
    )
