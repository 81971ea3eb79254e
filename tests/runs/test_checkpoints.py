"""Picking a run's checkpoint (utils/runs/checkpoints.py): which one a tool takes (writing them:
tests/training/test_checkpointer.py)."""

import pytest
from speechbrain.utils.checkpoints import METAFNAME

from utils.runs import find_checkpoint


def test_which_checkpoint_is_taken(tmp_path):
    save = tmp_path / "run" / "save"
    metas = {"a": "loss: 0.5\nunixtime: 3\n", "b": "loss: -0.2\nunixtime: 1\n", "c": "unixtime: 9\n"}
    for name, meta in metas.items():
        folder = save / f"CKPT+{name}"
        folder.mkdir(parents=True)
        (folder / METAFNAME).write_text(meta + "end-of-epoch: true\n")
        for file in ("compressor.ckpt", "decompressor.ckpt"):
            (folder / file).write_bytes(b"")
    (save / "CKPT+pending").mkdir()  # killed while saving: no CKPT.yaml
    (save / "CKPT+partial").mkdir()  # another stage's checkpoint: not every file
    (save / "CKPT+partial" / METAFNAME).write_text("loss: -9.0\nunixtime: 99\n")
    files = ["compressor.ckpt", "decompressor.ckpt"]
    assert find_checkpoint(tmp_path / "run", files, min_key="loss").name == "CKPT+b"  # lowest loss
    assert find_checkpoint(save, files, max_key="loss").name == "CKPT+a"  # highest
    assert find_checkpoint(save, files, "latest", min_key="loss").name == "CKPT+c"
    assert find_checkpoint(save, files).name == "CKPT+c"  # no key: the most recent
    assert find_checkpoint(save / "CKPT+a", files).name == "CKPT+a"  # given explicitly
    assert find_checkpoint(save / "CKPT+a" / "compressor.ckpt", files).name == "CKPT+a"  # a file in it
    with pytest.raises(FileNotFoundError, match="No complete checkpoint"):
        find_checkpoint(tmp_path, files)
    with pytest.raises(FileNotFoundError, match="has a 'epoch'"):
        find_checkpoint(save, files, max_key="epoch")
    with pytest.raises(ValueError, match="which must be"):
        find_checkpoint(save, files, "first")
