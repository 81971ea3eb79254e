"""dWER and dCER (utils/metrics/dwer.py): the edit-count math, corpus-level rates, Whisper's English
normaliser from a local tokenizer, and a tiny local Whisper folder with length masking."""

import math

import pytest
import torch
from helpers.metric_signals import pad_batch, tone

from utils.metrics import DWER
from utils.metrics.dwer import error_counts

pytest_plugins = ("helpers.metric_models",)


def test_error_counts_on_known_pairs():
    words = error_counts(["the", "cat", "sat", "on", "a", "mat"], ["the", "cat", "sat", "on", "the", "mat"])
    assert (words.substitutions, words.deletions, words.insertions, words.reference_length) == (1, 0, 0, 6)
    words = error_counts(["a", "x", "c", "d"], ["a", "b", "c"])
    assert (words.substitutions, words.deletions, words.insertions, words.reference_length) == (1, 0, 1, 3)
    words = error_counts(["a"], ["a", "b", "c"])
    assert (words.deletions, words.edits, words.rate()) == (2, 2, pytest.approx(200 / 3))
    chars = error_counts(["abd", "c"], ["ab", "c"], chars=True)  # "abd c" vs "ab c": the space counts
    assert (chars.insertions, chars.edits, chars.reference_length) == (1, 1, 4)


def test_dwer_is_corpus_level_and_handles_empty_transcripts():
    metric = DWER()
    metric.add_normalized(["u1", "u2"], ["a b c d", "y"], ["a b c d", "x"])
    assert metric.summarize() == {"dWER": pytest.approx(20.0), "dCER": pytest.approx(100 * 1 / 8)}  # not 50%
    # Empty transcripts have zero words (the original counted "" as one word).
    metric.add_normalized(["u3", "u4"], ["", "p q"], ["", ""])
    assert metric.words.reference_length == 5 and metric.words.insertions == 2 and metric.num_scored == 4
    assert metric.summarize("dWER") == pytest.approx(100 * 3 / 5)
    metric.clear()
    assert metric.num_scored == 0
    metric.add_normalized(["e"], [""], [""])
    assert metric.summarize() == {"dWER": 0.0, "dCER": 0.0}
    metric.clear()
    metric.add_normalized(["e"], ["hallucination"], [""])
    assert metric.summarize("dWER") == math.inf


def test_whisper_english_normaliser_from_local_tokenizer(whisper_dir):
    metric = DWER(source=str(whisper_dir))
    metric.add_transcripts(["u"], ["Mr. Smith's colour, 2 dollars!"], ["mister smith's color two dollars"])
    assert metric.utterances[0]["hyp"] == metric.utterances[0]["ref"] == "mister smith is color $2"
    assert metric.summarize() == {"dWER": 0.0, "dCER": 0.0}


def test_dwer_local_whisper_folder_and_length_masking(whisper_dir, tmp_path):
    items = [tone(1.0, 220), tone(0.5, 330, seed=1)]
    padded, lens = pad_batch(items)
    metric = DWER(source=str(whisper_dir))
    processor, model = metric.load()
    assert type(model).__name__ == "WhisperForConditionalGeneration" and processor.tokenizer is not None
    seen = []
    generate = model.generate
    model.generate = lambda features, **kwargs: seen.append(features.clone()) or generate(features, **kwargs)
    metric.append(["a", "b"], padded, padded, lens)
    metric.append(["a"], items[0][None], items[0][None])
    metric.append(["b"], items[1][None], items[1][None])
    torch.testing.assert_close(seen[0][[0, 1]], torch.cat([seen[1][:1], seen[2][:1]]))  # no padding seen
    assert seen[0].shape == (4, 80, 3000)  # hyp and ref transcribed in one batch, 30 s windows
    assert [u["hyp"] for u in metric.utterances[:2]] == [u["hyp"] for u in metric.utterances[2:]]
    assert metric.summarize() == {"dWER": 0.0, "dCER": 0.0}  # hyp == ref: same greedy transcripts
    assert metric.num_scored == 4
    metric.write_stats(tmp_path / "dwer.txt")
    text = (tmp_path / "dwer.txt").read_text()
    assert text.startswith("dWER 0.00%") and "audio beyond 30 s is not transcribed" in text
    assert text.count("\n  hyp: ") == 4


def test_per_utterance_rates_weigh_to_the_corpus_rate():
    metric = DWER()
    metric.add_normalized(["u1", "u2", "u3"], ["a b c d", "y", "p"], ["a b c d", "x", ""])
    rows = {(row.id, row.metric): row for row in metric.utterance_scores()}
    assert (rows["u2", "dWER"].value, rows["u2", "dWER"].weight) == (100.0, 1.0)
    assert math.isnan(rows["u3", "dWER"].value) and rows["u3", "dWER"].weight == 0.0  # empty reference
    defined = [row for row in rows.values() if row.metric == "dCER" and row.weight > 0]
    weighted = sum(row.value * row.weight for row in defined) / sum(row.weight for row in defined)
    assert weighted == pytest.approx(100 * 1 / 8)  # the corpus dCER of u1 and u2
    assert metric.lower_better("dWER") and metric.lower_better("dCER")


def test_a_language_written_without_spaces_is_scored_by_characters(whisper_dir, tmp_path):
    metric = DWER(source=str(whisper_dir), language="zh")
    assert metric.character_level and not DWER(language="fr").character_level
    metric.add_transcripts(["u"], ["今天天气很好。"], ["今天 天气 很 好!"])  # punctuation and spaces go
    metric.add_transcripts(["v"], ["我们去公园"], ["我们去公园吧"])
    assert metric.summarize() == {"dCER": pytest.approx(100 * 1 / 12)}  # one deletion in 6 + 6 characters
    assert [row.metric for row in metric.utterance_scores()] == ["dCER", "dCER"]
    metric.write_stats(tmp_path / "dcer.txt")
    text = (tmp_path / "dcer.txt").read_text()
    assert text.startswith("dCER 8.33%") and "forced 'zh' transcription" in text and "dWER" not in text
    english = DWER(language="en", character_level=True)
    english.add_normalized(["w"], ["ab c"], ["abc"])
    assert english.summarize() == {"dCER": 0.0}  # whitespace does not count at character level
    seen = {}
    _, model = metric.load()
    model.generate = lambda features, **kwargs: seen.update(kwargs) or torch.zeros(1, 1, dtype=torch.long)
    metric.transcribe([tone(0.5, 220)])
    assert seen["language"] == "zh" and seen["task"] == "transcribe"
