"""Time to build all 15 pattern pools, and how uniform the pools are.

Run: python benchmarks/pool_build_time.py   (or `make bench`)

For vocab 7 / length 7 it also compares each pool's first-token distribution with that of all the
pattern's members (enumerated), as total variation distance: a prefix-of-enumeration pool would be
far off (e.g. sorted_ascending members start with A 54% of the time, palindromes 1/7).
"""

from __future__ import annotations

import itertools
import time

import numpy as np

from weightzoo.data.patterns import PATTERN_NAMES, PATTERNS
from weightzoo.data.pools import build_pools
from weightzoo.data.space import SequenceSpace

POOL_SIZE = 1000
REPEATS = 3


def build_time(space: SequenceSpace, pool_size: int) -> tuple[float, dict[str, np.ndarray]]:
    times, pools = [], {}
    for seed in range(REPEATS):
        start = time.perf_counter()
        pools = build_pools(space, [n for n in PATTERN_NAMES if PATTERNS[n].count(space)], pool_size, seed)
        times.append(time.perf_counter() - start)
    return float(np.median(times)), pools


def first_token_tvd(space: SequenceSpace, pools: dict[str, np.ndarray]) -> dict[str, float]:
    everything = np.array(list(itertools.product(range(space.vocab_size), repeat=space.length)))
    distances = {}
    for name, pool in pools.items():
        members = everything[PATTERNS[name].holds(everything, space)]
        exact = np.bincount(members[:, 0], minlength=space.vocab_size) / len(members)
        got = np.bincount(pool[:, 0], minlength=space.vocab_size) / len(pool)
        distances[name] = 0.5 * float(np.abs(exact - got).sum())
    return distances


def main() -> None:
    for vocab, length in [(7, 7), (26, 20)]:
        space = SequenceSpace(vocab, length)
        seconds, pools = build_time(space, POOL_SIZE)
        rows = sum(len(p) for p in pools.values())
        label = f"vocab {vocab:2d} length {length:2d}"
        print(f"{label}: built {len(pools)} pools ({rows} sequences) in {seconds:.3f} s")
        if vocab == 7:
            tvd = first_token_tvd(space, pools)
            worst = max(tvd, key=tvd.get)
            print(
                f"  first-token total variation vs all members: max {tvd[worst]:.3f} ({worst}), "
                f"mean {np.mean(list(tvd.values())):.3f}"
            )


if __name__ == "__main__":
    main()
