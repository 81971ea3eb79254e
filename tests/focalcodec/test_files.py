"""Atomic writes (focalcodec/files.py): readers see the old file or the complete new one, never half."""

import json

import pytest

from focalcodec.files import atomic_write, atomic_write_json


def test_a_failing_write_keeps_the_old_file_and_leaves_no_partial(tmp_path):
    target = tmp_path / "a" / "data.json"
    atomic_write_json(target, {"é": [1, 2]}, indent=2)
    assert json.loads(target.read_text(encoding="utf-8")) == {"é": [1, 2]}
    assert "é" in target.read_text(encoding="utf-8")  # UTF-8, not escaped

    def dies(tmp):
        tmp.write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, dies)
    assert json.loads(target.read_text()) == {"é": [1, 2]}
    assert [path.name for path in target.parent.iterdir()] == ["data.json"]
    assert atomic_write(target, lambda tmp: tmp.write_text("new")) == target and target.read_text() == "new"
