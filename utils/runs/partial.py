"""Loading a pretrained part's weights into a recipe module by tensor name and shape, and the record of what
a stage took from ``--init_from`` (``init_from.json`` in its run folder, docs/run-folder.md).

Strictly (the default), every tensor of the module must be in the part with its shape and the part must
have no other, except where a stage allows a named difference (the decompressor's refiner, added by
FocalCodec-Stream stage 5 and absent from stage 4). Partially (``init_from_partial: True``, fine-tuning into
another architecture), every tensor whose name and shape match is loaded and every other one is listed:
``new`` (only in the module: it keeps its initialisation), ``dropped`` (only in the part) and ``reshaped``
(in both, other shapes: the module's initialisation is kept).
"""

import logging
import os
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from focalcodec.files import atomic_write_json

__all__ = ["INIT_FROM_FILE", "InitRecord", "LoadReport", "load_by_name", "write_init_record"]

logger = logging.getLogger(__name__)

INIT_FROM_FILE = "init_from.json"


class LoadReport(NamedTuple):
    """What one module took of a pretrained part (tensor names are the module's state-dict keys)."""

    module: str  # its YAML key, e.g. compressor
    part: str  # the pretrained part it was loaded from
    loaded: int  # tensors loaded
    new: list[str]  # only in the module: kept as initialised
    dropped: list[str]  # only in the part: not used
    reshaped: dict[str, tuple[list[int], list[int]]]  # in both: (part's shape, module's shape), module's kept
    loaded_elements: int  # elements of the loaded tensors
    elements: int  # elements of the module's whole state dict


def load_by_name(
    module: nn.Module, state: dict[str, torch.Tensor], name: str, part: str, partial: bool, allowed: str = ""
) -> LoadReport:
    """Load ``state`` (a pretrained part's weights) into ``module`` (its YAML key ``name``).

    Arguments
    ---------
    partial : load every tensor whose name and shape match, keep the module's other tensors; else every
        tensor must match (a mismatch raises ``RuntimeError`` listing every one, as ``load_state_dict``).
    allowed : a key prefix (e.g. ``refiner.``) whose tensors may be new or dropped even when strict.
    """
    own = module.state_dict()
    matching = [key for key in own if key in state and own[key].shape == state[key].shape]
    new = [key for key in own if key not in state]
    dropped = [key for key in state if key not in own]
    reshaped = {
        key: (list(state[key].shape), list(own[key].shape))
        for key in own
        if key in state and own[key].shape != state[key].shape
    }
    unexplained = reshaped or [key for key in new + dropped if not (allowed and key.startswith(allowed))]
    if not partial and unexplained:
        module.load_state_dict(state, strict=True)  # raises, listing every mismatch
    module.load_state_dict({**own, **{key: state[key] for key in matching}}, strict=True)
    return LoadReport(
        name,
        part,
        len(matching),
        new,
        dropped,
        reshaped,
        sum(own[key].numel() for key in matching),
        sum(tensor.numel() for tensor in own.values()),
    )


class InitRecord(NamedTuple):
    """What a stage took from its ``init_from`` source: one report per trained module."""

    source: str
    partial: bool
    min_loaded: float  # the least loaded share accepted with ``partial``
    init_from_encoder: str | None  # what the source's encoder initialised (the YAML key)
    settings: list[str]  # YAML settings that differ from the source's (accepted with ``partial``)
    reports: list[LoadReport]

    @property
    def loaded_share(self) -> float:
        """Share of the trained modules' state-dict elements that were loaded from the source."""
        total = sum(report.elements for report in self.reports)
        return sum(report.loaded_elements for report in self.reports) / total if total else 1.0

    def summary(self) -> str:
        """The log lines: the share loaded and every tensor that was not."""
        lines = [f"init_from {self.source}: {100 * self.loaded_share:.1f} % of the trained weights loaded"]
        lines += [f"  setting changed: {setting}" for setting in self.settings]
        for report in self.reports:
            lines.append(f"  {report.module} <- {report.part}: {report.loaded} tensors loaded")
            lines += [f"    new (initialised): {key}" for key in report.new]
            lines += [f"    dropped: {key}" for key in report.dropped]
            lines += [f"    reshaped {old} -> {shape} (initialised): {key}"
                      for key, (old, shape) in report.reshaped.items()]  # fmt: skip
        return "\n".join(lines)

    def as_json(self) -> dict:
        modules = {
            report.module: {
                "part": report.part,
                "loaded": report.loaded,
                "new": report.new,
                "dropped": report.dropped,
                "reshaped": {
                    key: {"pretrained": old, "module": shape} for key, (old, shape) in report.reshaped.items()
                },
                "loaded_share": report.loaded_elements / report.elements if report.elements else 1.0,
            }
            for report in self.reports
        }
        return {
            "source": self.source,
            "partial": self.partial,
            "min_loaded": self.min_loaded,
            "loaded_share": self.loaded_share,
            "init_from_encoder": self.init_from_encoder,
            "settings": self.settings,
            "modules": modules,
        }


def write_init_record(folder: str | os.PathLike, record: InitRecord) -> Path:
    """Write ``init_from.json`` into a run's output folder."""
    return atomic_write_json(Path(folder) / INIT_FROM_FILE, record.as_json(), indent=2)
