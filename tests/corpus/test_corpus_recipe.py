"""utils/corpus/__init__.py: prepare_data, the recipe's one entry point (corpus_format libritts, folder,
list; --download True), its YAML keys, and both training stages through their real command lines on a
folder corpus, a list corpus and a downloaded LibriTTS corpus."""

import json
import subprocess

import pytest
from helpers.corpus_helpers import digest, load, snapshot
from helpers.http_server import libritts_archives, serve
from helpers.recipe_runner import ROOT, recipe_command, recipe_env, run_recipe

from utils.corpus import prepare_data
from utils.corpus.samples import make_folder_corpus, make_list_corpus, make_sample_corpus
from utils.training.recipe import LAYOUT_HINT

YAMLS = ("bsq.yaml", "vocos.yaml")  # the full YAMLs (the token-rate variants inherit bsq.yaml's keys)
NEW_KEYS = {
    "corpus_format": "libritts",
    "download": "False",
    "download_url": "https://www.openslr.org/resources/60",
    "download_checksums": "{}",
    "train_folder": "null",
    "valid_folder": "null",
    "test_folder": "null",
    "corpus_list": "null",
    "valid_proportion": "0.1",
    "test_proportion": "0.1",
    "speaker_pattern": "null",
    "speaker_disjoint": "False",
}
SMALL = {"train": (2, 3), "valid": (1, 2), "test": (1, 2)}
LIBRITTS = {"train-clean-100": (1, 2), "dev-clean": (1, 1), "test-clean": (1, 1)}
RUN = ["--num_epochs", "1", "--train_batch_size", "2"]


def _hparams(data_folder, out, **keys) -> dict:
    """The Data keys prepare_data reads, as the YAML gives them."""
    hparams = {
        "data_folder": str(data_folder),
        **{f"{stage}_json": str(out / f"{stage}.json") for stage in ("train", "valid", "test")},
        "train_split": ["train-clean-100"], "valid_split": ["dev-clean"], "test_split": ["test-clean"],
        "sample_rate": 16000, "prepare_seed": 1234, "valid_size": 500, "min_duration": 1.0,
        "skip_prep": False,
    }  # fmt: skip
    return {**hparams, **keys}


def _data_section(name: str) -> dict[str, str]:
    """``key: value`` of the Data section's top-level lines (comments dropped)."""
    text = (ROOT / "hparams" / name).read_text()
    section = text.split("# Data ####")[1].split("# Training ####")[0]
    values = {}
    for line in section.splitlines():
        if line and not line[0].isspace() and not line.startswith("#") and ":" in line:
            key, value = line.split(":", 1)
            values[key] = value.split(" #")[0].strip()
    return values


def test_yaml_keys_in_every_data_section():
    sections = {name: _data_section(name) for name in YAMLS}
    for name, values in sections.items():
        assert {key: values.get(key) for key in NEW_KEYS} == NEW_KEYS, name
    for name in YAMLS:  # every new key is commented: the line above it, or the line itself
        lines = (ROOT / "hparams" / name).read_text().splitlines()
        for key in NEW_KEYS:
            index = next(i for i, line in enumerate(lines) if line.startswith(f"{key}:"))
            assert "#" in lines[index] or any(lines[i].startswith("# ") for i in range(index - 4, index)), (
                name,
                key,
            )


def test_layout_hint_names_every_format():
    for words in (
        "--corpus_format folder",
        "--corpus_format list",
        "--download True",
        "Training on your own data",
    ):
        assert words in LAYOUT_HINT


def test_dispatch_libritts_folder_list(tmp_path):
    corpus = make_sample_corpus(tmp_path / "LibriTTS", LIBRITTS, engine="synthetic")
    prepare_data(_hparams(corpus, tmp_path / "a"))
    assert len(load(tmp_path / "a", "train")) == 2
    prepare_data(_hparams(corpus, tmp_path / "b", corpus_format=None))  # absent/null: libritts
    assert load(tmp_path / "b", "test") == load(tmp_path / "a", "test")

    folder = tmp_path / "folder"
    make_folder_corpus(folder, SMALL)
    keys = {"train_folder": "train", "valid_folder": "valid", "test_folder": str(folder / "test")}
    prepare_data(
        _hparams(folder, tmp_path / "c", corpus_format="folder", **keys, speaker_pattern="^([^/]+)/")
    )
    assert {e["spk_id"] for e in load(tmp_path / "c", "train").values()} == {"spk01", "spk02"}

    list_file = make_list_corpus(tmp_path / "listed", splits=SMALL)
    prepare_data(_hparams(list_file, tmp_path / "d", corpus_format="list"))  # data_folder is the list
    prepare_data(_hparams(list_file.parent, tmp_path / "e", corpus_format="LIST", corpus_list="files.csv"))
    assert (
        load(tmp_path / "d", "valid") == load(tmp_path / "e", "valid")
        and len(load(tmp_path / "d", "valid")) == 2
    )
    options = json.loads((tmp_path / "e" / "prepare_options.json").read_text())
    assert options["data_folder"] == str(list_file.parent) and options["corpus_list"] == str(list_file)


def test_dispatch_errors_and_skip_prep(tmp_path):
    with pytest.raises(
        ValueError, match="corpus_format must be one of libritts, folder, list, librilight, not 'tsv'"
    ):
        prepare_data(_hparams(tmp_path, tmp_path / "out", corpus_format="tsv"))
    prepare_data(_hparams(tmp_path / "nowhere", tmp_path / "out", skip_prep=True, download=True))
    assert not (tmp_path / "out").exists() and not (tmp_path / "nowhere").exists()
    with pytest.raises(FileNotFoundError, match="No audio file"):
        prepare_data(_hparams(tmp_path, tmp_path / "out", corpus_format="folder"))


def test_download_true_prepares_a_served_corpus(tmp_path):
    archives = libritts_archives(["train-clean-100", "dev-clean", "test-clean"], seconds=1.2)
    data = tmp_path / "LibriTTS"
    with serve(archives) as server:
        keys = {"download": True, "download_url": server.url, "download_checksums": server.checksums}
        prepare_data(_hparams(data, tmp_path / "out", **keys))
        assert sorted(r["path"] for r in server.state.requests) == sorted(f"/{s}.tar.gz" for s in archives)
        server.state.requests.clear()
        prepare_data(_hparams(data, tmp_path / "out", **keys))  # all there: nothing fetched, nothing redone
        assert server.state.requests == []
    assert [len(load(tmp_path / "out", s)) for s in ("train", "valid", "test")] == [2, 2, 2]
    assert load(tmp_path / "out", "valid")["84_121123_000000_000000"]["label"] == "Sentence 0 of dev-clean."


def test_missing_data_folder_message_names_the_formats(tmp_path):
    command = recipe_command("train_quantizer.py", "bsq.yaml", tmp_path, tmp_path / "out")
    at = command.index("--data_folder")
    result = subprocess.run(
        command[:at] + command[at + 2 :],
        cwd=ROOT,
        env=recipe_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert "--data_folder is required" in result.stderr and "--corpus_format folder" in result.stderr


# --------------------------------------------------------------------------------------------------
# Both stages through their real command lines


@pytest.fixture(scope="module")
def folder_corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("own") / "corpus"
    make_folder_corpus(root, SMALL, bad=True)
    return root


@pytest.fixture(scope="module")
def list_file(tmp_path_factory):
    return make_list_corpus(tmp_path_factory.mktemp("own_list") / "corpus", "files.tsv", splits={"": (4, 3)})


@pytest.mark.slow
def test_quantizer_on_a_folder_corpus(folder_corpus, tmp_path):
    before = digest(folder_corpus)
    sets = ["--train_folder", "train", "--valid_folder", "valid", "--test_folder", "test"]
    args = ["--corpus_format", "folder", *sets, "--speaker_pattern", "^([^/]+)/", *RUN]
    run_recipe("train_quantizer.py", "bsq.yaml", folder_corpus, tmp_path, *args)
    assert digest(folder_corpus) == before
    report = json.loads((tmp_path / "save" / "prepare_report.json").read_text())
    # the bad-input sweep: empty, zero-frame, truncated, NaN-filled, huge-header and misnamed files
    reasons = {"empty_file", "not_audio", "truncated", "too_short", "no_frames", "non_finite"}
    assert {item["reason"] for item in report["skipped"]} == reasons
    assert report["options"]["speaker_pattern"] == "^([^/]+)/"
    assert len(load(tmp_path / "save", "train")) == 6
    log = (tmp_path / "train_log.txt").read_text()
    assert "epoch: 1" in log and "Epoch loaded: 1 - test loss" in log


@pytest.mark.slow
def test_decoder_on_a_folder_corpus_split_by_speaker(folder_corpus, tmp_path):
    args = ["--corpus_format", "folder", "--speaker_pattern", "([^/]+)/[^/]+$", "--speaker_disjoint", "True"]
    args += ["--valid_proportion", "0.2", "--test_proportion", "0.2", *RUN]
    run_recipe("train_decoder.py", "vocos.yaml", folder_corpus, tmp_path, *args)
    speakers = {
        s: {e["spk_id"] for e in load(tmp_path / "save", s).values()} for s in ("train", "valid", "test")
    }
    assert all(speakers.values()) and not (speakers["train"] & (speakers["valid"] | speakers["test"]))
    assert "epoch: 1" in (tmp_path / "train_log.txt").read_text()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("script", "yaml"), [("train_quantizer.py", "bsq.yaml"), ("train_decoder.py", "vocos.yaml")]
)
def test_both_stages_on_a_list_corpus(list_file, tmp_path, script, yaml):
    before = digest(list_file.parent)
    args = ["--corpus_format", "list", "--corpus_list", list_file.name, "--speaker_disjoint", "True", *RUN]
    run_recipe(
        script,
        yaml,
        list_file.parent,
        tmp_path,
        *args,
        "--valid_proportion",
        "0.25",
        "--test_proportion",
        "0.25",
    )
    sizes = [len(load(tmp_path / "save", s)) for s in ("train", "valid", "test")]
    assert sizes == [6, 3, 3]
    assert "epoch: 1" in (tmp_path / "train_log.txt").read_text()
    assert digest(list_file.parent) == before


@pytest.mark.slow
def test_download_true_through_the_command_line(tmp_path):
    archives = libritts_archives(["train-clean-100", "dev-clean", "test-clean"], seconds=1.2)
    data = tmp_path / "LibriTTS"
    with serve(archives) as server:
        checksums = "{" + ", ".join(f"{s}: '{sha}'" for s, sha in server.checksums.items()) + "}"
        args = ["--download", "True", "--download_url", server.url, "--download_checksums", checksums]
        run_recipe(
            "train_quantizer.py",
            "bsq.yaml",
            data,
            tmp_path / "out",
            *args,
            "--train_split",
            "[train-clean-100]",
            *RUN,
        )
        assert len(server.state.requests) == 3
    assert snapshot(data)  # the corpus is there, in the LibriTTS layout
    assert sorted(p.name for p in data.iterdir()) == [
        "SPEAKERS.txt",
        "dev-clean",
        "test-clean",
        "train-clean-100",
    ]
    assert len(load(tmp_path / "out" / "save", "train")) == 2
