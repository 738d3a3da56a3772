"""A subject model's dataset: sizes from the config, labels from predicates, reproducible from the seed."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from weightzoo.data.patterns import PATTERN_NAMES, PATTERNS
from weightzoo.data.pools import build_pools, row_key
from weightzoo.data.space import SequenceSpace
from weightzoo.data.subject_data import DatasetSizes, build_subject_dataset, dataset_sizes, take
from weightzoo.seeding import Stream, rng_for

SPACE = SequenceSpace(7, 7)
ENABLED = PATTERN_NAMES


@lru_cache(maxsize=4)
def pools_for(seed: int, space: SequenceSpace = SPACE, pool_size: int = 1000) -> dict[str, np.ndarray]:
    return build_pools(space, PATTERN_NAMES, pool_size, seed)


def keys(rows) -> set[bytes]:
    return {row_key(r) for r in rows}


def build(selected, seed: int, example: int = 0, sizes: DatasetSizes | None = None, enabled=ENABLED):
    sizes = sizes or dataset_sizes(len(selected), 500, 1.0, 10, 2500)
    return build_subject_dataset(
        SPACE, pools_for(0), tuple(selected), tuple(enabled), sizes, rng_for(seed, Stream.EXAMPLE, example)
    )


def assert_same(a, b):
    np.testing.assert_array_equal(a.sequences, b.sequences)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.source, b.source)
    np.testing.assert_array_equal(a.matches, b.matches)
    assert a.selected == b.selected and a.enabled == b.enabled


# --- dataset_sizes ---------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [2, 3, 4, 5])
def test_negative_ratio_is_negatives_per_positive(k):
    """The seed's code: positives = total / (1 + ratio); 0.5 gives one negative for two positives."""
    sizes = dataset_sizes(k, 600, 0.5, 10, 2500)
    assert sizes.per_pattern == (round(400 / k),) * k
    assert sizes.negatives == round(sizes.positives * 0.5)
    assert abs(sizes.total - 600) <= k
    balanced = dataset_sizes(k, 600, 1.0, 10, 2500)
    assert balanced.negatives == balanced.positives  # 1 means 1:1
    assert (
        dataset_sizes(k, 600, 3.0, 10, 2500).negatives == 3 * dataset_sizes(k, 600, 3.0, 10, 2500).positives
    )
    assert dataset_sizes(k, 600, 0.0, 10, 2500).negatives == 0


def test_weights_share_a_models_rows_without_changing_its_total():
    even = dataset_sizes(3, 6000, 1.0, 10, 100_000)
    weighted = dataset_sizes(3, 6000, 1.0, 10, 100_000, weights=(6.0, 1.0, 1.0))
    assert weighted.per_pattern == (2250, 375, 375)
    assert weighted.total == even.total == 6000
    floored = dataset_sizes(3, 6000, 1.0, 500, 100_000, weights=(6.0, 1.0, 1.0))
    assert floored.per_pattern == (2250, 500, 500)  # the floor wins over a small share


def test_sizes_shrink_to_max_total_but_not_below_min():
    sizes = dataset_sizes(4, 5000, 1.0, 10, 1000)
    assert sizes.total <= 1000 and sizes.per_pattern == (125,) * 4
    floor = dataset_sizes(4, 5000, 1.0, 200, 1000)
    assert floor.per_pattern == (200,) * 4  # config check rejects this; the function keeps the minimum
    grown = dataset_sizes(10, 100, 1.0, 10, 2500)
    assert grown.per_pattern == (10,) * 10 and grown.negatives == 100


@settings(max_examples=300, deadline=None)
@given(
    weights=st.lists(st.sampled_from([0.5, 1.0, 1.5, 2.0, 6.0]), min_size=1, max_size=15),
    target=st.integers(1, 10_000),
    ratio=st.floats(0.0, 4.0),
    min_per_pattern=st.integers(1, 200),
    max_total=st.integers(1, 20_000),
)
def test_dataset_sizes_properties(weights, target, ratio, min_per_pattern, max_total):
    k, weights = len(weights), tuple(weights)
    sizes = dataset_sizes(k, target, ratio, min_per_pattern, max_total, weights)
    assert len(sizes.per_pattern) == k and min(sizes.per_pattern) >= min_per_pattern
    # Negatives are `ratio` per positive, up to rounding to a whole row.
    assert abs(sizes.negatives - sizes.positives * ratio) <= 0.5 + 1e-9
    wanted = [max(min_per_pattern, round(target / (1 + ratio) * w / sum(weights))) for w in weights]
    assert all(got <= want for got, want in zip(sizes.per_pattern, wanted, strict=True))
    smallest = min_per_pattern * k + round(min_per_pattern * k * ratio)
    if smallest <= max_total:
        assert sizes.total <= max_total
    # A heavier pattern never gets fewer rows than a lighter one.
    for a, b in zip(weights, sizes.per_pattern, strict=True):
        for c, d in zip(weights, sizes.per_pattern, strict=True):
            assert not (a > c and b < d)


# --- build_subject_dataset -------------------------------------------------------------------------
SELECTIONS = [
    ("palindrome", "starts_with", "all_same"),
    ("sorted_ascending", "mountain_pattern"),
    ("has_majority", "vowel_consonant", "contains_abc", "first_last_match", "increasing_pairs"),
    ("ends_with",),
]


@pytest.mark.parametrize("selected", SELECTIONS)
def test_labels_sources_and_matches(selected):
    ds = build(selected, seed=11)
    sizes = dataset_sizes(len(selected), 500, 1.0, 10, 2500)
    n = sizes.total
    assert len(ds) == n
    assert ds.sequences.shape == (n, SPACE.length) and ds.sequences.dtype == np.int64
    assert ds.labels.dtype == np.int64 and ds.source.dtype == np.int64 and ds.matches.dtype == bool
    assert ds.selected == selected and ds.enabled == ENABLED
    np.testing.assert_array_equal(ds.labels, (ds.source >= 0).astype(np.int64))
    assert set(np.unique(ds.source)) <= set(range(-1, len(selected)))
    for i in range(len(selected)):
        assert (ds.source == i).sum() == sizes.per_pattern[i]
    assert (ds.source == -1).sum() == sizes.negatives

    expected = np.stack([PATTERNS[name].holds(ds.sequences, SPACE) for name in ENABLED], axis=1)
    np.testing.assert_array_equal(ds.matches, expected)

    for i, name in enumerate(selected):
        rows = ds.sequences[ds.source == i]
        assert PATTERNS[name].holds(rows, SPACE).all(), name
        assert keys(rows) <= keys(pools_for(0)[name]), name
    negatives = ds.sequences[ds.source == -1]
    for name in selected:
        assert not PATTERNS[name].holds(negatives, SPACE).any(), name
    # Hence: a row is labelled positive exactly when it satisfies some selected pattern.
    selected_cols = [ENABLED.index(name) for name in selected]
    np.testing.assert_array_equal(ds.labels, ds.matches[:, selected_cols].any(axis=1).astype(np.int64))
    assert len(keys(negatives)) == len(negatives)  # plenty of negatives at vocab 7, length 7


def test_rows_are_shuffled():
    ds = build(("palindrome", "starts_with", "all_same"), seed=11)
    # Sources are interleaved, not in blocks.
    assert (np.diff(ds.source) != 0).sum() > len(ds) // 4


def test_matches_cover_only_the_enabled_patterns():
    enabled = ("all_same", "palindrome", "sorted_descending", "starts_with")
    ds = build(("palindrome", "starts_with"), seed=2, enabled=enabled)
    assert ds.matches.shape == (len(ds), 4)
    for j, name in enumerate(enabled):
        np.testing.assert_array_equal(ds.matches[:, j], PATTERNS[name].holds(ds.sequences, SPACE))


def test_dataset_is_a_pure_function_of_the_seed():
    selected = ("sorted_ascending", "mountain_pattern", "contains_abc")
    assert_same(build(selected, seed=5), build(selected, seed=5))
    other = build(selected, seed=6)
    assert not np.array_equal(build(selected, seed=5).sequences, other.sequences)
    assert keys(build(selected, seed=5).sequences) != keys(other.sequences)
    assert not np.array_equal(build(selected, seed=5, example=1).sequences, build(selected, seed=5).sequences)
    # Each model draws its own subset of a large pool, not the same leading rows every time.
    for i in range(len(selected)):
        a = build(selected, seed=5).sequences[build(selected, seed=5).source == i]
        b = other.sequences[other.source == i]
        assert keys(a) != keys(b), selected[i]


def test_excluded_rows_never_become_negatives():
    selected = ("palindrome", "starts_with")
    held_out = build(selected, seed=21)
    held_negatives = held_out.sequences[held_out.source == -1]
    sizes = dataset_sizes(2, 500, 1.0, 10, 2500)
    for example in range(3):
        ds = build_subject_dataset(
            SPACE,
            pools_for(0),
            selected,
            ENABLED,
            sizes,
            rng_for(21, Stream.EXAMPLE, example),
            exclude_negatives=held_negatives,
        )
        negatives = ds.sequences[ds.source == -1]
        assert len(negatives) == sizes.negatives
        assert not keys(negatives) & keys(held_negatives)


def test_dataset_is_the_same_when_built_concurrently():
    jobs = [(SELECTIONS[i % len(SELECTIONS)], 100 + i // 2, i) for i in range(12)]
    sequential = [build(sel, seed, example) for sel, seed, example in jobs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        concurrent = list(pool.map(lambda job: build(*job), jobs))
        twice = list(pool.map(lambda job: build(*job), jobs))
    for a, b, c in zip(sequential, concurrent, twice, strict=True):
        assert_same(a, b)
        assert_same(a, c)


def test_small_pools_repeat_only_their_members():
    selected = ("all_same", "palindrome", "starts_with")
    sizes = dataset_sizes(3, 500, 1.0, 10, 2500)
    assert sizes.per_pattern == (83,) * 3
    ds = build(selected, seed=3)
    rows = ds.sequences[ds.source == 0]
    assert len(rows) == 83
    pool = pools_for(0)["all_same"]
    assert len(pool) == 7
    # Repeats, but only of pool members, and every member shows up (distinct rows come first).
    assert keys(rows) == keys(pool)
    counts = np.unique(rows, axis=0, return_counts=True)[1]
    assert counts.sum() == 83 and counts.min() >= 1 and counts.max() >= 12
    # A large pool is not repeated while it lasts.
    for i in (1, 2):
        big = ds.sequences[ds.source == i]
        assert len(keys(big)) == len(big) == 83


def test_take_gives_distinct_rows_first_then_uniform_repeats():
    rows = np.arange(10, dtype=np.int64).reshape(5, 2)
    rng = np.random.default_rng(0)
    few = take(rows, 3, rng)
    assert len(keys(few)) == 3 and keys(few) <= keys(rows)
    many = take(rows, 5003, rng)
    assert keys(many[:5]) == keys(rows)
    counts = np.unique(many, axis=0, return_counts=True)[1]
    assert counts.min() > 900 and counts.max() < 1100
    with pytest.raises(ValueError):
        take(rows[:0], 1, rng)


def test_zero_negatives_gives_only_positives():
    ds = build(("palindrome",), seed=1, sizes=DatasetSizes(per_pattern=(40,), negatives=0))
    assert len(ds) == 40 and (ds.labels == 1).all() and (ds.source == 0).all()


@settings(max_examples=25, deadline=None)
@given(
    vocab=st.integers(5, 8),
    length=st.integers(4, 8),
    selected=st.lists(st.sampled_from(PATTERN_NAMES), min_size=1, max_size=5, unique=True),
    per_pattern=st.integers(1, 120),
    negatives=st.integers(0, 150),
    seed=st.integers(0, 2**32 - 1),
)
def test_subject_dataset_invariants(vocab, length, selected, per_pattern, negatives, seed):
    space = SequenceSpace(vocab, length)
    selected = tuple(name for name in selected if PATTERNS[name].count(space) > 0)
    if not selected:
        return
    pools = build_pools(space, selected, 60, seed)
    sizes = DatasetSizes((per_pattern,) * len(selected), negatives)
    ds = build_subject_dataset(space, pools, selected, PATTERN_NAMES, sizes, rng_for(seed, Stream.EXAMPLE, 0))
    again = build_subject_dataset(
        space, pools, selected, PATTERN_NAMES, sizes, rng_for(seed, Stream.EXAMPLE, 0)
    )
    assert_same(ds, again)
    assert len(ds) == sizes.total
    np.testing.assert_array_equal(ds.labels, (ds.source >= 0).astype(np.int64))
    for i, name in enumerate(selected):
        rows = ds.sequences[ds.source == i]
        assert len(rows) == per_pattern
        assert PATTERNS[name].holds(rows, space).all()
        assert keys(rows) <= keys(pools[name])
        assert len(keys(rows)) == min(per_pattern, len(pools[name]))
    neg = ds.sequences[ds.source == -1]
    assert len(neg) == negatives
    for name in selected:
        assert not PATTERNS[name].holds(neg, space).any()
    np.testing.assert_array_equal(
        ds.matches, np.stack([PATTERNS[name].holds(ds.sequences, space) for name in PATTERN_NAMES], axis=1)
    )
