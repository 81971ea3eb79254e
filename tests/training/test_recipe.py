"""The start-up and the run every stage shares (utils/training/recipe.py), called in-process as the scripts
call them: ``setup_recipe`` on the small generated corpus (tests/conftest.py) gives the datasets, loader
options and encoder record it documents, applies overrides files and YAML variants, and refuses what it
must; ``train_and_test`` records the run folder, trains and tests the checkpoint it is told to pick."""

import json
import logging
import statistics
import sys
from pathlib import Path

import pytest
import soundfile as sf
from helpers.recipe_runner import QUANTIZER_ARGS, ROOT, tiny_overrides
from ruamel.yaml import YAML

from utils.runs import read_run
from utils.training.data import TrainItems
from utils.training.recipe import resolve_variant, setup_recipe, train_and_test
from utils.training.run_lock import LOCK_FILE, RunLock
from utils.training.stages.quantizer import QuantizerStage
from utils.training.train_logger import parse_train_log


@pytest.fixture(autouse=True)
def _restore_logging():
    """setup_recipe configures logging for its run (SpeechBrain: root handlers, excepthook): undo it."""
    root = logging.getLogger()
    handlers, level, excepthook = root.handlers[:], root.level, sys.excepthook
    yield
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:] = handlers
    root.setLevel(level)
    sys.excepthook = excepthook


def recipe_argv(corpus: Path, output: Path, *extra: str, hparams: str = "bsq.yaml", overrides=()) -> list:
    """The quantizer script's ``argv`` on the small corpus: small models, one epoch, batches of 2, CPU;
    ``overrides``: further overrides files, applied after the small-model ones."""
    files = ",".join(map(str, [tiny_overrides(hparams), *overrides]))
    return [
        str(ROOT / "hparams" / hparams), "--overrides_file", f"[{files}]", "--data_folder", str(corpus),
        "--output_folder", str(output), "--device", "cpu", *QUANTIZER_ARGS, *extra,
    ]  # fmt: skip


def utterances(folder: Path) -> set[str]:
    return {path.stem for path in folder.rglob("*.wav")}


def test_setup_recipe_gives_the_datasets_loaders_and_encoder_record(small_corpus, tmp_path):
    """Overrides files in order, the command line over them: a second file's ``seed``, the command line's
    ``valid_size`` over that file's."""
    extra = tmp_path / "extra.yaml"
    extra.write_text("seed: 7\nvalid_size: 1\n")
    output = tmp_path / "run"
    recipe = setup_recipe(recipe_argv(small_corpus, output, overrides=[extra]), QuantizerStage.train_items)
    try:
        hparams = recipe.hparams
        assert hparams["output_folder"] == str(output) and hparams["seed"] == 7
        assert hparams["valid_size"] == 2 and hparams["encoder_dim"] == 64  # command line, small models
        ids = {split: set(dataset.data_ids) for split, dataset in recipe.datasets.items()}
        assert ids == {
            "train": utterances(small_corpus / "train-clean-100"),
            "valid": utterances(small_corpus / "dev-clean"),
            "test": utterances(small_corpus / "test-clean"),
        }
        item = recipe.datasets["valid"][0]  # the waveform at the recipe's rate
        duration = recipe.datasets["valid"].data[item["id"]]["duration"]
        assert item["sig"].ndim == 1 and abs(len(item["sig"]) - duration * hparams["sample_rate"]) <= 1
        assert recipe.loader_kwargs["train"]["batch_size"] == 2 and recipe.loader_kwargs["train"]["shuffle"]
        assert recipe.loader_kwargs["valid"]["batch_size"] == recipe.loader_kwargs["test"]["batch_size"] == 1
        assert recipe.encoder_weights == {"random_init": True} and recipe.pretrained is None
        assert recipe.run_opts["device"] == "cpu"
        assert (output / "hyperparams.yaml").is_file() and (output / "save" / "train.json").is_file()
        assert recipe.lock is not None and (output / LOCK_FILE).is_file()
    finally:
        recipe.lock.release()


def test_train_items_drop_short_training_utterances(small_corpus, tmp_path):
    wavs = (small_corpus / "train-clean-100").rglob("*.wav")
    durations = {path.stem: sf.info(str(path)).duration for path in wavs}
    shortest = statistics.median(durations.values())
    train = TrainItems(min_seconds=lambda hparams: shortest)
    recipe = setup_recipe(recipe_argv(small_corpus, tmp_path / "run"), train)
    recipe.lock.release()
    kept = {uttid for uttid, duration in durations.items() if duration >= shortest}
    assert set(recipe.datasets["train"].data_ids) == kept and 0 < len(kept) < len(durations)
    assert set(recipe.datasets["valid"].data_ids) == utterances(small_corpus / "dev-clean")  # not filtered


def test_a_variant_loads_as_its_base_with_its_keys_and_is_saved_whole(small_corpus, tmp_path):
    output = tmp_path / "run"
    recipe = setup_recipe(recipe_argv(small_corpus, output, hparams="bsq_25hz.yaml"))
    recipe.lock.release()
    assert recipe.hparams["compressor_downscale_factors"] == [2, 1, 1]
    saved = YAML().load(output / "hyperparams.yaml")
    assert "overrides_of" not in saved and saved["compressor_downscale_factors"] == [2, 1, 1]
    assert saved["encoder_dim"] == 64 and saved["num_epochs"] == 1  # the overrides, the command line


def test_resolve_variant(tmp_path):
    """A variant of a variant resolves to the first base, the nearer variant's keys winning, the given
    overrides over all; a plain YAML comes back as it is."""
    (tmp_path / "base.yaml").write_text("x: 0\ny: 0\n")
    (tmp_path / "mid.yaml").write_text("overrides_of: base.yaml\nx: 1\ny: 1\n")
    (tmp_path / "top.yaml").write_text("overrides_of: mid.yaml\ny: 2\n")
    base = str(tmp_path / "base.yaml")
    assert resolve_variant(str(tmp_path / "top.yaml"), {"z": 3}) == (base, {"x": 1, "y": 2, "z": 3})
    assert resolve_variant(str(tmp_path / "top.yaml"), {"x": 5}) == (base, {"x": 5, "y": 2})
    assert resolve_variant(base, {"z": 3}) == (base, {"z": 3})


def test_setup_recipe_refuses_what_it_cannot_run(small_corpus, tmp_path):
    output = tmp_path / "run"
    argv = recipe_argv(small_corpus, output)
    at = argv.index("--data_folder")
    without_data = argv[:at] + argv[at + 2 :]
    with pytest.raises(SystemExit, match="--data_folder is required"):
        setup_recipe(without_data)
    with pytest.raises(ValueError, match="cannot be combined with augment"):
        setup_recipe([*argv, "--feature_cache", "True", "--augment", "True"])
    # both refused before any work: no experiment folder saved, no corpus prepared
    assert not (output / "hyperparams.yaml").exists() and not (output / "save" / "train.json").exists()
    lock = RunLock(output)
    with pytest.raises(SystemExit, match="Another training process is running in"):
        setup_recipe(argv)
    lock.release()
    with pytest.raises(
        SystemExit,
        match="--init_from_encoder teacher: must be one of encoder, student_encoder, student_posemb",
    ):
        setup_recipe([*argv, "--init_from_encoder", "teacher"])


@pytest.mark.slow
def test_train_and_test_records_the_run_trains_and_tests_the_checkpoint_asked_for(small_corpus, tmp_path):
    """Two epochs, both checkpoints kept; ``max_key="loss"`` picks the epoch of the highest validation loss
    (the first when the loss falls: not simply the latest) for the test stage."""
    output = tmp_path / "run"
    argv = recipe_argv(small_corpus, output, "--keep_checkpoints", "2")
    argv[argv.index("--num_epochs") + 1] = "2"
    recipe = setup_recipe(argv, QuantizerStage.train_items)
    try:
        brain = train_and_test(QuantizerStage, recipe, max_key="loss")
    finally:
        recipe.lock.release()
    assert isinstance(brain, QuantizerStage)
    record = json.loads((output / "parts.json").read_text())
    assert record["stage"] == "quantizer" and record["best"] == {"max_key": "loss"}
    assert record["encoder_weights"] == {"random_init": True, "file": "encoder.safetensors"}
    assert set(read_run(output).parts) == {"encoder", "compressor", "quantizer", "decompressor"}
    rows = parse_train_log(output / "train_log.txt")
    valid = {row["epoch"]: row["valid loss"] for row in rows if "epoch" in row}
    assert list(valid) == [1, 2] and len(list((output / "save").glob("CKPT+*"))) == 2
    assert "test loss" in rows[-1] and rows[-1]["Epoch loaded"] == max(valid, key=valid.get)
    assert (output / "training_curves.png").stat().st_size > 1000
