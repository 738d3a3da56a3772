"""Named random streams, so every random choice is a pure function of (seed, purpose, key).

Nothing in weightzoo reads global random state. Each consumer asks for its own generator from the
run's seed, a stream naming its purpose, and a key (a pattern's index, an example's index, ...), so
adding a consumer or changing how many workers run never shifts anyone else's numbers.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class Stream(IntEnum):
    POOLS = 1
    SIGNATURE = 2
    BENCHMARK = 3
    EXAMPLE = 4
    PROFILE = 5  # an example's held-out members of the patterns it was not trained on


def rng_for(seed: int, stream: Stream, *key: int) -> np.random.Generator:
    """An independent generator for (seed, stream, key...)."""
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(int(stream), *map(int, key))))
