"""Pattern pools: uniform random sets of distinct members, independent per pattern, reproducible by seed."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from weightzoo.data.patterns import PATTERN_NAMES, PATTERNS
from weightzoo.data.pools import (
    _negatives_available,
    build_pools,
    first_distinct,
    row_key,
    sample_members,
    sample_negatives,
)
from weightzoo.data.space import SequenceSpace

SPACE = SequenceSpace(7, 7)
POOL_SIZE = 1000


@lru_cache(maxsize=8)
def enumerate_space(vocab: int, length: int) -> np.ndarray:
    """Every sequence of the space (row i is i written in base `vocab`)."""
    idx = np.arange(vocab**length, dtype=np.int64)
    x = np.stack([(idx // vocab ** (length - 1 - j)) % vocab for j in range(length)], axis=1)
    x.setflags(write=False)
    return x


@lru_cache(maxsize=64)
def all_members(name: str, vocab: int = 7, length: int = 7) -> np.ndarray:
    x = enumerate_space(vocab, length)
    return x[PATTERNS[name].holds(x, SequenceSpace(vocab, length))]


@lru_cache(maxsize=4)
def pools_for(seed: int) -> dict[str, np.ndarray]:
    return build_pools(SPACE, PATTERN_NAMES, POOL_SIZE, seed)


def keys(rows) -> set[bytes]:
    return {row_key(r) for r in rows}


def first_token_distribution(rows: np.ndarray, vocab: int = 7) -> np.ndarray:
    return np.bincount(rows[:, 0], minlength=vocab) / len(rows)


# --- uniformity ----------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 12345])
@pytest.mark.parametrize("name", PATTERN_NAMES)
def test_pool_first_token_distribution_matches_all_members(name, seed):
    """The spec's bound: total variation distance <= 0.1 from the distribution over all members."""
    pool = pools_for(seed)[name]
    members = all_members(name)
    tv = 0.5 * np.abs(first_token_distribution(pool) - first_token_distribution(members)).sum()
    assert tv <= 0.1, f"{name}: total variation {tv:.3f}"


def test_sorted_ascending_pool_keeps_the_skew_towards_A():
    """Over all non-decreasing sequences, 924 of 1716 (~54%) start with A; a uniform pool keeps that,
    whereas a palindrome starts with A exactly 1/7 of the time, and its pool keeps that too."""
    members = all_members("sorted_ascending")
    assert len(members) == 1716
    share = (members[:, 0] == 0).mean()
    assert share == pytest.approx(924 / 1716) and 0.53 < share < 0.55
    palindromes = all_members("palindrome")
    assert (palindromes[:, 0] == 0).mean() == pytest.approx(1 / 7)
    for seed in (0, 1):
        pools = pools_for(seed)
        assert abs((pools["sorted_ascending"][:, 0] == 0).mean() - share) < 0.04
        assert abs((pools["palindrome"][:, 0] == 0).mean() - 1 / 7) < 0.03


def test_pools_cover_the_member_space_evenly():
    """Beyond the first token: every position's token distribution matches that over all members."""
    for name in PATTERN_NAMES:
        pool, members = pools_for(0)[name], all_members(name)
        for pos in range(SPACE.length):
            p = np.bincount(pool[:, pos], minlength=7) / len(pool)
            q = np.bincount(members[:, pos], minlength=7) / len(members)
            assert 0.5 * np.abs(p - q).sum() <= 0.1, (name, pos)


# --- content -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", PATTERN_NAMES)
def test_pool_rows_are_distinct_members(name):
    pool = pools_for(0)[name]
    assert pool.dtype == np.int64 and pool.ndim == 2 and pool.shape[1] == SPACE.length
    assert len(pool) == min(POOL_SIZE, PATTERNS[name].count(SPACE))
    assert len(keys(pool)) == len(pool)
    assert PATTERNS[name].holds(pool, SPACE).all()


@pytest.mark.parametrize("name,expected", [("all_same", 7), ("alternating", 42)])
def test_small_patterns_get_all_their_members(name, expected):
    pool = pools_for(0)[name]
    assert len(pool) == expected
    assert keys(pool) == keys(all_members(name))


def test_no_repeats_pool_is_empty_when_the_pattern_has_no_members():
    space = SequenceSpace(5, 7)
    pools = build_pools(space, ["no_repeats", "palindrome"], 100, 0)
    assert pools["no_repeats"].shape == (0, 7)
    assert len(pools["palindrome"]) == 100


# --- reproducibility ---------------------------------------------------------------------------------
def test_pool_does_not_depend_on_the_other_patterns():
    full = pools_for(0)
    for name in ("palindrome", "mountain_pattern", "no_repeats"):
        alone = build_pools(SPACE, [name], POOL_SIZE, 0)
        np.testing.assert_array_equal(alone[name], full[name])
    reordered = build_pools(SPACE, ["first_last_match", "starts_with", "contains_abc"], POOL_SIZE, 0)
    for name, pool in reordered.items():
        np.testing.assert_array_equal(pool, full[name])


def test_pools_are_identical_for_the_same_seed_and_differ_for_another():
    again = build_pools(SPACE, PATTERN_NAMES, POOL_SIZE, 0)
    other = pools_for(1)
    for name in PATTERN_NAMES:
        np.testing.assert_array_equal(again[name], pools_for(0)[name])
        if PATTERNS[name].count(SPACE) > 2 * POOL_SIZE:
            assert keys(other[name]) != keys(again[name]), name
        # Small patterns: same members (all of them), but drawn in a different order.
        if PATTERNS[name].count(SPACE) > 10:
            assert not np.array_equal(other[name], again[name]), name


def test_different_patterns_use_independent_streams():
    """Patterns sharing a sampler shape do not get the same random choices."""
    pools = pools_for(0)
    asc, desc = pools["sorted_ascending"], pools["sorted_descending"]
    assert not np.array_equal(asc[:, ::-1], desc)
    assert not np.array_equal(pools["starts_with"][:, 1:], pools["ends_with"][:, :-1])


# --- sample_members ------------------------------------------------------------------------------
SMALL = SequenceSpace(5, 4)


@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from(PATTERN_NAMES),
    n=st.integers(0, 200),
    excluded_share=st.floats(0, 1),
    extra_random=st.integers(0, 30),
    duplicate=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_sample_members_respects_exclusions(name, n, excluded_share, extra_random, duplicate, seed):
    rng = np.random.default_rng(seed)
    members = all_members(name, 5, 4)
    pick = rng.random(len(members)) < excluded_share
    exclude = np.concatenate([members[pick], rng.integers(0, 5, size=(extra_random, 4))])
    if duplicate and len(exclude):
        exclude = np.concatenate([exclude, exclude[:3]])
    excluded = keys(exclude)
    available = len(keys(members) - excluded)

    got = sample_members(name, SMALL, n, rng, exclude_rows=exclude)
    assert got.shape == (min(n, available), 4)
    assert len(keys(got)) == len(got)
    assert not keys(got) & excluded
    assert PATTERNS[name].holds(got, SMALL).all()


def test_sample_members_returns_everything_left_when_asked_for_more():
    members = all_members("palindrome", 5, 4)  # 25 members
    rng = np.random.default_rng(4)
    got = sample_members("palindrome", SMALL, 100, rng, exclude_rows=members[:20])
    assert keys(got) == keys(members[20:])
    got = sample_members("palindrome", SMALL, 5, rng, exclude_rows=members)
    assert got.shape == (0, 4)


# --- sample_negatives ------------------------------------------------------------------------------
@settings(max_examples=50, deadline=None)
@given(
    vocab=st.integers(5, 7),
    length=st.integers(4, 6),
    avoid=st.lists(st.sampled_from(PATTERN_NAMES), min_size=0, max_size=6, unique=True),
    n=st.integers(1, 300),
    seed=st.integers(0, 2**32 - 1),
)
def test_sample_negatives_avoid_every_pattern(vocab, length, avoid, n, seed):
    space = SequenceSpace(vocab, length)
    x = enumerate_space(vocab, length)
    hit = np.zeros(len(x), dtype=bool)
    for name in avoid:
        hit |= PATTERNS[name].holds(x, space)
    complement = int((~hit).sum())  # can be small: 160 at vocab 5, length 4 avoiding 6 patterns
    rng = np.random.default_rng(seed)
    got = sample_negatives(space, avoid, n, rng)
    assert got.shape == (min(n, complement), length)
    assert len(keys(got)) == len(got)
    assert ((got >= 0) & (got < vocab)).all()
    for name in avoid:
        assert not PATTERNS[name].holds(got, space).any(), name


def test_sample_negatives_skips_excluded_rows_and_stops_when_exhausted():
    avoid = ["starts_with", "ends_with", "first_last_match", "has_majority", "palindrome"]
    x = enumerate_space(5, 4)
    hit = np.zeros(len(x), dtype=bool)
    for name in avoid:
        hit |= PATTERNS[name].holds(x, SMALL)
    negatives = x[~hit]
    exclude = negatives[::3]
    left = len(negatives) - len(exclude)
    got = sample_negatives(SMALL, avoid, left + 20, np.random.default_rng(0), exclude_rows=exclude)
    assert keys(got) == keys(negatives) - keys(exclude)
    assert len(got) == len(keys(got))


def test_sample_negatives_are_uniform_over_the_complement():
    avoid = ["starts_with", "sorted_ascending"]
    space = SequenceSpace(5, 4)
    x = enumerate_space(5, 4)
    complement = ~(PATTERNS["starts_with"].holds(x, space) | PATTERNS["sorted_ascending"].holds(x, space))
    shares = []
    for seed in range(40):
        got = sample_negatives(space, avoid, 100, np.random.default_rng(seed))
        shares.append((got[:, -1] == 4).mean())
    # Among the complement, the share ending in E; 40 x 100 draws estimate it well.
    expected = (x[complement][:, -1] == 4).mean()
    assert abs(np.mean(shares) - expected) < 0.03


# --- first_distinct --------------------------------------------------------------------------------
def _stream(rows: np.ndarray, seed: int):
    rng = np.random.default_rng(seed)
    calls = []

    def draw(k: int) -> np.ndarray:
        calls.append(k)
        return rows[rng.integers(0, len(rows), size=k)]

    return draw, calls


def test_first_distinct_stops_at_available():
    rows = np.array([[0, 0, 1], [1, 2, 3], [4, 4, 4]], dtype=np.int64)
    draw, calls = _stream(rows, 0)
    got = first_distinct(draw, 50, 3, available=3)
    assert got.shape == (3, 3) and keys(got) == keys(rows)
    assert len(calls) < 5  # stops as soon as the known supply is used up, no barren rounds


def test_first_distinct_with_available_and_exclusions():
    rows = np.arange(40, dtype=np.int64).reshape(10, 4) % 26
    exclude = [row_key(r) for r in rows[:4]]
    draw, _ = _stream(rows, 1)
    got = first_distinct(draw, 50, 4, available=6, exclude=exclude)
    assert keys(got) == keys(rows[4:])


def test_first_distinct_without_available_gives_up_after_barren_rounds():
    rows = np.array([[1, 2], [3, 4]], dtype=np.int64)
    draw, calls = _stream(rows, 2)
    got = first_distinct(draw, 10, 2, max_rounds=7)
    assert keys(got) == keys(rows)
    assert 7 <= len(calls) <= 12


def test_first_distinct_keeps_stream_order_and_target():
    rows = np.arange(600, dtype=np.int64).reshape(200, 3) % 26
    rows = np.unique(rows, axis=0)
    draw, _ = _stream(rows, 3)
    got = first_distinct(draw, 20, 3)
    replay, _ = _stream(rows, 3)
    stream = replay(64)  # first batch: max(64, 2 * 20) rows
    expected, seen = [], set()
    for r in stream:
        if row_key(r) not in seen:
            seen.add(row_key(r))
            expected.append(r)
    np.testing.assert_array_equal(got, np.array(expected[:20]))


def test_first_distinct_with_target_zero_draws_nothing():
    draw, calls = _stream(np.zeros((1, 3), dtype=np.int64), 0)
    assert first_distinct(draw, 0, 3).shape == (0, 3)
    assert first_distinct(draw, 5, 3, available=0).shape == (0, 3)
    assert calls == []


@given(
    chosen=st.lists(st.sampled_from(PATTERN_NAMES), min_size=0, max_size=4, unique=True),
    excluded=st.lists(st.lists(st.integers(0, 3), min_size=4, max_size=4), max_size=30),
)
@settings(max_examples=40, deadline=None)
def test_negatives_available_counts_exactly(chosen, excluded):
    """The count of sequences matching none of the patterns and not excluded, against a brute force."""
    space = SequenceSpace(vocab_size=4, length=4)
    every = np.indices((4,) * 4).reshape(4, -1).T
    clean = [row for row in every if not any(PATTERNS[n].holds(row[None], space)[0] for n in chosen)]
    exclude = [row_key(np.array(r)) for r in excluded]
    want = len({row_key(r) for r in clean} - set(exclude))
    assert _negatives_available(space, chosen, exclude) == want
