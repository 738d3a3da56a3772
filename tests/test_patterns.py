"""The 15 patterns: exact counts, uniform samplers, predicates against reference definitions, descriptions."""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from functools import lru_cache

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from weightzoo.data.patterns import PATTERN_NAMES, PATTERNS, match_matrix
from weightzoo.data.space import SequenceSpace


# --- helpers -----------------------------------------------------------------------------------
@lru_cache(maxsize=16)
def enumerate_space(vocab: int, length: int) -> np.ndarray:
    """Every sequence of the space, in lexicographic order (row i is i written in base `vocab`)."""
    idx = np.arange(vocab**length, dtype=np.int64)
    x = np.stack([(idx // vocab ** (length - 1 - j)) % vocab for j in range(length)], axis=1)
    x.setflags(write=False)
    return x


def codes(x: np.ndarray, vocab: int) -> np.ndarray:
    """The index of each row in `enumerate_space` order."""
    weights = vocab ** np.arange(x.shape[1] - 1, -1, -1, dtype=np.int64)
    return x @ weights


@lru_cache(maxsize=64)
def member_mask(name: str, vocab: int, length: int) -> np.ndarray:
    return PATTERNS[name].holds(enumerate_space(vocab, length), SequenceSpace(vocab, length))


# --- scalar reference definitions, written from the documented semantics ---------------------------
def _nondecreasing(s):
    return all(a <= b for a, b in zip(s, s[1:], strict=False))


def _nonincreasing(s):
    return all(a >= b for a, b in zip(s, s[1:], strict=False))


def _vowel_tokens(sp: SequenceSpace) -> set[int]:
    return {i for i, ch in enumerate(string.ascii_uppercase[: sp.vocab_size]) if ch in "AEIOU"}


def ref_mountain(s, sp):
    for p in range(len(s)):
        if _nondecreasing(s[: p + 1]) and _nonincreasing(s[p:]) and s[0] < s[p] and s[p] > s[-1]:
            return True
    return False


def ref_vowel_consonant(s, sp):
    vowels = _vowel_tokens(sp)
    flags = [t in vowels for t in s]
    return all(a != b for a, b in zip(flags, flags[1:], strict=False))


REFERENCE = {
    "all_same": lambda s, sp: len(set(s)) == 1,
    "palindrome": lambda s, sp: list(s) == list(s)[::-1],
    "sorted_ascending": lambda s, sp: _nondecreasing(s),
    "sorted_descending": lambda s, sp: _nonincreasing(s),
    "alternating": lambda s, sp: s[0] != s[1] and all(s[i] == s[i + 2] for i in range(len(s) - 2)),
    "contains_abc": lambda s, sp: any(list(s[i : i + 3]) == [0, 1, 2] for i in range(len(s) - 2)),
    "starts_with": lambda s, sp: s[0] == sp.starts_with_token,
    "ends_with": lambda s, sp: s[-1] == sp.ends_with_token,
    "no_repeats": lambda s, sp: len(set(s)) == len(s),
    "has_majority": lambda s, sp: max(Counter(s).values()) * 2 > len(s),
    "increasing_pairs": lambda s, sp: all(s[2 * k] < s[2 * k + 1] for k in range(len(s) // 2)),
    "decreasing_pairs": lambda s, sp: all(s[2 * k] > s[2 * k + 1] for k in range(len(s) // 2)),
    "vowel_consonant": ref_vowel_consonant,
    "first_last_match": lambda s, sp: s[0] == s[-1],
    "mountain_pattern": ref_mountain,
}

# Hand-checked memberships at vocab 7 (A..G; vowels A, E), default starts_with=A, ends_with=B.
EXAMPLES = {
    "ABBA": {"palindrome", "starts_with", "first_last_match", "mountain_pattern"},
    "ACCA": {"palindrome", "starts_with", "first_last_match", "mountain_pattern"},
    "AABC": {"sorted_ascending", "contains_abc", "starts_with"},
    "ABAB": {"alternating", "starts_with", "ends_with", "increasing_pairs", "vowel_consonant"},
    "CDCD": {"alternating", "increasing_pairs"},
    "ABDE": {"sorted_ascending", "no_repeats", "starts_with", "increasing_pairs"},
    "DCBA": {"sorted_descending", "no_repeats", "decreasing_pairs"},
    "AAAA": {
        "all_same",
        "palindrome",
        "sorted_ascending",
        "sorted_descending",
        "starts_with",
        "has_majority",
        "first_last_match",
    },
    "ABCA": {"contains_abc", "starts_with", "first_last_match", "mountain_pattern"},
    "ABCD": {"sorted_ascending", "contains_abc", "starts_with", "no_repeats", "increasing_pairs"},
    "EBAD": {"vowel_consonant", "no_repeats"},
    "AABA": {"starts_with", "has_majority", "first_last_match", "mountain_pattern"},
    "BAAB": {"palindrome", "ends_with", "first_last_match"},
    "ABCBA": {"palindrome", "contains_abc", "starts_with", "first_last_match", "mountain_pattern"},
    "ABABB": {"increasing_pairs", "ends_with", "starts_with", "has_majority"},
    "BAAAB": {"has_majority", "palindrome", "ends_with", "first_last_match"},
    "CADBG": {"decreasing_pairs", "no_repeats"},
}

SMALL_SPACES = [(v, n) for v in (5, 6, 7) for n in (4, 5, 6, 7)]


def test_registry_holds_the_fifteen_documented_patterns():
    assert set(PATTERNS) == set(REFERENCE)
    assert len(PATTERN_NAMES) == 15 == len(set(PATTERN_NAMES))
    assert all(PATTERNS[name].name == name for name in PATTERN_NAMES)


# --- counts ------------------------------------------------------------------------------------
@pytest.mark.parametrize("vocab,length", SMALL_SPACES)
def test_count_equals_brute_force(vocab, length):
    space = SequenceSpace(vocab, length)
    for name in PATTERN_NAMES:
        assert PATTERNS[name].count(space) == int(member_mask(name, vocab, length).sum()), name


@pytest.mark.parametrize("starts,ends", [(2, 4), (5, 0), (3, 3)])
def test_count_and_predicate_follow_configured_start_and_end_tokens(starts, ends):
    space = SequenceSpace(6, 5, starts_with_token=starts, ends_with_token=ends)
    x = enumerate_space(6, 5)
    for name in ("starts_with", "ends_with"):
        hits = PATTERNS[name].holds(x, space)
        assert PATTERNS[name].count(space) == int(hits.sum())
    np.testing.assert_array_equal(PATTERNS["starts_with"].holds(x, space), x[:, 0] == starts)
    np.testing.assert_array_equal(PATTERNS["ends_with"].holds(x, space), x[:, -1] == ends)


@pytest.mark.parametrize("vocab,length", [(26, 20), (20, 20), (5, 20), (26, 4)])
def test_counts_are_exact_python_ints_in_large_spaces(vocab, length):
    space = SequenceSpace(vocab, length)
    for name in PATTERN_NAMES:
        c = PATTERNS[name].count(space)
        assert isinstance(c, int) and 0 <= c <= space.size, name
        assert (c == 0) == (name == "no_repeats" and vocab < length), name
    # Far beyond 64 bits: the exact value, not a float approximation or a wrapped int64.
    assert PATTERNS["starts_with"].count(space) == vocab ** (length - 1)
    assert PATTERNS["sorted_ascending"].count(space) == math.comb(vocab + length - 1, length)


@pytest.mark.parametrize("vocab,length", [(5, 12), (5, 20), (6, 10)])
def test_counts_match_monte_carlo_density_in_larger_spaces(vocab, length):
    """Counts past brute-force range agree with the fraction of uniform random sequences accepted."""
    space = SequenceSpace(vocab, length)
    n = 400_000
    x = np.random.default_rng(20240601 + vocab * 100 + length).integers(0, vocab, size=(n, length))
    checked = 0
    for name in PATTERN_NAMES:
        p = PATTERNS[name].count(space) / space.size
        if p * n < 200:
            continue
        observed = PATTERNS[name].holds(x, space).mean()
        assert abs(observed - p) < 6 * math.sqrt(p * (1 - p) / n), name
        checked += 1
    assert checked >= 4


def test_no_two_patterns_share_a_member_set_at_vocab7_length7():
    masks = {name: member_mask(name, 7, 7) for name in PATTERN_NAMES}
    for i, a in enumerate(PATTERN_NAMES):
        assert masks[a].any(), a
        for b in PATTERN_NAMES[i + 1 :]:
            assert not np.array_equal(masks[a], masks[b]), (a, b)


# --- predicates against the reference ------------------------------------------------------------
@pytest.mark.parametrize("text,expected", EXAMPLES.items())
def test_seed_examples(text, expected):
    space = SequenceSpace(7, len(text))
    row = space.from_letters(text)
    assert {name for name in PATTERN_NAMES if REFERENCE[name](list(row), space)} == expected
    got = match_matrix(row[None, :], PATTERN_NAMES, space)[0]
    assert {name for name, hit in zip(PATTERN_NAMES, got, strict=True) if hit} == expected


@pytest.mark.parametrize("vocab,length", [(5, 4), (6, 5), (5, 6)])
def test_predicates_agree_with_reference_on_whole_small_spaces(vocab, length):
    space = SequenceSpace(vocab, length)
    x = enumerate_space(vocab, length)
    rows = [list(map(int, r)) for r in x]
    for name in PATTERN_NAMES:
        expected = np.array([REFERENCE[name](r, space) for r in rows])
        np.testing.assert_array_equal(PATTERNS[name].holds(x, space), expected, err_msg=name)


@st.composite
def spaces(draw, vocab=(5, 26), length=(4, 20)):
    v = draw(st.integers(*vocab))
    n = draw(st.integers(*length))
    starts = draw(st.integers(0, v - 1))
    ends = draw(st.integers(0, v - 1))
    return SequenceSpace(v, n, starts_with_token=starts, ends_with_token=ends)


@st.composite
def space_and_rows(draw):
    """A space and a batch of rows: uniform ones, members of random patterns, and one-token mutants."""
    space = draw(spaces())
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    parts = [rng.integers(0, space.vocab_size, size=(8, space.length))]
    for name in PATTERN_NAMES:
        if PATTERNS[name].count(space):
            members = PATTERNS[name].sample(space, rng, 3)
            mutants = members.copy()
            pos = rng.integers(0, space.length, size=len(mutants))
            mutants[np.arange(len(mutants)), pos] = rng.integers(0, space.vocab_size, size=len(mutants))
            parts += [members, mutants]
    handmade = draw(
        st.lists(
            st.lists(st.integers(0, space.vocab_size - 1), min_size=space.length, max_size=space.length),
            max_size=4,
        )
    )
    if handmade:
        parts.append(np.array(handmade, dtype=np.int64))
    return space, np.concatenate(parts)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(space_and_rows())
def test_predicates_agree_with_reference(case):
    space, x = case
    rows = [list(map(int, r)) for r in x]
    for name in PATTERN_NAMES:
        expected = np.array([REFERENCE[name](r, space) for r in rows])
        np.testing.assert_array_equal(PATTERNS[name].holds(x, space), expected, err_msg=name)


def accepts(name: str, text: str, vocab: int = 7) -> bool:
    space = SequenceSpace(vocab, len(text))
    return bool(PATTERNS[name].holds(space.from_letters(text)[None], space)[0])


def test_pairs_patterns_are_not_sorted_patterns():
    assert accepts("increasing_pairs", "ACBD") and not accepts("sorted_ascending", "ACBD")
    assert accepts("sorted_ascending", "AABB") and not accepts("increasing_pairs", "AABB")
    assert accepts("decreasing_pairs", "CADB") and not accepts("sorted_descending", "CADB")
    assert accepts("sorted_descending", "BBAA") and not accepts("decreasing_pairs", "BBAA")


@pytest.mark.parametrize("text", ["ABCD", "AABB", "ABBB", "DCBA", "CCBA", "AAAA", "BAAB", "ABAB", "BABA"])
def test_mountain_needs_a_real_rise_and_a_real_fall(text):
    assert not accepts("mountain_pattern", text)


@pytest.mark.parametrize("text", ["ABBA", "ACCA", "AABA", "ABAA", "ABCBA", "AGGGA", "ABCDC"])
def test_mountains_with_plateaus(text):
    assert accepts("mountain_pattern", text)


# --- samplers ------------------------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(spaces(), st.integers(0, 2**32 - 1))
def test_samples_are_members(space, seed):
    rng = np.random.default_rng(seed)
    for name in PATTERN_NAMES:
        pattern = PATTERNS[name]
        if pattern.count(space) == 0:
            with pytest.raises(ValueError):
                pattern.sample(space, rng, 5)
            continue
        x = pattern.sample(space, rng, 64)
        assert x.shape == (64, space.length) and x.dtype == np.int64, name
        assert ((x >= 0) & (x < space.vocab_size)).all(), name
        assert pattern.holds(x, space).all(), name


def test_sampling_at_the_largest_space():
    space = SequenceSpace(26, 20)
    rng = np.random.default_rng(7)
    for name in PATTERN_NAMES:
        x = PATTERNS[name].sample(space, rng, 1000)
        assert x.shape == (1000, 20), name
        assert ((x >= 0) & (x < 26)).all(), name
        assert PATTERNS[name].holds(x, space).all(), name
        if PATTERNS[name].count(space) > 10**6:
            assert len(np.unique(x, axis=0)) > 990, name  # not a degenerate sampler


def chi2_upper_quantile(df: int, z: float = 3.719) -> float:
    """Wilson-Hilferty approximation of the chi-square quantile at standard-normal z (3.719: 99.99%)."""
    h = 2 / (9 * df)
    return df * (1 - h + z * math.sqrt(h)) ** 3


@pytest.mark.parametrize("vocab,length", [(5, 4), (5, 5), (6, 5)])
def test_samplers_are_exactly_uniform_over_members(vocab, length):
    space = SequenceSpace(vocab, length)
    for i, name in enumerate(PATTERN_NAMES):
        mask = member_mask(name, vocab, length)
        members = int(mask.sum())
        if members == 0:
            continue
        draws = max(5_000, 30 * members)
        x = PATTERNS[name].sample(space, np.random.default_rng(1000 + 17 * i + vocab * length), draws)
        tally = np.bincount(codes(x, vocab), minlength=vocab**length)
        assert tally[~mask].sum() == 0, f"{name}: drew non-members"
        observed = tally[mask]
        assert (observed > 0).all(), f"{name}: some members never drawn in {draws} draws"
        if members == 1:
            continue
        expected = draws / members
        stat = float(((observed - expected) ** 2 / expected).sum())
        assert stat < chi2_upper_quantile(members - 1), f"{name}: chi2 {stat:.1f}, {members} members"


def test_uniformity_test_rejects_a_biased_sampler():
    """The chi-square check above has power: sorting uniform random sequences gives sorted members,
    but not uniformly (AAAAA is drawn far less often than ABCDE), and the check catches it."""
    space = SequenceSpace(5, 5)
    mask = member_mask("sorted_ascending", 5, 5)
    members = int(mask.sum())
    x = np.sort(np.random.default_rng(3).integers(0, 5, size=(30 * members, 5)), axis=1)
    assert PATTERNS["sorted_ascending"].holds(x, space).all()
    observed = np.bincount(codes(x, 5), minlength=5**5)[mask]
    expected = len(x) / members
    assert ((observed - expected) ** 2 / expected).sum() > chi2_upper_quantile(members - 1)


# --- descriptions --------------------------------------------------------------------------------
def _vowel_list(description: str) -> set[str]:
    found = re.search(r"\(([^)]*)\)", description)
    assert found, description
    return {part.strip() for part in found.group(1).split(",")}


@pytest.mark.parametrize(
    "vocab,vowels",
    [(5, {"A", "E"}), (8, {"A", "E"}), (9, {"A", "E", "I"}), (15, {"A", "E", "I", "O"}), (21, set("AEIOU"))],
)
def test_vowel_consonant_description_lists_the_vowels_of_the_vocab(vocab, vowels):
    assert _vowel_list(PATTERNS["vowel_consonant"].description(SequenceSpace(vocab, 6))) == vowels


def test_vowel_consonant_description_examples():
    d5 = PATTERNS["vowel_consonant"].description(SequenceSpace(5, 6))
    assert "A" in d5 and "E" in d5 and "I" not in d5
    assert "U" in PATTERNS["vowel_consonant"].description(SequenceSpace(26, 6))
    assert "U" not in PATTERNS["vowel_consonant"].description(SequenceSpace(20, 6))


def test_starts_and_ends_with_descriptions_name_the_configured_token():
    space = SequenceSpace(7, 7, starts_with_token=2, ends_with_token=4)
    start, end = PATTERNS["starts_with"].description(space), PATTERNS["ends_with"].description(space)
    assert re.search(r"\bC\b", start) and not re.search(r"\bA\b", start)
    assert re.search(r"\bE\b", end) and not re.search(r"\bB\b", end)
    default = SequenceSpace(7, 7)
    assert re.search(r"\bA\b", PATTERNS["starts_with"].description(default))
    assert re.search(r"\bB\b", PATTERNS["ends_with"].description(default))
    # The sampler follows the same token as the description.
    x = PATTERNS["starts_with"].sample(space, np.random.default_rng(0), 200)
    assert (x[:, 0] == 2).all() and len(set(x[:, 1])) > 1
    y = PATTERNS["ends_with"].sample(space, np.random.default_rng(0), 200)
    assert (y[:, -1] == 4).all()


@settings(max_examples=30, deadline=None)
@given(spaces())
def test_descriptions_only_mention_letters_of_the_vocab(space):
    for name in PATTERN_NAMES:
        description = PATTERNS[name].description(space)
        assert description.strip(), name
        for word in re.findall(r"\b[A-Z]+\b", description):
            assert set(word) <= set(space.letters), (name, word, description)


@settings(max_examples=30, deadline=None)
@given(spaces())
def test_description_numbers_and_examples_fit_the_space(space):
    n = space.length
    majority = PATTERNS["has_majority"].description(space)
    assert f"{n // 2 + 1} of {n}" in majority
    pairs = PATTERNS["increasing_pairs"].description(space)
    assert f"{2 * (n // 2) - 1}-{2 * (n // 2)}" in pairs and f"{n}-{n + 1}" not in pairs
    assert f"{2 * (n // 2)}-{2 * (n // 2) + 1}" not in pairs
    example = re.search(r"e\.g\. ([A-Z]+)\)", PATTERNS["all_same"].description(space)).group(1)
    assert PATTERNS["all_same"].holds(space.from_letters(example)[None], space)[0]
