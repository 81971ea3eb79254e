"""A small LibriTTS-layout corpus made on the spot (no download), for the quickstart and the tests.

    python -m utils.sample_corpus data/sample                  # espeak-ng voices if installed, else synthetic
    python -m utils.sample_corpus data/sample --engine synthetic --bad

writes ``OUT_DIR/<split>/<speaker>/<chapter>/<speaker>_<chapter>_<utt>_<seg>.wav`` (16-bit PCM, 24 kHz as
LibriTTS) with ``<uttid>.normalized.txt`` and ``<uttid>.original.txt`` beside each wav and a
``<speaker>_<chapter>.trans.tsv`` per chapter, for the splits ``train-clean-100``, ``dev-clean`` and
``test-clean``. ``OUT_DIR`` is then the recipe's ``--data_folder``.

Engines:

* ``espeak``: ``espeak-ng`` speaks deterministic English sentences, one voice variant, pitch and rate per
  speaker (real, intelligible speech; the text files hold what was said).
* ``synthetic``: a numpy source-filter model (glottal sawtooth with a per-speaker pitch and intonation, a
  cascade of time-varying formant resonances for vowels, filtered noise for consonants, syllable-rate
  amplitude modulation and pauses between words). Speech-like, not speech: the text files hold a sentence
  that is not what the audio says. Byte-identical for the same arguments on the same machine.
* ``auto``: ``espeak`` when ``espeak-ng`` is on ``PATH``, else ``synthetic``.

``make_bad_files`` (or ``--bad``) adds deliberately broken or unusual files to test data preparation.

Other corpus formats (``--layout``; synthetic voice only):

* ``folder``: ``OUT_DIR/<split>/<speaker>/<speaker>_<utt>.<ext>`` in mixed formats (wav, flac, ogg),
  sample rates (16, 22.05, 24, 44.1 kHz) and channel counts (every third file stereo), for
  ``--corpus_format folder``;
* ``list``: the same audio under ``OUT_DIR/audio/`` and ``OUT_DIR/files.csv`` listing it
  (``path,duration,speaker,split``), for ``--corpus_format list``;
* ``librilight``: ``OUT_DIR/small/<speaker>/<book>/<name>.flac`` (30 s files of voiced stretches and
  pauses) with their voice-activity ``.json``, for ``--corpus_format librilight``.

The corpora are made by :mod:`utils.corpus.samples`, in the voices of :mod:`utils.corpus.voice`.

Training on such a corpus, or on your own: docs/training.md.
"""

import argparse
from pathlib import Path

from utils.corpus.samples import (
    BAD_CHAPTER,
    DEFAULT_SPLITS,
    FOLDER_SPLITS,
    make_folder_corpus,
    make_librilight_corpus,
    make_list_corpus,
    make_sample_corpus,
)
from utils.corpus.voice import ENGINES, resolve_engine

__all__ = ["main"]


def _write_layout(layout: str, args) -> str:
    """Write the corpus of ``--layout``; return the options to train on it."""
    out = Path(args.out_dir).resolve()
    if layout == "librilight":
        make_librilight_corpus(out, seed=args.seed)
        return f'--corpus_format librilight --data_folder {out} --train_split "[small]"'
    if layout == "folder":
        make_folder_corpus(out, seed=args.seed, bad=args.bad)
        sets = " ".join(f"--{s}_folder {s}" for s in FOLDER_SPLITS)
        return f"--corpus_format folder --data_folder {out} {sets}"
    list_path = make_list_corpus(out, seed=args.seed, bad=args.bad)
    return f"--corpus_format list --data_folder {list_path}"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m utils.sample_corpus",
        description="Generate a small LibriTTS-layout corpus (no download). OUT_DIR is then --data_folder.",
    )
    parser.add_argument("out_dir", help="where to write it")
    parser.add_argument("--engine", choices=ENGINES, default="auto")
    parser.add_argument("--bad", action="store_true", help="also add broken/unusual files to each split")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sample-rate", type=int, default=24000)
    parser.add_argument("--long-seconds", type=float, default=12.0, help="length of the bad 'toolong' file")
    parser.add_argument(
        "--layout",
        choices=("libritts", "folder", "list", "librilight"),
        default="libritts",
        help="libritts (default), folder (mixed formats, rates and channels), list (folder + files.csv) or "
        "librilight (long files with voice-activity JSON)",
    )
    args = parser.parse_args(argv)
    if args.layout != "libritts":
        options = _write_layout(args.layout, args)
        n_files = sum(
            1 for p in Path(args.out_dir).rglob("*") if p.suffix in (".wav", ".flac", ".ogg", ".mp3")
        )
        print(f"Wrote {n_files} audio files ({args.layout} layout) to {Path(args.out_dir).resolve()}")
        print(f"Use it with: {options}")
        return
    engine = resolve_engine(args.engine)
    root = make_sample_corpus(
        args.out_dir,
        sample_rate=args.sample_rate,
        seed=args.seed,
        engine=engine,
        bad=args.bad,
        long_seconds=args.long_seconds,
    )
    wavs = sorted(root.rglob("*.wav"))
    n_bad = sum(1 for w in wavs if w.parent.name == BAD_CHAPTER) if args.bad else 0
    counts = ", ".join(
        f"{split}: {sum(1 for w in wavs if w.parts[len(root.parts)] == split)}" for split in DEFAULT_SPLITS
    )
    print(
        f"Wrote {len(wavs)} .wav files ({counts}; {n_bad} deliberately bad) with engine {engine!r} "
        f"to {root.resolve()}\nUse it with: --data_folder {root.resolve()}"
    )


if __name__ == "__main__":
    main()
