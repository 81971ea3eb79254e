"""utils/corpus/splits.py: the seeded validation draw, proportional and speaker-disjoint splits, speakers
read from paths."""

import random

import pytest

from utils.corpus.manifest import ManifestEntry
from utils.corpus.splits import (
    check_proportions,
    compile_speaker_pattern,
    cut,
    draw_sets,
    draw_valid,
    proportion_counts,
    ratio_counts,
    read_speaker,
    require_speaker_matches,
    speaker_cut,
)


def _entries(sizes: dict[str, int]) -> list[ManifestEntry]:
    """``sizes[speaker]`` utterances per speaker, sorted by id."""
    return sorted(
        (
            ManifestEntry(f"{spk}__{n:03d}", f"/c/{spk}/{n}.wav", 1.0, 16000, 1, spk)
            for spk, k in sizes.items()
            for n in range(k)
        ),
        key=lambda entry: entry.uttid,
    )


def _ids(entries) -> list[str]:
    return [entry.uttid for entry in entries]


def test_draw_valid():
    entries = _entries({"a": 10})
    state = random.getstate()
    drawn, not_drawn, note = draw_valid(entries, 4, seed=3)
    assert random.getstate() == state  # the global random state is left alone
    assert len(drawn) == 4 and not_drawn == 6 and "4 drawn at random (seed 3) from 10 usable" in note
    assert _ids(drawn) == sorted(_ids(drawn)) and set(_ids(drawn)) <= set(_ids(entries))  # original order
    assert draw_valid(entries, 4, seed=3)[0] == drawn
    assert len({tuple(_ids(draw_valid(entries, 4, seed)[0])) for seed in range(8)}) > 1
    assert draw_valid(entries, 20, 3) == (
        entries,
        None,
        "all 10 usable utterances used (fewer than valid_size=20)",
    )
    assert draw_valid(entries, None, 3) == (entries, None, "")
    assert draw_valid(entries, 0, 3) == (entries, None, "")
    assert draw_valid([], 4, 3) == ([], None, "")


def test_ratio_counts_as_the_original():
    assert ratio_counts(18, [60, 20, 20]) == {"train": 10, "valid": 3, "test": 5}  # int(N r / sum)
    assert ratio_counts(5, (80, 10, 10)) == {"train": 4, "valid": 0, "test": 1}


def test_proportion_counts():
    assert proportion_counts(100, {"valid": 0.1, "test": 0.05}) == {"train": 85, "valid": 10, "test": 5}
    assert proportion_counts(5, {"valid": 0.1, "test": 0.1}) == {"train": 3, "valid": 1, "test": 1}  # >= 1
    assert proportion_counts(100, {"valid": 0.2}, valid_size=7) == {"train": 93, "valid": 7}  # capped
    assert proportion_counts(100, {"test": 0.25}, valid_size=7) == {"train": 75, "test": 25}


def test_check_proportions():
    check_proportions({"valid": 0.1, "test": 0.2})
    check_proportions({})
    for bad in (0, 1, -0.1, 1.5, "0.1", None):
        with pytest.raises(ValueError, match="valid_proportion must be a number between 0 and 1"):
            check_proportions({"valid": bad})
    with pytest.raises(ValueError, match="leave nothing for train"):
        check_proportions({"valid": 0.5, "test": 0.5})


def test_cut_is_a_seeded_partition():
    entries = _entries({"a": 7, "b": 6, "c": 7})
    counts = {"train": 14, "valid": 3, "test": 3}
    parts = cut(entries, counts, seed=1)
    assert {stage: len(part) for stage, part in parts.items()} == counts
    assert sorted(_ids(e for part in parts.values() for e in part)) == _ids(entries)
    assert cut(entries, counts, seed=1) == parts
    assert cut(entries, counts, seed=2) != parts
    # The original's libritts_subsets shuffle: random.Random(seed).shuffle of the sorted usable list
    shuffled = list(entries)
    random.Random(1).shuffle(shuffled)
    assert parts["train"] == shuffled[:14] and parts["test"] == shuffled[17:]


@pytest.mark.parametrize("seed", range(5))
def test_speaker_cut_keeps_speakers_together(seed):
    sizes = {f"s{k:02d}": 3 + (k * 7) % 5 for k in range(12)}
    entries = _entries(sizes)
    counts = proportion_counts(len(entries), {"valid": 0.15, "test": 0.15})
    parts = speaker_cut(entries, counts, seed)
    speakers = {stage: {entry.spk_id for entry in part} for stage, part in parts.items()}
    assert not speakers["train"] & speakers["valid"]
    assert not speakers["train"] & speakers["test"]
    assert not speakers["valid"] & speakers["test"]
    assert sorted(_ids(e for part in parts.values() for e in part)) == _ids(entries)
    largest = max(sizes.values())
    for stage in ("valid", "test"):  # within one speaker of the target
        assert abs(len(parts[stage]) - counts[stage]) <= largest, (stage, len(parts[stage]), counts[stage])
    assert speaker_cut(entries, counts, seed) == parts


def test_speaker_cut_gives_every_set_a_speaker():
    entries = _entries(
        {"big": 30, "mid": 10, "small": 2}
    )  # the targets (4, 4) are smaller than most speakers
    parts = speaker_cut(entries, {"train": 34, "valid": 4, "test": 4}, seed=0)
    assert all(parts[stage] for stage in ("train", "valid", "test"))
    assert len({entry.spk_id for entry in parts["train"]}) == 1
    # A drawn set left empty takes a speaker from a drawn set that has two
    parts = speaker_cut(_entries({"a": 9, "b": 2, "c": 2}), {"train": 1, "valid": 4, "test": 1}, seed=0)
    assert all(parts.values()), {stage: len(part) for stage, part in parts.items()}
    # Two speakers for three sets: one set stays empty (the caller reports it)
    parts = speaker_cut(_entries({"a": 3, "b": 3}), {"train": 4, "valid": 1, "test": 1}, seed=0)
    assert sum(1 for part in parts.values() if not part) == 1 and parts["train"]


def test_draw_sets_notes():
    entries = _entries({"a": 5, "b": 5, "c": 5, "d": 5})
    parts, note = draw_sets(entries, {"valid": 0.25, "test": 0.25}, seed=4)
    assert [len(p) for p in parts.values()] == [10, 5, 5] and "seed 4" in note and "from 20 usable" in note
    parts, note = draw_sets(entries, {"valid": 0.25, "test": 0.25}, seed=4, by_speaker=True)
    assert [len(p) for p in parts.values()] == [10, 5, 5]
    assert "drawn by speaker" in note and "speakers: train 2, valid 1, test 1" in note


def test_speaker_patterns():
    assert compile_speaker_pattern(None) is None and compile_speaker_pattern("") is None
    pattern = compile_speaker_pattern("^([^/]+)/")
    assert read_speaker(pattern, "spk1/book/1.wav") == "spk1"
    assert read_speaker(pattern, "loose.wav") is None
    assert read_speaker(compile_speaker_pattern(r"_(\d+)_"), "a/x_42_1.flac") == "42"
    assert read_speaker(None, "spk1/1.wav") is None
    with pytest.raises(ValueError, match="exactly one"):
        compile_speaker_pattern("^[^/]+/")
    with pytest.raises(ValueError, match="2 groups"):
        compile_speaker_pattern("^([^/]+)/(.*)")
    with pytest.raises(ValueError, match="not a valid regular expression"):
        compile_speaker_pattern("^([^/]+/")


def test_pattern_that_matches_nothing_says_what_to_fix():
    pattern = compile_speaker_pattern(r"^(spk\d+)/")
    require_speaker_matches(pattern, ["x/1.wav", "spk2/1.wav"], "/corpus")  # one match is enough
    require_speaker_matches(None, ["x/1.wav"], "/corpus")
    with pytest.raises(ValueError) as error:
        require_speaker_matches(pattern, ["speaker_a/1.wav", "speaker_b/2.wav"], "/corpus")
    message = str(error.value)
    assert "finds no speaker in any of the 2 paths of /corpus" in message
    assert "'speaker_a/1.wav'" in message and "--speaker_pattern" in message and "relative" in message
