"""Everything an evaluation writes into its folder, in one call: the table (``results.md``/``.csv``), the
per-utterance scores (``scores.csv``, and the ``--format`` layouts), the paired comparisons
(``comparison.md``) and the listening report (``report.html``). ``evaluate_codec.py`` and the training
stages' test stage both write through here."""

import os
from pathlib import Path
from typing import NamedTuple

from utils.evaluation.compare import compare_all, write_comparisons
from utils.evaluation.report import write_report
from utils.evaluation.scores import write_format, write_scores
from utils.evaluation.scoring import ModelScores
from utils.evaluation.table import write_table

__all__ = ["EvaluationFiles", "listening_audios", "write_outputs"]


class EvaluationFiles(NamedTuple):
    """The files :func:`write_outputs` wrote."""

    table: Path  # results.md
    table_csv: Path  # results.csv
    scores: Path  # scores.csv
    comparison: Path  # comparison.md
    report: Path  # report.html
    formats: list[Path]  # the --format files


def listening_audios(rows: list[ModelScores], references: dict[str, Path]) -> dict[str, dict[str, Path]]:
    """``{id: {"reference": wav, <row>: wav, ...}}`` for the utterances with saved audio."""
    audios: dict[str, dict[str, Path]] = {}
    for utt_id, path in references.items():
        audios.setdefault(utt_id, {})["reference"] = path
    for row in rows:
        for utt_id, path in row.audios.items():
            audios.setdefault(utt_id, {})[row.name] = path
    return audios


def write_outputs(
    rows: list[ModelScores],
    folder: str | os.PathLike,
    audios: dict[str, dict[str, Path]],
    title: str,
    formats: list[str] = (),
    images: dict[str, Path | None] | None = None,
) -> EvaluationFiles:
    """Write the table, the scores (and each of ``formats``), the comparisons and the report of ``rows``
    into ``folder``; ``audios`` and ``images`` as :func:`~utils.evaluation.report.write_report` takes them."""
    folder = Path(folder)
    table, table_csv = write_table(rows, folder)
    scores = write_scores(rows, folder)
    extra = [path for name in formats for path in write_format(name, rows, folder)]
    comparisons = compare_all(rows)
    comparison = write_comparisons(comparisons, folder)
    report = write_report(folder / "report.html", title, rows, audios, comparisons, images)
    return EvaluationFiles(table, table_csv, scores, comparison, report, extra)
