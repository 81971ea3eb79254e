"""Pytest fixtures shared by the whole suite: thread count, and the small corpus and recipe runs that several
test modules inspect (each run once per session, through the real command line, probed): the first
recipe's two stages, and the five FocalCodec-Stream stages chained as the README chains them."""

from pathlib import Path

import pytest
import torch
from helpers.recipe_runner import QUANTIZER_ARGS, RUN_ARGS, SMALL_SPLITS, run_recipe

from utils.corpus import SPLITS, prepare_data
from utils.corpus.manifest import read_manifest
from utils.corpus.samples import make_sample_corpus
from utils.corpus.shards import ShardOptions, write_shards


def probed_run(script: str, hparams: str, data_folder: Path, output_folder: Path, *extra: str) -> None:
    """A stage through its real command line, probed (tests/helpers/ddp_probe.py: ``probe-0.json`` tells
    e.g. the loss of every test batch)."""
    run_recipe(script, hparams, data_folder, output_folder, *extra, probe=True)


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
def small_shards(small_corpus, tmp_path_factory) -> tuple[Path, dict]:
    """The small corpus's 6 training utterances in WebDataset shards of 4 and 2 (deliberately unequal):
    the shard index and the training manifest's entries by id."""
    folder = tmp_path_factory.mktemp("small_shards")
    hparams = {f"{stage}_json": str(folder / f"{stage}.json") for stage in SPLITS}
    hparams.update({f"{stage}_split": [name] for stage, name in zip(SPLITS, SMALL_SPLITS, strict=True)})
    hparams.update(data_folder=str(small_corpus), sample_rate=16000, prepare_seed=0, valid_size=2)
    prepare_data({**hparams, "min_duration": 1.0})
    entries = read_manifest(folder / "train.json")
    index = write_shards({"train": entries}, folder / "shards", ShardOptions(max_count=4))
    assert [info["count"] for info in index["shards"].values()] == [4, 2]
    return folder / "shards" / "index.json", {entry.uttid: entry for entry in entries}


@pytest.fixture(scope="session")
def runs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="session")
def quantizer_run(small_corpus, runs) -> Path:
    """The quantizer stage at 50 Hz, small models (hparams/tiny/bsq.yaml), one epoch."""
    probed_run("train_quantizer.py", "bsq.yaml", small_corpus, runs / "bsq", *QUANTIZER_ARGS)
    return runs / "bsq"


@pytest.fixture(scope="session")
def quantizer_run_25hz(small_corpus, runs) -> Path:
    """The quantizer stage at 25 Hz (bsq_25hz.yaml), as ``quantizer_run`` (requested by name in
    tests/runs/test_export.py)."""
    probed_run("train_quantizer.py", "bsq_25hz.yaml", small_corpus, runs / "bsq_25hz", *QUANTIZER_ARGS)
    return runs / "bsq_25hz"


@pytest.fixture(scope="session")
def quantizer_run_12_5hz(small_corpus, runs) -> Path:
    """The quantizer stage at 12.5 Hz (bsq_12_5hz.yaml), as ``quantizer_run`` (requested by name in
    tests/runs/test_export.py)."""
    probed_run("train_quantizer.py", "bsq_12_5hz.yaml", small_corpus, runs / "bsq_12_5hz", *QUANTIZER_ARGS)
    return runs / "bsq_12_5hz"


@pytest.fixture(scope="session")
def decoder_run(small_corpus, runs) -> Path:
    """The decoder stage, small models (hparams/tiny/vocos.yaml), one epoch of 3 steps. Test and validation
    score UTMOS and Sim: offline, their models cannot load, so the fallbacks must step in; the progress
    figures are logged every 2 steps and at validation."""
    options = ["--compute_metrics", "True", "--metrics", "[utmos, sim]", "--valid_metrics_every", "1"]
    options += ["--progress_every_steps", "2"]
    probed_run("train_decoder.py", "vocos.yaml", small_corpus, runs / "vocos", *RUN_ARGS, *options)
    return runs / "vocos"


# FocalCodec-Stream: the five stages with small models (hparams/tiny/stream/), one epoch each, every stage
# given the previous one's output folder as it is


@pytest.fixture(scope="session")
def wavenext_run(small_corpus, runs) -> Path:
    """Stage 1: the causal WaveNeXt decoder, 24 kHz targets from the 16 kHz encoder's features."""
    probed_run("train_decoder.py", "stream/wavenext.yaml", small_corpus, runs / "wavenext", *RUN_ARGS)
    return runs / "wavenext"


@pytest.fixture(scope="session")
def posemb_run(small_corpus, runs) -> Path:
    """Stage 2: the causal positional embedding (train-clean-100 only: the corpus has no other split)."""
    probed_run("train_posemb.py", "stream/conv_posemb.yaml", small_corpus, runs / "posemb", *QUANTIZER_ARGS)
    return runs / "posemb"


@pytest.fixture(scope="session")
def wavlm_run(small_corpus, runs, posemb_run) -> Path:
    """Stage 3: the causal encoder distilled layer by layer, from stage 2's output folder."""
    extra = ["--student_encoder_posemb_checkpoint", str(posemb_run)]
    probed_run("train_encoder.py", "stream/wavlm.yaml", small_corpus, runs / "wavlm", *QUANTIZER_ARGS, *extra)
    return runs / "wavlm"


@pytest.fixture(scope="session")
def stream_bsq_run(small_corpus, runs, wavlm_run, wavenext_run) -> Path:
    """Stage 4: causal compressor, 12-bit BSQ, decompressor on stage 3's frozen encoder, listening
    through stage 1's decoder."""
    extra = ["--encoder_checkpoint", str(wavlm_run), "--decoder_checkpoint", str(wavenext_run)]
    probed_run(
        "train_quantizer.py", "stream/bsq.yaml", small_corpus, runs / "stream_bsq", *QUANTIZER_ARGS, *extra
    )
    return runs / "stream_bsq"


@pytest.fixture(scope="session")
def joint_run(small_corpus, runs, stream_bsq_run, wavenext_run) -> Path:
    """Stage 5: joint fine-tuning from stage 4's output folder, listening through stage 1's decoder."""
    extra = ["--quantizer_checkpoint", str(stream_bsq_run), "--decoder_checkpoint", str(wavenext_run)]
    probed_run("train_joint.py", "stream/joint.yaml", small_corpus, runs / "joint", *QUANTIZER_ARGS, *extra)
    return runs / "joint"
