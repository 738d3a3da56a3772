"""Pattern pools: for each pattern, a uniform random set of distinct members.

A pool is the first `pool_size` distinct sequences of an i.i.d. stream of uniform members, which is
a uniformly random subset of the members (in random order); when a pattern has no more members
than that, the pool is all of them. Nothing is enumerated, so building pools costs the same at
vocab 26 / length 20 as at vocab 7 / length 7.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable

import numpy as np

from weightzoo.data.patterns import PATTERN_NAMES, PATTERNS
from weightzoo.data.space import SequenceSpace
from weightzoo.seeding import Stream, rng_for

Draw = Callable[[int], np.ndarray]


def row_key(row: np.ndarray) -> bytes:
    """A hashable key for one sequence (tokens fit in a byte: vocab <= 26)."""
    return np.asarray(row, dtype=np.uint8).tobytes()


def row_keys(rows: np.ndarray) -> list[bytes]:
    """`row_key` of every row of a [n, length] array, computed in one pass."""
    rows = np.ascontiguousarray(np.asarray(rows, dtype=np.uint8))
    if rows.size == 0:
        return []
    return rows.view(f"V{rows.shape[1]}").ravel().tolist()


CODE_WIDTH = 12  # rows this short are told apart by an int64 code (5 bits a token: vocab <= 26 < 32)


def row_ids(rows: np.ndarray, width: int) -> np.ndarray:
    """One comparable value per row, equal exactly for equal rows: an int64 code for rows of up to
    CODE_WIDTH tokens, their bytes (a void scalar) for longer ones."""
    rows = np.asarray(rows).reshape(-1, width)
    if width <= CODE_WIDTH:
        return (rows.astype(np.int64) << (5 * np.arange(width, dtype=np.int64))).sum(axis=1)
    return np.ascontiguousarray(rows.astype(np.uint8)).view(f"V{width}").ravel()


def isin_sorted(values: np.ndarray, sorted_ids: np.ndarray) -> np.ndarray:
    """Whether each of `values` is in `sorted_ids` (sorted, from `row_ids`): a binary search for int
    codes, numpy's set test for bytes."""
    if values.dtype.kind != "i" or len(sorted_ids) == 0:
        return np.isin(values, sorted_ids) if len(sorted_ids) else np.zeros(len(values), dtype=bool)
    at = np.searchsorted(sorted_ids, values).clip(max=len(sorted_ids) - 1)
    return sorted_ids[at] == values


def first_distinct(
    draw: Draw,
    target: int,
    width: int,
    available: int | None = None,
    exclude: Iterable[bytes] = (),
    max_rounds: int = 200,
) -> np.ndarray:
    """The first `target` distinct rows of an i.i.d. stream, skipping `exclude` (row keys).

    `available` is the number of distinct rows the stream can produce outside `exclude` when known;
    the result then stops there instead of searching forever. Without it, the search gives up after
    `max_rounds` batches that add nothing. A batch is screened as a whole, with array set operations:
    its rows seen before, or repeating an earlier row of the batch, are dropped, and the rest kept in
    stream order.
    """
    target = target if available is None else min(target, available)
    exclude = b"".join(exclude)
    excluded = np.frombuffer(exclude, np.uint8) if exclude else np.empty((0, width), dtype=np.uint8)
    seen = np.unique(row_ids(excluded, width))  # sorted, as isin_sorted needs
    kept: list[np.ndarray] = []
    count, barren = 0, 0
    while count < target:
        batch = np.asarray(draw(max(64, 2 * (target - count)))).reshape(-1, width)
        before = count
        if len(batch):
            ids = row_ids(batch, width)
            _, first = np.unique(ids, return_index=True)  # each row's first occurrence in the batch
            first.sort()
            fresh = first[~isin_sorted(ids[first], seen)][: target - count]
            seen = np.sort(np.concatenate([seen, ids[fresh]]))
            kept.append(batch[fresh])
            count += len(fresh)
        barren = barren + 1 if count == before else 0
        if barren >= max_rounds:
            break
    rows = np.concatenate(kept) if kept else np.empty((0, width))
    return rows.astype(np.int64).reshape(count, width)


def available_members(name: str, space: SequenceSpace, exclude_rows: np.ndarray | None) -> int:
    """Members of a pattern outside the excluded rows (exact)."""
    total = PATTERNS[name].count(space)
    if exclude_rows is None or len(exclude_rows) == 0:
        return total
    unique = np.unique(np.asarray(exclude_rows, dtype=np.int64), axis=0)
    return total - int(PATTERNS[name].holds(unique, space).sum())


def sample_members(
    name: str,
    space: SequenceSpace,
    n: int,
    rng: np.random.Generator,
    exclude_rows: np.ndarray | None = None,
) -> np.ndarray:
    """Up to `n` distinct members of a pattern, uniformly chosen, none of them in `exclude_rows`."""
    pattern = PATTERNS[name]
    exclude = row_keys(exclude_rows) if exclude_rows is not None else []
    return first_distinct(
        lambda k: pattern.sample(space, rng, k),
        n,
        space.length,
        available=available_members(name, space, exclude_rows),
        exclude=exclude,
    )


def sample_negatives(
    space: SequenceSpace,
    avoid: Iterable[str],
    n: int,
    rng: np.random.Generator,
    exclude_rows: np.ndarray | None = None,
) -> np.ndarray:
    """Up to `n` distinct sequences, uniform over those satisfying none of the `avoid` patterns."""
    avoid = list(avoid)

    def draw(k: int) -> np.ndarray:
        # first_distinct asks for twice what it lacks: half again of that covers most rejection rates
        x = rng.integers(0, space.vocab_size, size=(k + k // 2, space.length))
        hit = np.zeros(len(x), dtype=bool)
        for name in avoid:
            hit |= PATTERNS[name].holds(x, space)
        return x[~hit]

    exclude = row_keys(exclude_rows) if exclude_rows is not None else []
    return first_distinct(
        draw, n, space.length, available=_negatives_available(space, avoid, exclude), exclude=exclude
    )


ENUMERABLE = 100_000  # spaces this small are counted exactly, so a search never outlasts its supply


def _negatives_available(space: SequenceSpace, avoid: list[str], exclude: list[bytes]) -> int | None:
    """How many sequences satisfy none of `avoid` and are not excluded, counted exactly in small spaces
    (None in larger ones)."""
    if space.size > ENUMERABLE:
        return None
    distinct = set(exclude)
    total = _negatives_in_space(space, tuple(avoid))
    if not distinct:
        return total
    excluded = np.frombuffer(b"".join(distinct), dtype=np.uint8).reshape(len(distinct), space.length)
    return total - _count_clean(excluded.astype(np.int64), avoid, space)


def _count_clean(rows: np.ndarray, avoid: Iterable[str], space: SequenceSpace) -> int:
    """How many of `rows` satisfy none of `avoid`."""
    hit = np.zeros(len(rows), dtype=bool)
    for name in avoid:
        hit |= PATTERNS[name].holds(rows, space)
    return int((~hit).sum())


@functools.lru_cache(maxsize=64)
def _negatives_in_space(space: SequenceSpace, avoid: tuple[str, ...]) -> int:
    """Sequences of a small space satisfying none of `avoid`: every sequence checked, once per process."""
    every = np.indices((space.vocab_size,) * space.length).reshape(space.length, -1).T
    return _count_clean(every, avoid, space)


def build_pools(
    space: SequenceSpace, names: Iterable[str], pool_size: int, seed: int
) -> dict[str, np.ndarray]:
    """One pool per named pattern. A pattern's pool depends only on (seed, pattern, space, pool_size),
    not on which other patterns are enabled."""
    return {
        name: sample_members(name, space, pool_size, rng_for(seed, Stream.POOLS, PATTERN_NAMES.index(name)))
        for name in names
    }


@functools.lru_cache(maxsize=4)
def shared_pools(
    space: SequenceSpace, names: tuple[str, ...], pool_size: int, seed: int
) -> dict[str, np.ndarray]:
    """`build_pools`, built once per process and read-only: a worker trains many parts of one run, and
    every part plans from the same pools."""
    pools = build_pools(space, names, pool_size, seed)
    for pool in pools.values():
        pool.setflags(write=False)
    return pools
