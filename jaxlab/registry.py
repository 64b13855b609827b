"""Name -> object registries that configs address by name: data sources, models, augmentation ops, losses,
DReg penalties and experiments all use this one class.

Fill a registry with the `register(name)` decorator (or `register(name, obj)`; registering a name again replaces
its entry with a warning, as when a notebook cell is run twice); `lookup` raises a ConfigError
naming the config field and the choices. A registry built with `package=` also finds `<package>.<name>` modules
on lookup (importlib, the way big_vision finds its models): a new experiment is one file, no registration.
"""

from __future__ import annotations

import importlib
import pkgutil
import warnings
from typing import TypeVar

from jaxlab.errors import ConfigError

T = TypeVar("T")


class Registry(dict):
    """A dict of named entries; `lookup(name)` names `field` and the choices on a miss."""

    def __init__(self, kind: str, field: str, *, package: str | None = None, exclude: tuple[str, ...] = ()):
        """`package`: also find entries as its modules (all but `exclude` and names starting with "_")."""
        super().__init__()
        self.kind, self.field, self.package, self.exclude = kind, field, package, exclude

    def register(self, name: str, obj=None):
        """`@registry.register("name")` on a function or class, or `registry.register("name", obj)`."""
        def decorator(entry: T) -> T:
            if name in self and self[name] is not entry:  # a notebook cell run again: the new one replaces it
                warnings.warn(f"{self.kind} {name!r} was already registered; the new entry replaces it",
                              RuntimeWarning, stacklevel=3)
            self[name] = entry
            return entry
        return decorator if obj is None else decorator(obj)

    def names(self) -> list[str]:
        """Every name `lookup` accepts: the registered entries and, with a package, its modules."""
        found = set(self)
        if self.package is not None:
            path = importlib.import_module(self.package).__path__
            found |= {m.name for m in pkgutil.iter_modules(path)
                      if not m.name.startswith("_") and m.name not in self.exclude}
        return sorted(found)

    def lookup(self, name: str):
        if name not in self and self.package is not None and name in self.names():
            self[name] = importlib.import_module(f"{self.package}.{name}")
        if name not in self:
            raise ConfigError(self.field, f"unknown {self.kind} {name!r}; choose one of {self.names()}")
        return self[name]

