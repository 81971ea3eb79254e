"""Manifest entries, SpeechBrain's brace escaping, atomic writing and the idempotence check.

A manifest is SpeechBrain JSON, ``{uttid: entry}``, with one entry per utterance::

    {"uttid": "84_121123_000007_000001", "wav": "/abs/path/84_121123_000007_000001.wav",
     "duration": 5.87 (seconds), "sample_rate": 24000 (the file's own), "channels": 1,
     "spk_id": "84" ("" when unknown), "label": "normalized text" ("" when none),
     "segment": true ("train" in the manifest's file name)}

An utterance cut from a longer file (Libri-Light, :mod:`utils.corpus.librilight`) also has
``"segments": [[start, stop], ...]``, the sample ranges of ``wav`` (at the file's own rate) it is made of,
joined in order (:func:`utils.corpus.audio.load_utterance`); its ``duration`` is theirs.

String values have ``{``/``}`` doubled, because SpeechBrain's ``DynamicItemDataset.from_json`` formats them
with ``{data_root}``: a path containing braces then loads unchanged.

Idempotence: the options that shape the manifests are stored in ``prepare_options.json`` next to the train
manifest. A run with the same options and all manifests present does nothing; any change redoes the
preparation. The options file is deleted before a preparation starts and written after the manifests, so
an interrupted run is always redone.
"""

import json
import logging
import os
from dataclasses import asdict, dataclass

from focalcodec.files import atomic_write_json

__all__ = [
    "OPTIONS_FILE",
    "REPORT_FILE",
    "ManifestEntry",
    "forget_options",
    "is_prepared",
    "manifest_json",
    "read_manifest",
    "sb_escape",
    "write_outputs",
]

logger = logging.getLogger(__name__)

OPTIONS_FILE = "prepare_options.json"
REPORT_FILE = "prepare_report.json"


@dataclass
class ManifestEntry:
    """One utterance of a manifest (before escaping): see the module docstring."""

    uttid: str
    wav: str
    duration: float
    sample_rate: int
    channels: int
    spk_id: str = ""
    label: str = ""
    segments: list[list[int]] | None = None  # sample ranges of ``wav`` (a cut utterance), None: the file


def sb_escape(text: str) -> str:
    """SpeechBrain's ``from_json`` runs ``str.format_map`` on every string value (for ``{data_root}``):
    double the braces so that a path containing ``{`` or ``}`` comes out unchanged."""
    return text.replace("{", "{{").replace("}", "}}")


def manifest_json(entries: list[ManifestEntry], json_file: str) -> dict:
    """SpeechBrain JSON: ``{uttid: entry}``; ``segment`` is whether ``"train"`` is in the file name."""
    segment = "train" in os.path.basename(json_file)
    manifest = {}
    for entry in entries:
        fields = asdict(entry)
        if entry.segments is None:  # a whole file: the entry has no such key
            del fields["segments"]
        escaped = {key: sb_escape(fields[key]) for key in ("uttid", "wav", "spk_id", "label")}
        manifest[entry.uttid] = {**fields, **escaped, "segment": segment}
    return manifest


def read_manifest(path: str | os.PathLike) -> list[ManifestEntry]:
    """The entries of a manifest written by :func:`manifest_json` (braces unescaped), in file order."""
    with open(path, encoding="utf-8") as stream:
        data = json.load(stream)

    def text(value) -> str:
        return str(value).replace("{{", "{").replace("}}", "}")

    return [
        ManifestEntry(
            text(uttid),
            text(entry["wav"]),
            float(entry["duration"]),
            int(entry["sample_rate"]),
            int(entry["channels"]),
            text(entry.get("spk_id", "")),
            text(entry.get("label", "")),
            entry.get("segments"),
        )
        for uttid, entry in data.items()
    ]


def _read_json(path: str):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def is_prepared(options_path: str, options: dict, manifests: dict[str, str]) -> bool:
    """Whether ``options_path`` holds exactly ``options`` and every manifest exists."""
    return _read_json(options_path) == options and all(os.path.isfile(p) for p in manifests.values())


def forget_options(options_path: str) -> None:
    """Delete the options file before a preparation: an interrupted run can never pass for a finished one."""
    if os.path.exists(options_path):
        os.unlink(options_path)


def write_outputs(
    manifests: dict[str, str], outputs: dict[str, dict], options_path: str, options: dict
) -> None:
    """Write every manifest atomically (indent 2, as SpeechBrain), then the options file, last."""
    for stage, path in manifests.items():
        atomic_write_json(path, outputs[stage], indent=2)
    atomic_write_json(options_path, options, indent=2)
