"""The ``librilight`` corpus format: Libri-Light's long audiobook files cut into utterances along their
voice activity, by offset (no cut copy of the corpus is written).

    <data_folder>/<subset>/<speaker>/<book>/<name>.flac   (small, medium, large, duplicate)
    <data_folder>/<subset>/<speaker>/<book>/<name>.json   {"speaker": "960", "book_meta": {...}, "snr": 5.4,
                                                           "voice_activity": [[0.4, 12.32], ...]}

``voice_activity`` holds the onsets and offsets (seconds) of the file's voiced segments (Libri-Light's
data_preparation/README.md, "Format of Json files"). As Libri-Light's own ``cut_by_vad.py``, consecutive
segments are joined, the silences between them left out, into utterances of at most ``cut_seconds``
(default 60 s, its default); unlike it, a segment longer than that is split into equal parts, so that
every utterance is within the limit. An utterance is a manifest entry naming its file and the sample
ranges it is made of (``segments``, read by :func:`utils.corpus.audio.load_utterance`), its id
``<subset>__<speaker>__<book>__<name>_<piece:04d>``; its duration is the voiced time of its ranges. Shards
(:mod:`utils.corpus.shards`) hold the cut pieces.

``train_split`` names the subsets (e.g. ``[small]``); valid and test are drawn from their files by
``valid_proportion``/``test_proportion`` (whole speakers with ``speaker_disjoint``), whole files to each
set, then cut (valid capped at ``valid_size`` utterances). Files are validated as in every format (read to
the end); a file without a readable voice-activity JSON is skipped (``no_vad``), and so is an utterance
shorter than ``min_duration`` (``too_short``, e.g. the short rest at the end of a file).
"""

import itertools
import json
import logging
import os
from functools import partial

from utils.corpus.custom import FORMAT_VERSION, DrawOptions, build_with_pool, candidate
from utils.corpus.manifest import ManifestEntry
from utils.corpus.prepare import Plan, SetSource, manifest_paths, run_preparation
from utils.corpus.report import PrepareReport
from utils.corpus.splits import SPLITS, draw_valid
from utils.corpus.validate import find_audio

__all__ = ["DEFAULT_CUT_SECONDS", "cut_pieces", "prepare_librilight", "read_voice_activity"]

logger = logging.getLogger(__name__)

DEFAULT_CUT_SECONDS = 60.0
LAYOUT = (
    "With corpus_format librilight, data_folder holds Libri-Light's subsets (small/, medium/, large/, "
    "duplicate/: https://github.com/facebookresearch/libri-light), each "
    "<subset>/<speaker>/<book>/<name>.flac with <name>.json (its voice_activity) beside it; train_split "
    'names the subsets, e.g. --train_split "[small]". `python -m utils.sample_corpus DIR --layout '
    "librilight` writes a small one."
)

# A cut utterance: [start, stop) sample ranges of its file, joined in order
Piece = list[list[int]]


def read_voice_activity(json_path: str) -> tuple[list[tuple[float, float]] | None, str]:
    """The ``voice_activity`` segments (seconds) of a Libri-Light JSON, or ``(None, why)``."""
    try:
        with open(json_path, encoding="utf-8") as stream:
            segments = json.load(stream)["voice_activity"]
        return [(float(onset), float(offset)) for onset, offset in segments], ""
    except FileNotFoundError:
        return None, f"no {os.path.basename(json_path)} beside it"
    except (OSError, ValueError, KeyError, TypeError) as error:
        return None, f"{os.path.basename(json_path)} has no readable voice_activity ({error})"


def _spans(voice_activity: list[tuple[float, float]], frames: int, rate: int) -> list[tuple[int, int]]:
    """Voiced segments as sample ranges, sorted, clipped to the file and to each other (no overlap)."""
    spans, previous = [], 0
    for onset, offset in sorted(voice_activity):
        start = max(previous, min(frames, int(onset * rate)))
        stop = max(start, min(frames, int(offset * rate)))
        if stop > start:
            spans.append((start, stop))
            previous = stop
    return spans


def cut_pieces(
    voice_activity: list[tuple[float, float]], frames: int, rate: int, max_samples: int
) -> list[Piece]:
    """Cut a file of ``frames`` samples at ``rate`` along its voiced segments (seconds) into pieces of at
    most ``max_samples`` voiced samples: consecutive segments joined, a longer segment split into equal
    parts. The pieces hold every voiced sample once, in order."""
    parts = []
    for start, stop in _spans(voice_activity, frames, rate):
        count = -(-(stop - start) // max_samples)
        bounds = [start + (stop - start) * i // count for i in range(count + 1)]
        parts.extend(itertools.pairwise(bounds))
    pieces, current, length = [], [], 0
    for start, stop in parts:
        if current and length + stop - start > max_samples:
            pieces.append(current)
            current, length = [], 0
        current.append([start, stop])
        length += stop - start
    return [*pieces, current] if current else pieces


def _source(data_folder: str, subsets: list[str], draw: DrawOptions) -> SetSource:
    """Every audio file of ``subsets`` as a candidate (speaker: its folder under the subset)."""
    source = SetSource(subsets)
    for subset in subsets:
        folder = os.path.join(data_folder, subset)
        if not os.path.isdir(folder):
            present = sorted(entry.name for entry in os.scandir(data_folder) if entry.is_dir())
            raise FileNotFoundError(
                f"Libri-Light subset folder not found: {folder} (folders in {data_folder}: "
                f"{', '.join(present[:20]) or 'none'}).\n{LAYOUT}"
            )
        paths = find_audio(folder)
        if not paths:
            raise FileNotFoundError(f"No audio file under {folder}.\n{LAYOUT}")
        for path in paths:
            relative = os.path.relpath(path, data_folder).replace(os.sep, "/")
            speaker = relative.split("/")[1] if relative.count("/") >= 3 else None
            source.candidates.append(candidate(path, relative, None, draw, speaker=speaker or ""))
    return source


def _cut(stage: str, files: list[ManifestEntry], max_seconds: float, draw: DrawOptions, report) -> list:
    """The utterances of a set's files (see the module docstring); valid capped at ``valid_size``."""
    pieces = []
    for entry in files:
        voice_activity, why = read_voice_activity(os.path.splitext(entry.wav)[0] + ".json")
        if voice_activity is None:
            report.skip(stage, entry.wav, "no_vad", why)
            continue
        frames = round(entry.duration * entry.sample_rate)
        max_samples = max(1, int(max_seconds * entry.sample_rate))
        for index, piece in enumerate(cut_pieces(voice_activity, frames, entry.sample_rate, max_samples)):
            duration = sum(stop - start for start, stop in piece) / entry.sample_rate
            uttid = f"{entry.uttid}_{index:04d}"
            if duration < draw.min_duration:
                detail = f"{uttid}: {duration:.3f} s < {draw.min_duration:g} s"
                report.skip(stage, entry.wav, "too_short", detail, duration)
                continue
            fields = (entry.sample_rate, entry.channels, entry.spk_id, "", piece)
            pieces.append(ManifestEntry(uttid, entry.wav, duration, *fields))
    if stage == "valid":
        pieces = draw_valid(pieces, draw.valid_size, draw.seed)[0]
    return pieces


def prepare_librilight(
    data_folder,
    save_json_train,
    save_json_valid,
    save_json_test,
    subsets=("small",),
    cut_seconds: float = DEFAULT_CUT_SECONDS,
    skip_prep: bool = False,
    report_file=None,
    **options,
) -> PrepareReport | None:
    """Write the train/valid/test manifests of Libri-Light ``subsets`` (see the module docstring).

    ``options``: the fields of :class:`utils.corpus.custom.DrawOptions` (``speaker_pattern`` unused: the
    speaker is the folder). Returns the report, or ``None`` when skipped or already prepared with the same
    options. Raises ``FileNotFoundError`` (layout), ``ValueError`` (options) or ``CorpusError``.
    """
    if skip_prep:
        return None
    if not cut_seconds or cut_seconds <= 0:
        raise ValueError(f"cut_seconds must be a positive number of seconds, got {cut_seconds!r}")
    draw = DrawOptions(**options)
    draw.check(speakers_listed=True)
    if data_folder is None or not os.path.isdir(os.fspath(data_folder)):
        raise FileNotFoundError(f"data_folder not found (or not a folder): {data_folder}.\n{LAYOUT}")
    data_folder = os.path.abspath(os.fspath(data_folder))
    subsets = [subsets] if isinstance(subsets, str) else list(subsets)
    manifests = manifest_paths(SPLITS, save_json_train, save_json_valid, save_json_test)
    plan_options = {
        "format_version": FORMAT_VERSION,
        "corpus_format": "librilight",
        "data_folder": data_folder,
        "manifests": manifests,
        "subsets": subsets,
        "cut_seconds": float(cut_seconds),
        **draw.to_options(),
    }
    plan = Plan("Libri-Light", data_folder, manifests, plan_options, report_file)

    def build(report: PrepareReport) -> dict[str, dict]:
        expand = partial(_cut, max_seconds=float(cut_seconds), draw=draw, report=report)
        return build_with_pool(plan, report, {}, _source(data_folder, subsets, draw), draw, expand)

    return run_preparation(plan, build)
