"""Per-utterance scores on disk (utils/evaluation/scores.py): scores.csv reads back exactly (undefined
values and dWER weights included), VERSA's JSON-lines layout (one object per utterance, its names where
the definition is its own) and Codec-SUPERB's result file."""

import json
import math

import pytest

from utils.evaluation import ModelScores, read_scores, write_format, write_scores
from utils.metrics import UtteranceScore

ROWS = [
    ModelScores("reference", scores=[UtteranceScore("a", "UTMOS", 4.1), UtteranceScore("b", "UTMOS", 3.9)]),
    ModelScores(
        "ours",
        scores=[
            UtteranceScore("a", "PESQ-WB", 2.5),
            UtteranceScore("b", "PESQ-WB", float("nan")),
            UtteranceScore("a", "F0-RMSE", 31.5),
            UtteranceScore("a", "MelDist", 1.25),
            UtteranceScore("b", "MelDist", 0.75),
            UtteranceScore("a", "dWER", 12.5, 8.0),
        ],
    ),
]


def test_scores_csv_reads_back_exactly(tmp_path):
    path = write_scores(ROWS, tmp_path)
    assert path.read_text().splitlines()[:2] == ["id,model,metric,value,weight", "a,reference,UTMOS,4.1,1.0"]
    back = read_scores(path)
    assert list(back) == ["reference", "ours"] and back["reference"] == ROWS[0].scores
    ours = back["ours"]
    assert math.isnan(ours[1].value) and ours[:1] + ours[2:] == ROWS[1].scores[:1] + ROWS[1].scores[2:]
    assert ours[-1].weight == 8.0


def test_versa_layout_one_json_object_per_utterance(tmp_path):
    paths = write_format("versa", ROWS, tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in paths] == [
        "versa/reference.jsonl",
        "versa/ours.jsonl",
    ]
    records = [json.loads(line) for line in paths[1].read_text().splitlines()]
    assert records == [
        {"key": "a", "pesq": 2.5, "f0_rmse_cents": 31.5, "meldist": 1.25, "dwer": 12.5},
        {"key": "b", "pesq": None, "meldist": 0.75},  # undefined: null, as VERSA writes it
    ]
    assert json.loads(paths[0].read_text().splitlines()[0]) == {"key": "a", "utmos": 4.1}


def test_codec_superb_result_file(tmp_path):
    (path,) = write_format("codec-superb", ROWS, tmp_path)
    results = json.loads(path.read_text())
    assert results == {"ours": {"overall": {"mel": 1.0, "pesq": 2.5}}}  # means of the defined values
    with pytest.raises(ValueError, match="unknown score format 'superb'; known: versa, codec-superb"):
        write_format("superb", ROWS, tmp_path)
