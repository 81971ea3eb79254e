"""TorchScript for a model's submodules (``FocalCodec.jit``): script what scripts, keep the rest eager."""

import copy
import warnings
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["scripted_copy"]


def _script_child(parent: nn.Module, name: str) -> bool:
    """Replace ``parent.<name>`` by its ``torch.jit.script``; on failure keep it eager and warn."""
    child = getattr(parent, name)
    try:
        setattr(parent, name, torch.jit.script(child))
    except Exception as error:  # TorchScript raises several types (RuntimeError, NotSupportedError, ...)
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        warnings.warn(
            f"{type(child).__name__} {name!r} stays eager: it does not script ({first_line})", stacklevel=3
        )
        return False
    return True


def scripted_copy(
    model: nn.Module, children: Sequence[str], classes: Sequence[type[nn.Module]] | None = None
) -> nn.Module:
    """A deep copy of ``model`` with submodules replaced by their TorchScript versions (``model`` untouched).

    Arguments
    ---------
    model : the module to copy.
    children : names of the direct children to script when ``classes`` is None.
    classes : script every submodule of these classes instead (the outermost ones: a scripted module's own
        submodules are part of it).

    Returns
    -------
    The copy. A submodule that fails to script stays eager, with a warning.
    """
    model = copy.deepcopy(model)
    if classes is None:
        for name in children:
            _script_child(model, name)
        return model
    classes = tuple(classes)
    pending = [model]
    while pending:
        parent = pending.pop()
        for name, child in list(parent.named_children()):
            if isinstance(child, classes) and _script_child(parent, name):
                continue
            pending.append(child)
    return model
