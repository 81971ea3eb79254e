"""Scoring codecs and writing what the scores say: one row of figures per model (:mod:`.scoring`), the
table with bootstrap confidence intervals (:mod:`.table`, :mod:`.bootstrap`), per-utterance scores and the
layouts of other toolkits (:mod:`.scores`), paired comparisons (:mod:`.compare`) and the listening report
(:mod:`.report`, :mod:`.spectrogram`), all written by :func:`write_outputs` (:mod:`.outputs`).

This package builds on ``focalcodec`` and :mod:`utils.metrics` only.
"""

from utils.evaluation.bootstrap import Difference, Interval, interval, intervals, paired_difference
from utils.evaluation.compare import Comparison, compare, compare_all, write_comparisons
from utils.evaluation.outputs import EvaluationFiles, listening_audios, write_outputs
from utils.evaluation.report import write_report
from utils.evaluation.scores import FORMATS, read_scores, write_format, write_scores
from utils.evaluation.scoring import (
    QUALITY_ONLY,
    ModelScores,
    Utterance,
    evaluate_codec,
    list_utterances,
    load_written,
    resynthesize,
    save_references,
    score_reference,
)
from utils.evaluation.table import write_table

__all__ = [
    "FORMATS",
    "QUALITY_ONLY",
    "Comparison",
    "Difference",
    "EvaluationFiles",
    "Interval",
    "ModelScores",
    "Utterance",
    "compare",
    "compare_all",
    "evaluate_codec",
    "interval",
    "intervals",
    "list_utterances",
    "listening_audios",
    "load_written",
    "paired_difference",
    "read_scores",
    "resynthesize",
    "save_references",
    "score_reference",
    "write_comparisons",
    "write_format",
    "write_outputs",
    "write_report",
    "write_scores",
    "write_table",
]
