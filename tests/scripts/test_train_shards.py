"""Training from shards through the real command lines (docs/training.md, "Training at scale"): a corpus
sharded with ``python -m utils.corpus.shards``, both stages of the first recipe (with the feature cache
in shard form) and stages 2-5 of FocalCodec-Stream trained from the shards (each reads every training
utterance once in an epoch), two processes sharing an epoch of unequal shards, a run of two "nodes" (two
torchrun agents meeting at a c10d rendezvous on 127.0.0.1) killed inside an epoch and resumed, and two
nodes downloading the corpus once each (``data_per_node``)."""

import json
import subprocess
import sys

import pytest
import yaml
from helpers.http_server import libritts_archives, serve
from helpers.recipe_runner import (
    QUANTIZER_ARGS,
    ROOT,
    RUN_ARGS,
    free_port,
    kill_nodes_mid_epoch,
    node_commands,
    parse_train_log,
    recipe_command,
    recipe_env,
    run_ddp_probe,
    run_nodes,
    run_recipe,
)

from utils.corpus.samples import make_folder_corpus

pytestmark = pytest.mark.slow

# stage -> (script, YAML, {option: fixture of the previous stage's run folder}, options). The first
# recipe's stages with the feature cache in shard form (the quantizer stage reads features alone, the
# decoder stage crops read alone); FocalCodec-Stream's 2-5 read their audio from the shards.
CACHED = ["--feature_cache", "True"]
STAGES = {
    "quantizer-cached": ("train_quantizer.py", "bsq.yaml", {}, CACHED),
    "decoder-cached": ("train_decoder.py", "vocos.yaml", {}, CACHED),
    "stream-posemb": ("train_posemb.py", "stream/conv_posemb.yaml", {}, []),
    "stream-encoder": (
        "train_encoder.py",
        "stream/wavlm.yaml",
        {"--student_encoder_posemb_checkpoint": "posemb_run"},
        [],
    ),
    "stream-quantizer": (
        "train_quantizer.py",
        "stream/bsq.yaml",
        {"--encoder_checkpoint": "wavlm_run", "--decoder_checkpoint": "wavenext_run"},
        [],
    ),
    "stream-joint": (
        "train_joint.py",
        "stream/joint.yaml",
        {"--quantizer_checkpoint": "stream_bsq_run", "--decoder_checkpoint": "wavenext_run"},
        [],
    ),
}


@pytest.fixture(scope="module")
def shard_index(small_corpus, tmp_path_factory):
    """The small corpus (LibriTTS layout) sharded as documented: its 6 training utterances in shards of 4
    and 2, valid and test in one shard each."""
    out = tmp_path_factory.mktemp("shards")
    options = ["--data_folder", str(small_corpus), "--train_split", "[train-clean-100]", "--max_count", "4"]
    index = write_shards(out, *options)
    assert [index["shards"][name]["count"] for name in index["sets"]["train"]["shards"]] == [4, 2]
    return out / "index.json"


def write_shards(output, *options: str) -> dict:
    """``python -m utils.corpus.shards output *options`` (docs/training.md, "Shards"); its index."""
    command = [sys.executable, "-m", "utils.corpus.shards", str(output), *options]
    result = subprocess.run(command, cwd=ROOT, env=recipe_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((output / "index.json").read_text())


def training_ids(output_folder) -> set[str]:
    return set(json.loads((output_folder / "save" / "train.json").read_text()))


@pytest.mark.parametrize("stage", list(STAGES))
def test_every_stage_trains_from_shards(stage, shard_index, small_corpus, tmp_path, request):
    script, hparams, previous, options = STAGES[stage]
    extra = [word for option, run in previous.items() for word in (option, str(request.getfixturevalue(run)))]
    extra += options
    out = tmp_path / stage
    run_recipe(
        script,
        hparams,
        small_corpus,
        out,
        *QUANTIZER_ARGS,
        "--train_shards",
        str(shard_index),
        *extra,
        probe=True,
    )
    ids = json.loads((out / "probe-0.json").read_text())["ids"]
    assert sorted(ids) == sorted(training_ids(out))  # the epoch: every training utterance once
    assert "test loss" in parse_train_log(out / "train_log.txt")[-1]
    if options:  # the training features came from feature shards, one per shard
        assert len(list((out / "feature_cache").glob("train_shards-*/train-*.tar"))) == 2


def test_a_corpus_in_another_layout_trains_from_its_shards(tmp_path):
    """A folder corpus (mixed formats, rates and channels) sharded and trained from with the documented
    commands: the run prepares the same split as the sharding did, and its epoch is what the shards it is
    given hold (the first of two, by a brace pattern), each utterance once."""
    make_folder_corpus(tmp_path / "corpus", splits={"train": (2, 2), "valid": (1, 1), "test": (1, 1)})
    data = ["--corpus_format", "folder", "--train_folder", "train", "--valid_folder", "valid"]
    data += ["--test_folder", "test"]
    corpus = ["--data_folder", str(tmp_path / "corpus"), "--valid_size", "2"]
    index = write_shards(tmp_path / "shards", *corpus, *data, "--max_count", "3")
    assert [index["shards"][name]["count"] for name in index["sets"]["train"]["shards"]] == [3, 1]
    shards, out = str(tmp_path / "shards" / "train-{000000..000000}.tar"), tmp_path / "out"
    run_recipe(
        "train_quantizer.py",
        "bsq.yaml",
        tmp_path / "corpus",
        out,
        *RUN_ARGS,
        *data,
        "--train_shards",
        shards,
        probe=True,
    )
    ids = json.loads((out / "probe-0.json").read_text())["ids"]
    sharded = json.loads((tmp_path / "shards" / "manifests" / "train.json").read_text())
    assert training_ids(out) == set(sharded) and len(sharded) == 4  # the same split
    assert len(ids) == len(set(ids)) == 3 and set(ids) < training_ids(out)  # the first shard's utterances
    assert "test loss" in parse_train_log(out / "train_log.txt")[-1]


def test_two_processes_share_an_epoch_of_unequal_shards(shard_index, small_corpus, tmp_path):
    """Shards of 4 and 2 utterances: split by shard, one process would have 2 batches and the other 1 (a
    hang at the end of the epoch, which run_torchrun's timeout turns into a failure)."""
    args = [*QUANTIZER_ARGS, "--train_shards", str(shard_index)]
    port = free_port()
    probes = run_ddp_probe(
        "train_quantizer.py", "bsq.yaml", small_corpus, tmp_path, *args, port=port, timeout=600
    )
    ids = [probe["ids"] for probe in probes]
    assert len(ids[0]) == len(ids[1]) == 3 and set(ids[0]) | set(ids[1]) == training_ids(tmp_path)


def test_two_nodes_train_are_killed_and_resume(shard_index, small_corpus, tmp_path):
    args = ["--train_batch_size", "1", "--valid_size", "2", "--num_epochs", "2", "--ckpt_interval_steps", "1"]
    args += ["--train_split", "[train-clean-100]", "--train_shards", str(shard_index)]
    command = recipe_command("train_quantizer.py", "bsq.yaml", small_corpus, tmp_path, *args)
    kill_nodes_mid_epoch(node_commands(command, free_port()), tmp_path, timeout=600)
    assert len([row for row in parse_train_log(tmp_path / "train_log.txt") if "epoch" in row]) < 2
    for result in run_nodes(node_commands(command, free_port()), timeout=600):
        assert result.returncode == 0, result.stdout[-5000:]
    rows = [row for row in parse_train_log(tmp_path / "train_log.txt") if "epoch" in row]
    assert [(row["epoch"], row["steps"]) for row in rows] == [(1, 3), (2, 6)]  # continued, not restarted
    checkpoint = max((tmp_path / "save").glob("CKPT+*"))
    assert yaml.safe_load((checkpoint / "brain.ckpt").read_text())["optimizer_step"] == 6
    assert "test loss" in parse_train_log(tmp_path / "train_log.txt")[-1]


def test_each_node_downloads_its_own_copy(tmp_path):
    """``--data_per_node True``: each node's first process fetches the corpus into its own data folder
    (here each "node" is given another folder, as each machine has its own disk), then the run trains."""
    archives = libritts_archives(["train-clean-100", "dev-clean", "test-clean"], seconds=1.2)
    with serve(archives) as server:
        checksums = "{" + ", ".join(f"{s}: '{sha}'" for s, sha in server.checksums.items()) + "}"
        args = ["--download", "True", "--download_url", server.url, "--download_checksums", checksums]
        args += ["--data_per_node", "True", *QUANTIZER_ARGS]
        port = free_port()
        commands = [
            node_commands(
                recipe_command(
                    "train_quantizer.py", "bsq.yaml", tmp_path / f"node{rank}", tmp_path / "out", *args
                ),
                port,
            )[rank]
            for rank in (0, 1)
        ]
        for result in run_nodes(commands, timeout=600):
            assert result.returncode == 0, result.stdout[-5000:]
        assert len(server.state.requests) == 6  # 3 subsets, once on each node
    for rank in (0, 1):
        assert sorted(p.name for p in (tmp_path / f"node{rank}" / "dev-clean").iterdir()) == ["84"]
    assert "test loss" in parse_train_log(tmp_path / "out" / "train_log.txt")[-1]
