"""What the formats for one's own corpus (``folder``, ``list``) share: their options, reading speakers and
ids from relative paths, and drawing the sets that no folder or split column gives from the pool.

Sets: a set given explicitly (its own folder, or rows of a list's split column) is used as it is (valid
is then a seeded draw of at most ``valid_size``). The others are drawn from the **pool** (the train files
when given, else every file not in a given set): ``valid_proportion`` and ``test_proportion`` of the pool
(rounded, at least one utterance each, valid at most ``valid_size``), seeded by ``seed``, at random or, with
``speaker_disjoint``, by whole speakers; train keeps the rest.
"""

import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial

from utils.corpus.prepare import Candidate, Plan, SetSource, build_sets, uttid_from_path
from utils.corpus.report import PrepareReport
from utils.corpus.splits import check_proportions, compile_speaker_pattern, draw_sets, read_speaker

__all__ = ["FORMAT_VERSION", "DrawOptions", "build_with_pool", "candidate"]

FORMAT_VERSION = 1


@dataclass
class DrawOptions:
    """The options of the ``folder`` and ``list`` formats besides where the files are (see the module
    docstring; ``min_duration``/``max_duration`` in seconds, ``sample_rate`` recorded only)."""

    valid_proportion: float = 0.1
    test_proportion: float = 0.1
    seed: int = 1234
    speaker_pattern: str | None = None
    speaker_disjoint: bool = False
    valid_size: int | None = 500
    min_duration: float = 1.0
    max_duration: float | None = None
    sample_rate: int = 16000

    def check(self, speakers_listed: bool = False) -> re.Pattern | None:
        """The compiled speaker pattern; ``ValueError`` for inconsistent options."""
        pattern = compile_speaker_pattern(self.speaker_pattern)
        if self.speaker_disjoint and pattern is None and not speakers_listed:
            raise ValueError(
                "speaker_disjoint needs speakers: set speaker_pattern (a regular expression with one group "
                "giving the speaker from the path relative to the corpus root, e.g. '^([^/]+)/' when each "
                "speaker has a folder) or give a list with a speaker column"
            )
        if self.max_duration is not None and self.max_duration < self.min_duration:
            raise ValueError(
                f"max_duration ({self.max_duration}) is smaller than min_duration ({self.min_duration})"
            )
        return pattern

    def shares(self, given: set[str]) -> dict[str, float]:
        """``{stage: proportion}`` of the valid/test sets not ``given`` (``ValueError`` if out of range)."""
        shares = {"valid": self.valid_proportion, "test": self.test_proportion}
        shares = {stage: share for stage, share in shares.items() if stage not in given}
        check_proportions(shares)
        return shares

    def to_options(self) -> dict:
        options = asdict(self)
        options["min_duration"] = float(self.min_duration)
        options["max_duration"] = None if self.max_duration is None else float(self.max_duration)
        return options


def candidate(
    path: str, relative_path: str, pattern: re.Pattern | None, draw: DrawOptions, speaker: str = "", **extra
) -> Candidate:
    """A candidate whose id comes from its ``/``-separated relative path and its speaker from ``speaker``
    (a list's column) or the pattern. ``spk_id`` is ``None`` (skipped as ``no_speaker``) when the pattern
    does not match, or when the split is speaker-disjoint and no speaker is known."""
    spk_id = speaker or read_speaker(pattern, relative_path)
    if not spk_id:
        spk_id = None if (pattern is not None or draw.speaker_disjoint) else ""
    return Candidate(os.path.abspath(path), uttid_from_path(relative_path), spk_id, **extra)


def build_with_pool(
    plan: Plan,
    report: PrepareReport,
    fixed: dict[str, SetSource],
    pool: SetSource,
    draw: DrawOptions,
    expand: Callable | None = None,
) -> dict[str, dict]:
    """:func:`build_sets` with the sets missing from ``fixed`` drawn from ``pool`` (which is the train set
    itself when nothing is missing); ``expand`` is :func:`build_sets`'s (files -> utterances)."""
    shares = draw.shares(set(fixed))
    options = {"durations": (float(draw.min_duration), draw.max_duration), "valid_size": draw.valid_size}
    options["expand"] = expand
    options["seed"] = draw.seed
    options["hint"] = (
        f"Utterances shorter than min_duration ({draw.min_duration:g} s) are left out: lower --min_duration "
        "for a corpus of short utterances."
    )
    if not shares:
        return build_sets(plan, report, {"train": pool, **fixed}, **options)
    split = partial(
        draw_sets, shares=shares, seed=draw.seed, valid_size=draw.valid_size, by_speaker=draw.speaker_disjoint
    )
    missing = " and ".join(f"{stage}_proportion" for stage in shares)
    options["pool_hint"] = (
        f"The {'/'.join(shares)} set(s) are drawn from {'+'.join(pool.subsets)} by {missing}"
        + (" with whole speakers (speaker_disjoint)" if draw.speaker_disjoint else "")
        + ": add files (or speakers), change the proportions, or give the set its own files."
    )
    return build_sets(plan, report, fixed, pool, split, **options)
