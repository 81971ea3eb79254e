"""Checkpoint locations (focalcodec/hub.py): folders, config files, upstream's path stems and Hub ids."""

import pytest

from focalcodec.hub import Location, locate, looks_like_hub_id, weight_file


def test_locations(tmp_path):
    folder = tmp_path / "codec"
    folder.mkdir()
    for name in ("config.json", "model.json", "model.safetensors"):
        (folder / name).write_text("{}")
    assert locate(folder) == Location(folder, "", "config.json", ("model.safetensors", "model.pt"))
    assert locate(folder / "model.json") == Location(folder, "", "model.json")
    # upstream's local convention: a path stem names <stem>.json and <stem>.safetensors
    assert locate(folder / "model") == Location(folder, "", "model.json", ("model.safetensors", "model.pt"))
    assert locate("lucadellalib/focalcodec_50hz") == Location(None, "lucadellalib/focalcodec_50hz")
    assert locate("user/repo/other.json") == Location(None, "user/repo", "other.json")
    assert locate(folder).fetch(["model.pt", "model.safetensors"]) == folder / "model.safetensors"
    with pytest.raises(FileNotFoundError, match=r"holds none of model\.pt"):
        locate(folder).fetch(["model.pt"])
    assert weight_file(folder) == folder / "model.safetensors"
    assert weight_file(folder / "model.json") == folder / "model.json"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        weight_file(tmp_path / "missing.pt")


@pytest.mark.parametrize(
    ("location", "hub"),
    [
        ("lucadellalib/focalcodec_50hz", True),
        ("repo", True),
        ("user/repo/config.json", True),
        ("./codec", False),
        ("/abs/codec", False),
        ("~/codec", False),
        ("a/b/c", False),
        ("codec/", False),
        ("a\\b", False),
    ],
)
def test_hub_ids_and_paths(location, hub):
    assert looks_like_hub_id(location) is hub


def test_an_unreachable_hub_is_a_clear_error(monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(OSError, match=r"could not be fetched(.|\n)*pass that folder instead"):
        Location(None, "user/absent").fetch(["config.json"], cache_dir=tmp_path)
