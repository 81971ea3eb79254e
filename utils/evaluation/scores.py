"""Per-utterance scores on disk: ``scores.csv`` (one line per model, utterance and figure) and the
layouts other toolkits read (``--format``).

``scores.csv`` columns: ``id, model, metric, value, weight`` (``value`` empty when undefined; ``weight``:
what the utterance counts for in the corpus figure, 1 except for dWER/dCER, see
:class:`~utils.metrics.UtteranceScore`).

* ``versa``: VERSA's per-utterance result layout (``versa/bin/scorer.py --output_file``, read by its
  ``aggregate_results.py`` and ``scripts/show_result.py``): JSON lines, one object per utterance,
  ``{"key": <id>, "<metric>": value, ...}``, in ``versa/<model>.jsonl``. Figures whose definition is
  VERSA's carry VERSA's names (:data:`VERSA_NAMES`); the others a lower-case name of their own, never one
  of VERSA's for another definition (:data:`OWN_NAMES`); an undefined value is ``null``.
* ``codec-superb``: the result file of Codec-SUPERB's ``benchmarking.py`` (what its leaderboard takes),
  ``{"<model>": {"overall": {"mel": ..., "stft": ..., "pesq": ..., "stoi": ..., "f0corr": ...}}}``, the
  means over utterances of the figures it defines (:data:`CODEC_SUPERB_NAMES`), in
  ``codec_superb.json``. It has no per-utterance layout.
"""

import csv
import json
import math
import os
import re
from pathlib import Path

from utils.evaluation.bootstrap import by_figure
from utils.evaluation.scoring import ModelScores
from utils.metrics import UtteranceScore
from utils.metrics.common import mean_or_nan

__all__ = [
    "CODEC_SUPERB_NAMES",
    "FORMATS",
    "OWN_NAMES",
    "VERSA_NAMES",
    "read_scores",
    "write_codec_superb",
    "write_format",
    "write_scores",
    "write_versa",
]

COLUMNS = ("id", "model", "metric", "value", "weight")
# our label -> VERSA's key, where VERSA computes the same thing (same package or model, same settings)
VERSA_NAMES = {
    "PESQ-WB": "pesq",  # VERSA: pesq package, wide band at 16 kHz
    "STOI": "stoi",
    "eSTOI": "estoi",
    "UTMOS": "utmos",  # VERSA: SpeechMOS utmos22_strong
    "PLCMOS": "plcmos",  # VERSA: speechmos PLCMOS v2
    "DNSMOS-OVRL": "dns_overall",  # VERSA: speechmos DNSMOS P.835
}
# our figures whose plain names would be VERSA's for another definition (its f0_rmse is in Hz after DTW,
# its f0_corr correlates Hz after DTW)
OWN_NAMES = {"F0-RMSE": "f0_rmse_cents", "F0-Corr": "f0_log_corr"}
# our label -> Codec-SUPERB's key (SoundCodec/metrics.py get_metrics)
CODEC_SUPERB_NAMES = {
    "MelDist": "mel",
    "STFTDist": "stft",
    "PESQ-WB": "pesq",
    "STOI": "stoi",
    "F0-Corr": "f0corr",
}


def write_scores(rows: list[ModelScores], folder: str | os.PathLike) -> Path:
    """``scores.csv`` in ``folder`` (module docstring)."""
    path = Path(folder) / "scores.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(COLUMNS)
        for row in rows:
            for score in row.scores:
                value = "" if math.isnan(score.value) else repr(score.value)
                writer.writerow([score.id, row.name, score.metric, value, repr(score.weight)])
    return path


def read_scores(path: str | os.PathLike) -> dict[str, list[UtteranceScore]]:
    """``{model: [UtteranceScore, ...]}`` from a ``scores.csv``."""
    scores: dict[str, list[UtteranceScore]] = {}
    with open(path, newline="", encoding="utf-8") as stream:
        for line in csv.DictReader(stream):
            value = float(line["value"]) if line["value"] else float("nan")
            score = UtteranceScore(line["id"], line["metric"], value, float(line["weight"]))
            scores.setdefault(line["model"], []).append(score)
    return scores


def _slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")


def write_versa(rows: list[ModelScores], folder: str | os.PathLike) -> list[Path]:
    """``versa/<model>.jsonl`` in ``folder``, one per row (module docstring)."""
    paths = []
    for row in rows:
        records: dict[str, dict] = {}
        for score in row.scores:
            name = VERSA_NAMES.get(score.metric) or OWN_NAMES.get(score.metric) or _slug(score.metric)
            value = None if math.isnan(score.value) else score.value
            records.setdefault(score.id, {"key": score.id})[name] = value
        path = Path(folder) / "versa" / f"{row.name}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(record) + "\n" for record in records.values()), encoding="utf-8")
        paths.append(path)
    return paths


def write_codec_superb(rows: list[ModelScores], folder: str | os.PathLike) -> list[Path]:
    """``codec_superb.json`` in ``folder`` (module docstring); rows with none of its figures are left out."""
    results = {}
    for row in rows:
        figures = by_figure(row.scores)
        overall = {
            name: mean_or_nan(score.value for score in figures[label])
            for label, name in CODEC_SUPERB_NAMES.items()
            if label in figures
        }
        if overall:
            results[row.name] = {
                "overall": {name: None if math.isnan(v) else v for name, v in overall.items()}
            }
    path = Path(folder) / "codec_superb.json"
    path.write_text(json.dumps(results, indent=4) + "\n", encoding="utf-8")
    return [path]


FORMATS = {"versa": write_versa, "codec-superb": write_codec_superb}


def write_format(name: str, rows: list[ModelScores], folder: str | os.PathLike) -> list[Path]:
    """Write the scores in the layout ``name`` (one of :data:`FORMATS`)."""
    if name not in FORMATS:
        raise ValueError(f"unknown score format {name!r}; known: {', '.join(FORMATS)}")
    return FORMATS[name](rows, folder)
