"""Pytest fixtures shared by the whole suite: thread count, and the small corpus and recipe runs that several
test modules inspect (each run once per session, through the real command line)."""

from pathlib import Path

import pytest
import torch
from recipe_runner import QUANTIZER_ARGS, RUN_ARGS, SMALL_SPLITS, run_recipe

from utils.sample_corpus import make_sample_corpus


@pytest.fixture(autouse=True)
def _deterministic_threads():
    """Tests run with the thread count the reference vectors were made with."""
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory) -> Path:
    """A generated LibriTTS-layout corpus: 6 training, 2 validation, 2 test utterances (synthetic voice)."""
    return make_sample_corpus(tmp_path_factory.mktemp("libritts"), splits=SMALL_SPLITS, engine="synthetic")


@pytest.fixture(scope="session")
def runs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="session")
def quantizer_run(small_corpus, runs) -> Path:
    """The quantizer stage at 50 Hz, small models (hparams/tiny/bsq.yaml), one epoch."""
    run_recipe("train_quantizer.py", "bsq.yaml", small_corpus, runs / "bsq", *QUANTIZER_ARGS)
    return runs / "bsq"


@pytest.fixture(scope="session")
def quantizer_run_25hz(small_corpus, runs) -> Path:
    run_recipe("train_quantizer.py", "bsq_25hz.yaml", small_corpus, runs / "bsq_25hz", *QUANTIZER_ARGS)
    return runs / "bsq_25hz"


@pytest.fixture(scope="session")
def quantizer_run_12_5hz(small_corpus, runs) -> Path:
    run_recipe("train_quantizer.py", "bsq_12_5hz.yaml", small_corpus, runs / "bsq_12_5hz", *QUANTIZER_ARGS)
    return runs / "bsq_12_5hz"


@pytest.fixture(scope="session")
def decoder_run(small_corpus, runs) -> Path:
    """The decoder stage, small models (hparams/tiny/vocos.yaml), one epoch of 3 steps. Test and validation
    score UTMOS and Sim: offline, their models cannot load, so the fallbacks must step in; the progress
    figures are logged every 2 steps and at validation."""
    options = ["--compute_metrics", "True", "--metrics", "[utmos, sim]", "--valid_metrics_every", "1"]
    options += ["--progress_every_steps", "2"]
    run_recipe("train_decoder.py", "vocos.yaml", small_corpus, runs / "vocos", *RUN_ARGS, *options)
    return runs / "vocos"
