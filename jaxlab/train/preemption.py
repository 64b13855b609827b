"""Preemption (SIGTERM from a scheduler, `scancel`, a spot VM's notice), handled in one place.

`watch()` turns SIGTERM into a flag for the duration of a `with` block; nested blocks share the outermost
block's flag, so a grid of runs and the trainer inside it see the same signal: the trainer checkpoints and
returns, the grid stops before the next run. `Preempted` is what a runner raises to unwind to its caller.
"""

from __future__ import annotations

import contextlib
import signal
from typing import Iterator


class Preempted(RuntimeError):
    """SIGTERM stopped the work; everything finished so far is on disk: rerun the same command to continue."""


_active: list[dict[str, bool]] = []


@contextlib.contextmanager
def watch() -> Iterator[dict[str, bool]]:
    """Yield {"stop": bool}, set to True by SIGTERM while the block runs (outside the main thread: never set)."""
    if _active:
        yield _active[0]
        return
    flag = {"stop": False}
    try:
        previous = signal.signal(signal.SIGTERM, lambda *_: flag.update(stop=True))
    except ValueError:  # not the main thread: leave signals alone
        yield flag
        return
    _active.append(flag)
    try:
        yield flag
    finally:
        _active.pop()
        signal.signal(signal.SIGTERM, previous)
