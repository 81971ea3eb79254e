"""utils/corpus/custom.py: the options and candidates that the folder and list formats share."""

import os

import pytest

from utils.corpus.custom import DrawOptions, candidate
from utils.corpus.splits import compile_speaker_pattern


def test_options():
    draw = DrawOptions(valid_proportion=0.2, test_proportion=0.05, min_duration=1, max_duration=20)
    assert draw.shares(set()) == {"valid": 0.2, "test": 0.05}
    assert draw.shares({"valid"}) == {"test": 0.05}
    assert draw.shares({"valid", "test"}) == {}
    options = draw.to_options()
    assert options["min_duration"] == 1.0 and isinstance(options["min_duration"], float)
    assert list(options) == [
        "valid_proportion", "test_proportion", "seed", "speaker_pattern", "speaker_disjoint", "valid_size",
        "min_duration", "max_duration", "sample_rate",
    ]  # fmt: skip
    with pytest.raises(TypeError):
        DrawOptions(train_proportion=0.5)  # an unknown option is an error, not ignored
    with pytest.raises(ValueError, match="max_duration"):
        DrawOptions(min_duration=2, max_duration=1).check()
    with pytest.raises(ValueError, match="speaker_disjoint needs speakers"):
        DrawOptions(speaker_disjoint=True).check()
    assert DrawOptions(speaker_disjoint=True).check(speakers_listed=True) is None
    with pytest.raises(ValueError, match="test_proportion must be a number"):
        DrawOptions(test_proportion=1.5).shares({"valid"})


def test_candidates():
    pattern = compile_speaker_pattern("^([^/]+)/")
    plain, disjoint = DrawOptions(), DrawOptions(speaker_disjoint=True, speaker_pattern="^([^/]+)/")
    one = candidate("c/s1/a.flac", "s1/a.flac", pattern, plain)
    assert (one.path, one.uttid, one.spk_id) == (os.path.abspath("c/s1/a.flac"), "s1__a", "s1")
    assert candidate("c/a.wav", "a.wav", pattern, plain).spk_id is None  # the pattern does not match
    assert candidate("c/a.wav", "a.wav", pattern, plain, speaker="col").spk_id == "col"  # a list's column
    assert candidate("c/a.wav", "a.wav", None, plain).spk_id == ""  # no speaker wanted
    assert candidate("c/a.wav", "a.wav", None, disjoint).spk_id is None  # needed, unknown
    listed = candidate("a.wav", "a.wav", None, plain, label="hi", listed_duration=2.0)
    assert (listed.label, listed.listed_duration) == ("hi", 2.0)
