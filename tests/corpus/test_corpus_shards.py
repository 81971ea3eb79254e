"""WebDataset shards of prepared manifests (utils/corpus/shards/): what they hold, the index, resuming,
idempotence, finding them, verifying them."""

import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers.recipe_runner import ROOT, recipe_env

import utils.corpus.shards.write
from utils.corpus import prepare_data
from utils.corpus.audio import load_utterance
from utils.corpus.manifest import read_manifest
from utils.corpus.samples import make_folder_corpus, make_librilight_corpus
from utils.corpus.shards import (
    ShardOptions,
    decode_audio,
    read_index,
    resolve_shards,
    sample_meta,
    shard_samples,
    verify_shards,
    write_shards,
)
from utils.corpus.shards.index import file_sha256


def prepared(tmp_path, **keys) -> dict[str, list]:
    """The manifests' entries of a corpus prepared with these Data keys."""
    hparams = {
        f"{stage}_json": str(tmp_path / "save" / f"{stage}.json") for stage in ("train", "valid", "test")
    }
    hparams.update(sample_rate=16000, prepare_seed=1234, valid_size=500, min_duration=0.5, **keys)
    prepare_data(hparams)
    return {stage: read_manifest(tmp_path / "save" / f"{stage}.json") for stage in ("train", "valid", "test")}


@pytest.fixture(scope="module")
def folder_corpus(tmp_path_factory):
    """A folder corpus in mixed formats, rates and channel counts (9 train, 2 valid, 2 test files)."""
    root = tmp_path_factory.mktemp("folder")
    make_folder_corpus(root / "corpus")
    keys = {"train_folder": "train", "valid_folder": "valid", "test_folder": "test"}
    return root, prepared(root, corpus_format="folder", data_folder=str(root / "corpus"), **keys)


def corpus_state(folder) -> dict:
    return {path: path.stat().st_mtime_ns for path in folder.rglob("*")}


def read_all(folder, set_name="train") -> dict[str, tuple[dict, torch.Tensor]]:
    return {
        meta["id"]: (meta, sig)
        for shard in resolve_shards(folder / "index.json", set_name)
        for meta, sig in ((sample_meta(s), decode_audio(s, 16000)) for s in shard_samples(shard.url))
    }


def test_shards_hold_the_manifests(folder_corpus, tmp_path):
    root, manifests = folder_corpus
    before = corpus_state(root / "corpus")
    index = write_shards(manifests, tmp_path, ShardOptions(max_count=4))
    assert corpus_state(root / "corpus") == before  # the corpus is only read
    for stage, entries in manifests.items():
        assert index["sets"][stage]["count"] == len(entries)
        samples = read_all(tmp_path, stage)
        assert set(samples) == {entry.uttid for entry in entries}
        for entry in entries:  # the stored bytes: the very audio of the file
            meta, sig = samples[entry.uttid]
            assert meta["duration"] == round(entry.duration, 6) and meta["sample_rate"] == entry.sample_rate
            assert torch.equal(sig, load_utterance(entry.wav, 16000))
    assert [info["count"] for info in index["shards"].values()] == [4, 4, 1, 2, 2]
    for name, info in index["shards"].items():
        assert file_sha256(tmp_path / name) == info["sha256"] and len(info["durations"]) == info["count"]
    assert verify_shards(tmp_path) == []


def test_an_interrupted_run_resumes_and_a_finished_one_does_nothing(folder_corpus, tmp_path, monkeypatch):
    _, manifests = folder_corpus
    options = ShardOptions(max_count=2)
    encode, calls = utils.corpus.shards.write.encode_audio, []

    def failing(entry, options):
        calls.append(entry.uttid)
        if len(calls) == 5:  # inside the third shard
            raise KeyboardInterrupt
        return encode(entry, options)

    monkeypatch.setattr(utils.corpus.shards.write, "encode_audio", failing)
    with pytest.raises(KeyboardInterrupt):
        write_shards(manifests, tmp_path / "shards", options)
    monkeypatch.undo()
    written = corpus_state(tmp_path / "shards")
    assert sorted(path.name for path in written if path.suffix == ".tar") == [
        "train-000000.tar",
        "train-000001.tar",
    ]
    index = write_shards(manifests, tmp_path / "shards", options)
    after = corpus_state(tmp_path / "shards")
    assert all(after[path] == mtime for path, mtime in written.items() if path.suffix == ".tar")  # kept
    assert index == write_shards(manifests, tmp_path / "fresh", options)  # the same bytes as in one go
    assert corpus_state(tmp_path / "shards") == after and (tmp_path / "shards" / "index.json") in after
    write_shards(manifests, tmp_path / "shards", options)
    assert corpus_state(tmp_path / "shards") == after  # nothing to do


def test_other_options_start_afresh(folder_corpus, tmp_path):
    _, manifests = folder_corpus
    write_shards(manifests, tmp_path, ShardOptions(max_count=2))
    index = write_shards(manifests, tmp_path, ShardOptions(max_count=5, seed=3))
    assert sorted(path.name for path in tmp_path.glob("*.tar")) == sorted(index["shards"])


def test_librilight_shards_hold_the_cut_pieces(tmp_path):
    make_librilight_corpus(tmp_path / "corpus", speakers=3, files_per_speaker=1, file_seconds=10.0)
    manifests = prepared(
        tmp_path, corpus_format="librilight", data_folder=str(tmp_path / "corpus"), train_split=["small"],
        cut_seconds=4.0, valid_proportion=0.3, test_proportion=0.3,
    )  # fmt: skip
    write_shards({"train": manifests["train"]}, tmp_path / "shards", ShardOptions())
    samples = read_all(tmp_path / "shards")
    assert set(samples) == {entry.uttid for entry in manifests["train"]}
    for entry in manifests["train"]:  # 16-bit FLAC of the joined ranges: exactly what the manifest reads
        assert entry.segments and torch.equal(
            samples[entry.uttid][1], load_utterance(entry.wav, 16000, entry.segments)
        )


def test_audio_reencoded_to_a_format_and_rate(folder_corpus, tmp_path):
    _, manifests = folder_corpus
    write_shards({"valid": manifests["valid"]}, tmp_path, ShardOptions(audio_format="wav", sample_rate=22050))
    samples = read_all(tmp_path, "valid")
    for entry in manifests["valid"]:
        meta, sig = samples[entry.uttid]
        expected = load_utterance(entry.wav, 16000)
        assert meta["sample_rate"] == 22050 and abs(len(sig) - len(expected)) <= 1
        n = min(len(sig), len(expected))
        assert np.corrcoef(sig[100 : n - 100], expected[100 : n - 100])[0, 1] > 0.999


def test_shards_found_by_pattern_or_index(folder_corpus, tmp_path):
    _, manifests = folder_corpus
    index = write_shards({"train": manifests["train"]}, tmp_path / "shards", ShardOptions(max_count=4))
    by_index = resolve_shards(tmp_path / "shards" / "index.json", "train")
    by_pattern = resolve_shards(str(tmp_path / "shards" / "train-{000000..000002}.tar"))
    assert by_index == by_pattern and [len(shard.durations) for shard in by_index] == [4, 4, 1]
    (tmp_path / "other").mkdir()
    shutil.copy(tmp_path / "shards" / "train-000001.tar", tmp_path / "other")
    scanned = resolve_shards(str(tmp_path / "other" / "train-{000001..000001}.tar"))  # no index: read through
    assert scanned[0].durations == tuple(index["shards"]["train-000001.tar"]["durations"])
    with pytest.raises(FileNotFoundError, match=r"train-000003\.tar"):
        resolve_shards(str(tmp_path / "shards" / "train-{000000..000003}.tar"))
    with pytest.raises(ValueError, match="no valid shards"):
        resolve_shards(tmp_path / "shards" / "index.json", "valid")


def test_verify_finds_a_damaged_shard(folder_corpus, tmp_path):
    _, manifests = folder_corpus
    write_shards({"test": manifests["test"]}, tmp_path, ShardOptions())
    data = bytearray((tmp_path / "test-000000.tar").read_bytes())
    data[2000] ^= 0xFF
    (tmp_path / "test-000000.tar").write_bytes(bytes(data))
    command = [sys.executable, "-m", "utils.corpus.shards", str(tmp_path), "--verify"]
    result = subprocess.run(command, cwd=ROOT, env=recipe_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and "test-000000.tar: sha256" in result.stdout
    assert read_index(tmp_path / "index.json")["sets"]["test"]["count"] == 2
