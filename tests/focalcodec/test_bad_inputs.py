"""The bad-input sweep, given to the tools: truncated, empty, zero-length, NaN-filled, huge-header and
wrong-extension audio files are each reported, none crashes, the good files are processed, and the exit status
says what happened (docs/export.md). The same files in a training corpus: tests/corpus/test_corpus_recipe.py
(test_quantizer_on_a_folder_corpus: reported by the preparation, training runs, the corpus unchanged)."""

import shutil

import pytest
import soundfile as sf
from helpers.cli_helpers import TINY_CONFIG, run_cli, speech, write_model
from helpers.corpus_helpers import digest

import evaluate_codec
from focalcodec import cli
from utils.corpus.samples import FOLDER_BAD_FILES, make_folder_corpus

BROKEN = {name: reason for name, reason in FOLDER_BAD_FILES.items() if reason != "too_short"}
"""The files no tool can read (a too-short one is still audio), with what they are."""


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return write_model(TINY_CONFIG, tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A folder of good audio, the broken files, and FLAC audio named .wav (read by its content)."""
    root = tmp_path_factory.mktemp("inputs")
    make_folder_corpus(root, splits={"train": (1, 2)}, bad=True)
    sf.write(root / "train" / "flac_named.wav", speech(1.0, 16000, seed=3), 16000, format="FLAC")
    return root / "train"


def only_broken(inputs, tmp_path):
    folder = tmp_path / "broken"
    for name in BROKEN:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(inputs / name, folder / name)
    return folder


def test_the_command_line_reports_each_bad_file(capsys, model_dir, inputs, tmp_path):
    before = digest(inputs)
    status, out = run_cli(capsys, "encode", inputs, "--model", model_dir, "--output", tmp_path / "toks")
    assert status == cli.EXIT_SOME_FAILED, out
    skipped = out.split(f"Skipped {len(BROKEN)} files:")[1]
    lines = {line.split(": ", 1)[0].strip(): line for line in skipped.strip().splitlines()}
    assert set(lines) == {str(inputs / name) for name in BROKEN}
    assert "truncated" in lines[str(inputs / "spk99/huge_header.wav")]
    assert "truncated" in lines[str(inputs / "spk99/truncated.wav")]
    assert "NaN" in lines[str(inputs / "spk99/nan.wav")]
    assert "no audio samples" in lines[str(inputs / "spk99/no_frames.wav")]
    processed = sorted(path.name for path in (tmp_path / "toks").rglob("*.toks.pt"))
    assert "flac_named.toks.pt" in processed and "short.toks.pt" in processed and len(processed) == 4
    assert digest(inputs) == before

    status, out = run_cli(
        capsys, "resynth", only_broken(inputs, tmp_path), "--model", model_dir, "--output", tmp_path / "none"
    )
    assert status == cli.EXIT_ALL_FAILED and "0 files processed" in out and f"{len(BROKEN)} skipped" in out


@pytest.mark.slow
def test_evaluation_skips_and_lists_bad_files(capsys, model_dir, inputs, tmp_path):
    args = ["--model", f"tiny={model_dir}", "--metrics", "", "--num_saved_audios", "0"]  # code usage only
    status = evaluate_codec.main(["--data", str(inputs), "--output", str(tmp_path / "eval"), *args])
    out = capsys.readouterr().out
    assert status == cli.EXIT_SOME_FAILED
    assert f"Skipped {len(BROKEN)} (files or models):" in out
    assert all(str(inputs / name) in out for name in BROKEN) and "non_finite" in out
    assert "| tiny |" in (tmp_path / "eval" / "results.md").read_text()

    status = evaluate_codec.main(
        ["--data", str(only_broken(inputs, tmp_path)), "--output", str(tmp_path / "x"), *args]
    )
    assert status == cli.EXIT_ALL_FAILED and not (tmp_path / "x" / "results.md").exists()
