"""LibriTTS data preparation: scan the corpus, validate every file and write the JSON manifests.

The LibriTTS layer of the shared preparation in ``utils/corpus/`` (validation, report, splits, manifests and
idempotence are there, and serve the other corpus formats too). ``prepare_libritts`` keeps the signature of
SpeechBrain's ``recipes/LibriTTS/libritts_prepare.py`` and writes the same manifests
(``{uttid: {"wav": ..., "duration": ..., ...}}``). The differences (docs/deviations.md #1-5): the corpus
is only ever **read** (audio keeps its rate and channels on disk, each entry records them, and the data
pipeline resamples and downmixes on load); every file is validated (opened and read to the end) and each
skipped one is listed with its reason in ``prepare_report.json``; a missing ``data_folder`` or split folder
raises ``FileNotFoundError`` naming the path and the expected layout; a missing ``.normalized.txt`` gives
``label: ""`` and a warning; the validation set is drawn (``valid_size`` utterances, seeded) from the
*usable* files of a sorted list, all of them when fewer; the preparation is idempotent (the options that
shape the output are stored in ``prepare_options.json``; any change redoes it) and atomic (manifests
first, the options file last, so an interrupted run is redone); ``model_name`` is accepted for
compatibility (no grapheme-to-phoneme model is used).

Manifest entry (one per utterance, keyed by the utterance id; see ``utils/corpus/manifest.py``)::

    {"uttid": "84_121123_000007_000001", "wav": "/abs/path/84_121123_000007_000001.wav",
     "duration": 5.87, "sample_rate": 24000, "channels": 1, "spk_id": "84", "label": "normalized text",
     "segment": true}

The utterance id is the file name without ``.wav``, the speaker its first ``_``-separated field, the label
the ``.normalized.txt`` beside it (braces removed). String values have ``{``/``}`` doubled for SpeechBrain.

Report (``prepare_report.json``; every key in ``utils/corpus/report.py``)::

    {"data_folder": ..., "options": {...},
     "sets": {"train": {"subsets": [...], "found", "usable", "kept", "skipped_unreadable", "too_short",
                        "too_long", "duplicate", "missing_text", "skip_reasons": {reason: count},
                        "hours", "manifest"}, "valid": {... "not_drawn"}, "test": {...}},
     "skipped": [{"stage", "wav", "reason", "detail"}, ...],
     "warnings": [{"stage", "wav", "reason": "missing_text", "detail"}, ...]}

Skip reasons (``utils/corpus/validate.py``): ``empty_file``, ``not_audio``, ``unreadable``, ``truncated``,
``no_frames``, ``non_finite``, ``bad_name``, all counted in ``skipped_unreadable``; then ``too_short``,
``too_long`` and ``duplicate`` (same utterance id twice in one set).

Expected layout (LibriTTS, https://www.openslr.org/60)::

    <data_folder>/<split>/<speaker>/<chapter>/<speaker>_<chapter>_<utt>_<seg>.wav
    <data_folder>/<split>/<speaker>/<chapter>/<speaker>_<chapter>_<utt>_<seg>.normalized.txt

with ``<split>`` one of ``train-clean-100``, ``train-clean-360``, ``train-other-500``, ``dev-clean``,
``test-clean``, ... Run ``python libritts_prepare.py DATA_FOLDER OUT_DIR [--download]`` to prepare from the
shell (``--download`` first fetches the missing subsets, see ``utils/corpus/download.py``).
"""

import logging
import os

from utils.corpus.libritts import (
    LIBRITTS_URL,
    MIN_ENCODABLE_SECONDS,
    CorpusError,
    download_splits,
    find_wavs,
    prepare_libritts,
    validate_wav,
)

__all__ = [
    "LIBRITTS_URL",
    "MIN_ENCODABLE_SECONDS",
    "CorpusError",
    "download_splits",
    "find_wavs",
    "prepare_libritts",
    "validate_wav",
]


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Write LibriTTS train/valid/test manifests (read-only).")
    parser.add_argument("data_folder", help="the LibriTTS root (contains train-clean-100/, dev-clean/, ...)")
    parser.add_argument("out_dir", help="where to write train.json, valid.json, test.json")
    parser.add_argument("--train_split", nargs="+", default=["train-clean-100"])
    parser.add_argument("--valid_split", nargs="+", default=["dev-clean"])
    parser.add_argument("--test_split", nargs="+", default=["test-clean"])
    parser.add_argument("--valid_size", type=int, default=500)
    parser.add_argument("--min_duration", type=float, default=1.0)
    parser.add_argument("--max_duration", type=float, default=None)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--download", action="store_true", help="first fetch the missing subsets (OpenSLR)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if args.download:
        download_splits(args.data_folder, args.train_split, args.valid_split, args.test_split)
    prepare_libritts(
        args.data_folder,
        os.path.join(args.out_dir, "train.json"),
        os.path.join(args.out_dir, "valid.json"),
        os.path.join(args.out_dir, "test.json"),
        train_split=args.train_split,
        valid_split=args.valid_split,
        test_split=args.test_split,
        seed=args.seed,
        valid_size=args.valid_size,
        min_duration=args.min_duration,
        max_duration=args.max_duration,
    )
