"""An exponential moving average (EMA) of a stage's trained weights (``ema_decay``; off by default, as the
original: docs/deviations.md #34).

PyTorch's own implementation, ``torch.optim.swa_utils.AveragedModel`` with ``get_ema_multi_avg_fn``: after
every optimizer step, ``ema = decay * ema + (1 - decay) * weights`` (one fused ``lerp`` per device and dtype),
the parameters only (buffers are the module's own, e.g. the quantizer's constant mask). The average starts
at the weights the run starts from (after ``init_from``, or the resumed ones when the checkpoint has no
average yet). It is checkpointed as ``ema_<module>.ckpt``, a state dict that loads into the module itself,
which the run folder names (``parts.json``: ``ema``) so that export and the tools after it take it.
"""

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import torch
from speechbrain.utils.checkpoints import mark_as_loader, mark_as_saver, register_checkpoint_hooks
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from focalcodec.checkpoint import load_state_dict_file

__all__ = ["WeightAverage", "ema_name"]

logger = logging.getLogger(__name__)


def ema_name(key: str) -> str:
    """The recoverable (checkpoint file stem) of the average of the module ``key`` of the YAML."""
    return f"ema_{key}"


@register_checkpoint_hooks
class WeightAverage:
    """The EMA of one module's parameters.

    Arguments
    ---------
    module : the trained module (its parameters are read after each step; the average is a copy).
    decay : the weight of the past, in [0, 1).
    """

    def __init__(self, module: nn.Module, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {decay}")
        self.module = module
        self.average = AveragedModel(module, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=False)
        self.average.requires_grad_(False)
        self._saved: list[torch.Tensor] | None = None
        self.loaded = False

    @property
    def started(self) -> bool:
        return bool(self.average.n_averaged > 0)

    def update(self) -> None:
        """Average in the module's current parameters (the first call copies them)."""
        if any(True for _ in self.module.parameters()):
            self.average.update_parameters(self.module)
        else:  # e.g. the quantizer: nothing to average (AveragedModel cannot group an empty list)
            self.average.n_averaged += 1

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The module's state dict with the averaged parameters: it loads into the module strictly."""
        averaged = dict(self.average.module.named_parameters())
        return {key: averaged.get(key, value).detach() for key, value in self.module.state_dict().items()}

    @mark_as_saver
    def save(self, path: Path) -> None:
        torch.save(self.state_dict(), path)

    @mark_as_loader
    def load(self, path: Path, end_of_epoch: bool) -> None:
        state = load_state_dict_file(path)
        with torch.no_grad():
            for name, parameter in self.average.module.named_parameters():
                parameter.copy_(state[name])
        self.average.n_averaged.fill_(1)
        self.loaded = True

    @contextlib.contextmanager
    def swapped_in(self) -> Iterator[None]:
        """The module holds the averaged parameters inside the block, its own again after it."""
        self.swap_in()
        try:
            yield
        finally:
            self.swap_out()

    @torch.no_grad()
    def swap_in(self) -> None:
        if self._saved is not None or not self.started:
            return
        parameters = list(self.module.parameters())
        self._saved = [parameter.detach().clone() for parameter in parameters]
        for parameter, averaged in zip(parameters, self.average.module.parameters(), strict=True):
            parameter.copy_(averaged)

    @torch.no_grad()
    def swap_out(self) -> None:
        if self._saved is None:
            return
        for parameter, saved in zip(self.module.parameters(), self._saved, strict=True):
            parameter.copy_(saved)
        self._saved = None
