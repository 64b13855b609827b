"""Name -> object registries that configs address by name (models, experiments, later augment ops)."""

from __future__ import annotations

from typing import Callable, TypeVar

T = TypeVar("T")


class Registry(dict):
    """A dict filled by the `register(name)` decorator; `lookup` names the config field on a miss."""

    def __init__(self, kind: str, field: str):
        super().__init__()
        self.kind, self.field = kind, field

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self[name] = obj
            return obj
        return decorator

    def lookup(self, name: str):
        if name not in self:
            from jaxlab.config import ConfigError  # config imports registries lazily: no cycle
            raise ConfigError(self.field, f"unknown {self.kind} {name!r}; choose one of {sorted(self)}")
        return self[name]
