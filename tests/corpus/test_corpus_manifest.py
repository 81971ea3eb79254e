"""utils/corpus/manifest.py: manifest entries, SpeechBrain's brace escaping, the options file and atomic
writing."""

import json
import os

from speechbrain.dataio.dataset import DynamicItemDataset

from utils.corpus import manifest
from utils.corpus.manifest import (
    OPTIONS_FILE,
    ManifestEntry,
    forget_options,
    is_prepared,
    manifest_json,
    sb_escape,
    write_outputs,
)


def test_entry_json_and_segment():
    entry = ManifestEntry("spk__a", "/c/spk/a.flac", 1.5, 44100, 2, "spk", "hello")
    keys = ["uttid", "wav", "duration", "sample_rate", "channels", "spk_id", "label", "segment"]
    train = manifest_json([entry], "/o/train.json")
    assert list(train) == ["spk__a"] and list(train["spk__a"]) == keys
    assert train["spk__a"]["segment"] is True
    assert manifest_json([entry], "/o/valid.json")["spk__a"]["segment"] is False
    assert ManifestEntry("u", "/u.wav", 1.0, 16000, 1).spk_id == ""  # unknown speaker, no label


def test_braces_survive_speechbrain(tmp_path):
    assert sb_escape("a{b}c") == "a{{b}}c"
    entry = ManifestEntry("{id}", "/my {corpus}/x.wav", 1.0, 16000, 1, "{spk}", "say {this}")
    path = tmp_path / "train.json"
    path.write_text(json.dumps(manifest_json([entry], str(path))))
    loaded = DynamicItemDataset.from_json(str(path), replacements={"data_root": "x"}).data["{id}"]
    assert (loaded["wav"], loaded["spk_id"], loaded["label"]) == ("/my {corpus}/x.wav", "{spk}", "say {this}")


def test_idempotence_check(tmp_path):
    options_path = str(tmp_path / OPTIONS_FILE)
    manifests = {"train": str(tmp_path / "train.json"), "valid": str(tmp_path / "valid.json")}
    options = {"seed": 1, "manifests": manifests}
    assert not is_prepared(options_path, options, manifests)
    write_outputs(manifests, {"train": {"a": {}}, "valid": {}}, options_path, options)
    assert is_prepared(options_path, options, manifests)
    assert not is_prepared(options_path, {**options, "seed": 2}, manifests)  # a changed option
    os.unlink(manifests["valid"])
    assert not is_prepared(options_path, options, manifests)  # a manifest deleted by hand
    (tmp_path / OPTIONS_FILE).write_text("{not json")
    assert not is_prepared(options_path, options, manifests)
    forget_options(options_path)
    assert not (tmp_path / OPTIONS_FILE).exists()
    forget_options(options_path)  # nothing to delete: fine


def test_options_file_is_written_last_and_atomically(tmp_path, monkeypatch):
    written = []
    real = manifest.atomic_write_json

    def record(path, data, indent=None):
        written.append(os.path.basename(path))
        return real(path, data, indent)

    monkeypatch.setattr(manifest, "atomic_write_json", record)
    manifests = {stage: str(tmp_path / f"{stage}.json") for stage in ("train", "valid", "test")}
    write_outputs(manifests, {key: {} for key in manifests}, str(tmp_path / OPTIONS_FILE), {})
    assert written == ["train.json", "valid.json", "test.json", OPTIONS_FILE]
    assert (tmp_path / "train.json").read_text() == "{}\n"
    assert not list(tmp_path.glob(".*.partial"))
