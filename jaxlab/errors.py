"""The errors a user can fix: a bad config value, bad data or a diverged run, each message naming what is wrong and
the fix (`python -m jaxlab.main` prints them as one line and exits with status 2).

The bottom layer of jaxlab: every other module may import it, it imports nothing of jaxlab.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A config value is invalid; the message names the field (`config.<field>: ...`) and the fix."""

    def __init__(self, field: str, message: str):
        super().__init__(f"config.{field}: {message}")
        self.field, self.message = field, message


class DataError(ValueError):
    """A dataset is missing, corrupt or misconfigured; the message names the path and the fix."""


class WorkdirError(RuntimeError):
    """The workdir is in use by another process, or holds a run trained with another config."""


class NonFiniteError(FloatingPointError):
    """Training produced a NaN/inf loss, gradient or parameter; the last checkpoint on disk is the last good state."""


def require(condition: bool, field: str, message: str) -> None:
    """Raise ConfigError(field, message) unless `condition` (the one helper of every config check)."""
    if not condition:
        raise ConfigError(field, message)
