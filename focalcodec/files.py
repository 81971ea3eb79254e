"""Writing files so that an interrupted program never leaves a truncated one behind."""

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["atomic_write", "atomic_write_json"]


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """``write(tmp)`` into a hidden temporary file beside ``path``, then rename it to ``path``.

    The rename is atomic on one filesystem: readers see the old file or the complete new one. If ``write``
    fails the temporary file is removed; a crash leaves at most a ``.<name>.partial`` file, overwritten by
    the next try. Parent folders are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    try:
        write(partial)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return path


def atomic_write_json(path: str | os.PathLike, data: Any, indent: int | None = None) -> Path:
    """``data`` as UTF-8 JSON in ``path``, flushed to disk and renamed into place (:func:`atomic_write`)."""

    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as stream:
            json.dump(data, stream, indent=indent, ensure_ascii=False)
            stream.write("\n")
            stream.flush()
            os.fsync(stream.fileno())

    return atomic_write(path, write)


def format_bytes(size: float) -> str:
    """``size`` bytes as text with a decimal unit, e.g. ``"512 B"``, ``"12.3 GB"``."""
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"
