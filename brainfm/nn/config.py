"""``Configurable``: modules that remember their constructor arguments.

A checkpoint stores ``{"class_path": ..., "init_args": module.get_config()}`` instead of a
pickled object, so it loads with ``torch.load(weights_only=True)`` and rebuilds the module
with :meth:`Configurable.from_config` (litgpt's ``Config``/``from_checkpoint`` idea).
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

from torch import nn

__all__ = ["Configurable", "class_path_of"]


def class_path_of(obj: object) -> str:
    """``"module.Class"`` of an object's class."""
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


class Configurable(nn.Module):
    """An :class:`torch.nn.Module` whose constructor arguments are recorded.

    Subclass constructors must take plain values (numbers, strings, lists, dicts, None):
    :meth:`get_config` returns them and :meth:`from_config` rebuilds an untrained module.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None:
            return
        signature = inspect.signature(init)

        @functools.wraps(init)
        def recording_init(self: Configurable, *args: Any, **kw: Any) -> None:
            init(self, *args, **kw)
            if type(self) is cls:  # the outermost constructor records the arguments
                bound = signature.bind(self, *args, **kw)
                bound.apply_defaults()
                config = dict(bound.arguments)
                config.pop("self")
                self._config = config

        cls.__init__ = recording_init  # type: ignore[method-assign]

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments, so that ``type(self).from_config(get_config())`` rebuilds it.

        Returns
        -------
        config : dict
            Argument name -> value.
        """
        return dict(getattr(self, "_config", {}))

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Configurable:
        """Build a module from :meth:`get_config` output.

        Parameters
        ----------
        config : dict
            Constructor arguments.

        Returns
        -------
        module : Configurable
            A new, untrained instance.
        """
        return cls(**config)
