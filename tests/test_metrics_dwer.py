"""dWER and dCER (utils/metrics/dwer.py): the edit-count math, corpus-level rates, Whisper's English
normaliser from a local tokenizer, and a tiny local Whisper folder with length masking."""

import math

import pytest
import torch
from metric_signals import pad_batch, tone

from utils.metrics import DWER, QualityMetrics
from utils.metrics.dwer import error_counts

pytest_plugins = ("metric_models",)


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


def test_another_language_is_transcribed_in_it_and_normalised_without_english_rules():
    """``whisper_language`` (YAML, ``evaluate_codec.py --whisper_language``): Whisper transcribes in that
    language, and the transcripts are normalised by Whisper's language-agnostic normaliser."""
    assert QualityMetrics(metrics=["dwer"], whisper_language="zh").metrics["dwer"].language == "zh"
    metric = DWER(language="zh", model=object(), processor=object())  # ready: nothing is loaded
    metric.add_transcripts(["utt"], ["你好，世界！"], ["你好 世界"])
    assert metric.summarize() == {"dWER": 0.0, "dCER": 0.0}
    metric.add_transcripts(["utt2"], ["你好"], ["你们好"])
    assert metric.summarize()["dCER"] > 0
