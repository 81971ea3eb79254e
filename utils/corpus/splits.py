"""Making the train/valid/test sets: the seeded validation draw, proportional and speaker-disjoint splits,
and reading a file's speaker from its path.

Every draw uses its own ``random.Random(seed)`` (the global ``random`` state is left alone) over a sorted
list, so the same files and seed always give the same sets.
"""

import random
import re
from collections.abc import Sequence

from utils.corpus.manifest import ManifestEntry

SPLITS = ("train", "valid", "test")
"""The sets every corpus is split into (one manifest each)."""

__all__ = [
    "SPLITS",
    "check_proportions",
    "compile_speaker_pattern",
    "cut",
    "draw_sets",
    "draw_valid",
    "proportion_counts",
    "ratio_counts",
    "read_speaker",
    "require_speaker_matches",
    "speaker_cut",
]


def draw_valid(
    entries: list[ManifestEntry], valid_size: int | None, seed: int
) -> tuple[list[ManifestEntry], int | None, str]:
    """``valid_size`` entries drawn at random (seeded), in their original order, when there are more.

    Returns ``(entries, not_drawn, note)``: ``not_drawn`` is the number left out (``None`` when nothing was
    drawn) and ``note`` says what happened, for the console. ``valid_size`` ``None``/``0``: all entries.
    """
    if not valid_size or valid_size <= 0 or not entries:
        return entries, None, ""
    if len(entries) <= valid_size:
        note = f"all {len(entries)} usable utterances used (fewer than valid_size={valid_size})"
        return entries, None, note
    chosen = sorted(random.Random(seed).sample(range(len(entries)), valid_size))
    note = f"{valid_size} drawn at random (seed {seed}) from {len(entries)} usable"
    return [entries[i] for i in chosen], len(entries) - valid_size, note


def ratio_counts(total: int, split_ratio: Sequence[float]) -> dict[str, int]:
    """LibriTTS ``split_ratio`` (e.g. ``[80, 10, 10]``): ``int(total * r / sum)`` for train and valid, the
    rest for test."""
    n_train = int(total * split_ratio[0] / sum(split_ratio))
    n_valid = int(total * split_ratio[1] / sum(split_ratio))
    return {"train": n_train, "valid": n_valid, "test": total - n_train - n_valid}


def check_proportions(shares: dict[str, float]) -> None:
    """``ValueError`` unless each share is in (0, 1) and together they leave some for train."""
    for stage, share in shares.items():
        if not isinstance(share, int | float) or not 0 < share < 1:
            raise ValueError(f"{stage}_proportion must be a number between 0 and 1 (excluded), got {share!r}")
    if sum(shares.values()) >= 1:
        detail = " + ".join(f"{stage}_proportion {share:g}" for stage, share in shares.items())
        raise ValueError(f"{detail} leave nothing for train: their sum must be below 1")


def proportion_counts(total: int, shares: dict[str, float], valid_size: int | None = None) -> dict[str, int]:
    """How many of ``total`` utterances each set gets: ``round(share * total)`` but at least one for each
    drawn set (``shares``, e.g. ``{"valid": 0.1, "test": 0.1}``), valid at most ``valid_size``, and the
    rest for train (first key)."""
    counts = {}
    for stage, share in shares.items():
        counts[stage] = max(1, round(share * total))
        if stage == "valid" and valid_size and valid_size > 0:
            counts[stage] = min(counts[stage], valid_size)
    return {"train": total - sum(counts.values()), **counts}


def cut(entries: list[ManifestEntry], counts: dict[str, int], seed: int) -> dict[str, list[ManifestEntry]]:
    """Shuffle (seeded) and cut into consecutive parts of ``counts`` entries, in the order of ``counts``."""
    shuffled = list(entries)
    random.Random(seed).shuffle(shuffled)
    parts, start = {}, 0
    for stage, count in counts.items():
        parts[stage] = shuffled[start : start + max(0, count)]
        start += max(0, count)
    return parts


def speaker_cut(
    entries: list[ManifestEntry], counts: dict[str, int], seed: int
) -> dict[str, list[ManifestEntry]]:
    """Whole speakers (``spk_id``) to each set, so that no speaker is in two sets.

    The speakers are shuffled (seeded); each goes to the first drawn set (every key of ``counts`` but
    ``"train"``) whose size it brings closer to its target count, else to train. A drawn set left empty then
    takes the smallest speaker of a set that keeps another (train first). Sizes match the targets to within
    about one speaker's utterances.
    """
    groups: dict[str, list[ManifestEntry]] = {}
    for entry in entries:
        groups.setdefault(entry.spk_id, []).append(entry)
    speakers = sorted(groups)
    random.Random(seed).shuffle(speakers)
    chosen: dict[str, list[str]] = {stage: [] for stage in counts}
    sizes = dict.fromkeys(counts, 0)
    drawn = [stage for stage in counts if stage != "train"]
    for speaker in speakers:
        n = len(groups[speaker])
        closer = (s for s in drawn if abs(sizes[s] + n - counts[s]) < abs(sizes[s] - counts[s]))
        stage = next(closer, "train")
        chosen[stage].append(speaker)
        sizes[stage] += n
    for stage in drawn:  # an empty set takes the smallest speaker of a set that has several
        donors = [
            (len(groups[spk]), s, spk)
            for s in counts
            if s != stage and len(chosen[s]) > 1
            for spk in chosen[s]
        ]
        if not chosen[stage] and donors:
            _, donor, speaker = min(donors, key=lambda donor: donor[0])
            chosen[donor].remove(speaker)
            chosen[stage].append(speaker)
    return {stage: [e for s in sorted(chosen[stage]) for e in groups[s]] for stage in counts}


def draw_sets(
    entries: list[ManifestEntry],
    shares: dict[str, float],
    seed: int,
    valid_size: int | None = None,
    by_speaker: bool = False,
) -> tuple[dict[str, list[ManifestEntry]], str]:
    """Split a pool into train and the sets of ``shares`` (:func:`proportion_counts`), at random
    (:func:`cut`) or by whole speakers (:func:`speaker_cut`). Returns ``(parts, note for the console)``."""
    counts = proportion_counts(len(entries), shares, valid_size)
    if by_speaker:
        parts = speaker_cut(entries, counts, seed)
        speakers = {stage: len({entry.spk_id for entry in part}) for stage, part in parts.items()}
        detail = ", ".join(f"{stage} {n}" for stage, n in speakers.items())
        return parts, f"drawn by speaker (seed {seed}) from {len(entries)} usable; speakers: {detail}"
    shares_text = ", ".join(f"{stage} {share:g}" for stage, share in shares.items())
    note = f"drawn at random (seed {seed}; {shares_text}) from {len(entries)} usable"
    return cut(entries, counts, seed), note


def compile_speaker_pattern(pattern: str | None) -> re.Pattern | None:
    """The compiled ``speaker_pattern`` (``None`` stays ``None``); ``ValueError`` unless it is a valid
    regular expression with exactly one group."""
    if pattern is None or pattern == "":
        return None
    try:
        compiled = re.compile(str(pattern))
    except re.error as error:
        raise ValueError(f"speaker_pattern {pattern!r} is not a valid regular expression: {error}") from None
    if compiled.groups != 1:
        raise ValueError(
            f"speaker_pattern {pattern!r} has {compiled.groups} groups: it needs exactly one, the speaker, "
            "e.g. '^([^/]+)/' for the first folder or '^([^_/]+)_' for a file-name prefix"
        )
    return compiled


def read_speaker(pattern: re.Pattern | None, relative_path: str) -> str | None:
    """The speaker the pattern's group finds (``re.search``) in a ``/``-separated relative path, or
    ``None``."""
    if pattern is None:
        return None
    match = pattern.search(relative_path)
    return match.group(1) if match and match.group(1) else None


def require_speaker_matches(pattern: re.Pattern | None, relative_paths: list[str], where: str) -> None:
    """``ValueError`` (with examples and the fix) when the pattern gives a speaker for none of the paths."""
    if pattern is None or not relative_paths:
        return
    if any(read_speaker(pattern, path) for path in relative_paths):
        return
    examples = ", ".join(repr(path) for path in relative_paths[:3])
    raise ValueError(
        f"speaker_pattern {pattern.pattern!r} finds no speaker in any of the {len(relative_paths)} paths of "
        f"{where}, e.g. {examples}. It is searched (re.search) in each path relative to the corpus root, "
        "with '/' separators, and its one group is the speaker: e.g. '^([^/]+)/' takes the first folder, "
        "'^([^_/]+)_' a file-name prefix. Fix --speaker_pattern, or leave it null."
    )
