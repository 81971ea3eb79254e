"""Constructor configs: every part of the codec remembers the keyword arguments it was built with.

``module.config`` is the dict a ``FocalCodec`` checkpoint stores as ``<part>_config`` (``config.json``):
``type(module)(**module.config)`` builds the same architecture. The training recipe writes it into its run
folders, so later tools rebuild a trained part without reading the recipe's YAML.
"""

import copy
import functools
import inspect
from typing import Any, TypeVar

__all__ = ["remembers_config"]

ModuleType = TypeVar("ModuleType", bound=type)

_VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


def remembers_config(cls: ModuleType) -> ModuleType:
    """Class decorator: instances get ``config``, their constructor's arguments by name (defaults filled in,
    ``**kwargs`` entries such as deprecated aliases kept as given)."""
    init = cls.__init__
    signature = inspect.signature(init)

    @functools.wraps(init)
    def init_and_remember(self, *args: Any, **kwargs: Any) -> None:
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        config: dict[str, Any] = {}
        for name, value in list(bound.arguments.items())[1:]:  # without self
            kind = signature.parameters[name].kind
            if kind == inspect.Parameter.VAR_KEYWORD:
                config.update(value)
            elif kind not in _VARIADIC:
                config[name] = list(value) if isinstance(value, tuple) else value
        init(self, *args, **kwargs)
        self.config = copy.deepcopy(config)

    cls.__init__ = init_and_remember
    return cls
