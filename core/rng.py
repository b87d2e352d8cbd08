"""Seeds for random operators. A seeded op (DeviceOption.random_seed) always draws the same
stream; other random ops take seeds from one process-wide sequence that
``kaffa.set_random_seed`` restarts, so a whole program becomes reproducible with one call."""

from __future__ import annotations

import itertools
import threading

import numpy as np

_lock = threading.Lock()
_counter = itertools.count()
_base: int = int(np.random.SeedSequence().entropy % 2**63)


def set_random_seed(seed: int) -> None:
    """Make every unseeded random op created from now on reproducible."""
    global _counter, _base
    with _lock:
        _base = int(seed)
        _counter = itertools.count()


def next_seed() -> int:
    with _lock:
        n = next(_counter)
    return int(np.random.SeedSequence([_base, n]).generate_state(1, np.uint64)[0] % 2**63)
