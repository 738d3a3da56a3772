"""The 15 named patterns: each a predicate over token sequences, an exact count and a uniform sampler.

A pattern is one small registered definition. Its predicate is the truth: pools, labels and
negatives are all decided by predicates. Its sampler draws members independently and uniformly
(exactly, by counting; see `regular.py` for the two patterns sampled through an automaton), so a
pool never favours, say, sequences that start with A. Semantics are documented in the README table.

Predicates are vectorised: they take an int array [n, length] and return a bool array [n].
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from math import comb, factorial

import numpy as np

from weightzoo.data.regular import Automaton
from weightzoo.data.space import SequenceSpace

# Bump when any pattern's meaning changes: files written under another version are not comparable.
PATTERNS_VERSION = "1"


@dataclass(frozen=True)
class Pattern:
    """A named rule over sequences: description for prompts, predicate, exact count, uniform sampler."""

    name: str
    describe: Callable[[SequenceSpace], str]
    holds: Callable[[np.ndarray, SequenceSpace], np.ndarray]
    count: Callable[[SequenceSpace], int]
    draw: Callable[[SequenceSpace, np.random.Generator, int], np.ndarray]

    def description(self, space: SequenceSpace) -> str:
        return self.describe(space)

    def matches(self, sequences: np.ndarray, space: SequenceSpace) -> np.ndarray:
        sequences = np.asarray(sequences, dtype=np.int64).reshape(-1, space.length)
        return self.holds(sequences, space)

    def sample(self, space: SequenceSpace, rng: np.random.Generator, n: int) -> np.ndarray:
        """`n` members drawn independently and uniformly, shape [n, length]."""
        if self.count(space) == 0:
            raise ValueError(
                f"pattern {self.name} has no members at vocab {space.vocab_size}, length {space.length}"
            )
        return self.draw(space, rng, n).astype(np.int64, copy=False)


PATTERNS: dict[str, Pattern] = {}


def _register(name: str, describe, holds, count, draw) -> None:
    PATTERNS[name] = Pattern(name, describe, holds, count, draw)


def _uniform(space: SequenceSpace, rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, space.vocab_size, size=(n, space.length))


def _weighted_choice(rng: np.random.Generator, weights: list[int], n: int) -> np.ndarray:
    """Indices drawn with probability proportional to exact integer weights."""
    total = sum(weights)
    return rng.choice(len(weights), size=n, p=[w / total for w in weights])


def _letters_list(space: SequenceSpace, tokens) -> str:
    return ", ".join(space.letter(t) for t in tokens)


# --- all_same --------------------------------------------------------------------------------
def _all_same_draw(space, rng, n):
    return np.repeat(rng.integers(0, space.vocab_size, size=(n, 1)), space.length, axis=1)


_register(
    "all_same",
    lambda s: "all tokens are identical (e.g. " + s.letter(0) * s.length + ")",
    lambda x, s: (x == x[:, :1]).all(axis=1),
    lambda s: s.vocab_size,
    _all_same_draw,
)


# --- palindrome ------------------------------------------------------------------------------
def _palindrome_draw(space, rng, n):
    half = rng.integers(0, space.vocab_size, size=(n, (space.length + 1) // 2))
    return np.concatenate([half, half[:, : space.length // 2][:, ::-1]], axis=1)


_register(
    "palindrome",
    lambda s: "the sequence reads the same forwards and backwards",
    lambda x, s: (x == x[:, ::-1]).all(axis=1),
    lambda s: s.vocab_size ** ((s.length + 1) // 2),
    _palindrome_draw,
)


# --- sorted_ascending / sorted_descending ------------------------------------------------------
def _multiset_count(space):
    return comb(space.vocab_size + space.length - 1, space.length)


def _ascending_draw(space, rng, n):
    """Uniform non-decreasing sequence: a uniform `length`-subset of a stars-and-bars line."""
    slots = space.vocab_size + space.length - 1
    chosen = np.sort(np.argsort(rng.random((n, slots)), axis=1)[:, : space.length], axis=1)
    return chosen - np.arange(space.length)


_register(
    "sorted_ascending",
    lambda s: "tokens never decrease from left to right in alphabetical order (repeats allowed)",
    lambda x, s: (np.diff(x, axis=1) >= 0).all(axis=1),
    _multiset_count,
    _ascending_draw,
)
_register(
    "sorted_descending",
    lambda s: "tokens never increase from left to right in alphabetical order (repeats allowed)",
    lambda x, s: (np.diff(x, axis=1) <= 0).all(axis=1),
    _multiset_count,
    lambda s, rng, n: _ascending_draw(s, rng, n)[:, ::-1],
)


# --- alternating -----------------------------------------------------------------------------
def _alternating_draw(space, rng, n):
    first = rng.integers(0, space.vocab_size, size=n)
    second = (first + rng.integers(1, space.vocab_size, size=n)) % space.vocab_size
    pair = np.stack([first, second], axis=1)
    return np.tile(pair, (1, (space.length + 1) // 2))[:, : space.length]


_register(
    "alternating",
    lambda s: "two different tokens alternate, repeating every 2 positions (e.g. ABAB...)",
    lambda x, s: (x[:, 2:] == x[:, :-2]).all(axis=1) & (x[:, 0] != x[:, 1]),
    lambda s: s.vocab_size * (s.vocab_size - 1),
    _alternating_draw,
)


# --- contains_abc ----------------------------------------------------------------------------
_ABC = (0, 1, 2)


def _abc_step(state, token):
    """Knuth-Morris-Pratt matcher for the substring ABC (state = letters matched; 3 = found)."""
    if state == 3:
        return 3
    if token == _ABC[state]:
        return state + 1
    return 1 if token == _ABC[0] else 0


@lru_cache(maxsize=64)
def _abc_automaton(space):
    return Automaton(space.vocab_size, space.length, 0, _abc_step, lambda st: st == 3)


def _abc_holds(x, s):
    found = np.zeros(len(x), dtype=bool)
    for i in range(s.length - 2):
        found |= (x[:, i] == 0) & (x[:, i + 1] == 1) & (x[:, i + 2] == 2)
    return found


_register(
    "contains_abc",
    lambda s: "the sequence contains A, B, C as three consecutive tokens",
    _abc_holds,
    lambda s: _abc_automaton(s).count() if s.vocab_size >= 3 and s.length >= 3 else 0,
    lambda s, rng, n: _abc_automaton(s).sample(rng, n),
)


# --- starts_with / ends_with / first_last_match --------------------------------------------------
def _fix_position(position, token_of):
    def draw(space, rng, n):
        x = _uniform(space, rng, n)
        x[:, position] = token_of(space)
        return x

    return draw


_register(
    "starts_with",
    lambda s: f"the first token is {s.letter(s.starts_with_token)}",
    lambda x, s: x[:, 0] == s.starts_with_token,
    lambda s: s.vocab_size ** (s.length - 1),
    _fix_position(0, lambda s: s.starts_with_token),
)
_register(
    "ends_with",
    lambda s: f"the last token is {s.letter(s.ends_with_token)}",
    lambda x, s: x[:, -1] == s.ends_with_token,
    lambda s: s.vocab_size ** (s.length - 1),
    _fix_position(-1, lambda s: s.ends_with_token),
)


def _token_counts(x, s):
    """How often each token occurs in each row, [n, vocab]: one bincount over row-offset tokens."""
    n = len(x)
    flat = (x + np.arange(0, n * s.vocab_size, s.vocab_size)[:, None]).ravel()
    return np.bincount(flat, minlength=n * s.vocab_size).reshape(n, s.vocab_size)


# --- no_repeats ------------------------------------------------------------------------------
_register(
    "no_repeats",
    lambda s: "no token appears more than once",
    lambda x, s: _token_counts(x, s).max(axis=1, initial=0) <= 1,
    lambda s: (
        factorial(s.vocab_size) // factorial(s.vocab_size - s.length) if s.vocab_size >= s.length else 0
    ),
    lambda s, rng, n: np.argsort(rng.random((n, s.vocab_size)), axis=1)[:, : s.length],
)


# --- has_majority ----------------------------------------------------------------------------
def _majority_counts(space):
    """Weight of each majority size k (> length/2) for one fixed majority token."""
    ks = list(range(space.length // 2 + 1, space.length + 1))
    return ks, [comb(space.length, k) * (space.vocab_size - 1) ** (space.length - k) for k in ks]


def _majority_draw(space, rng, n):
    ks, weights = _majority_counts(space)
    k = np.array(ks)[_weighted_choice(rng, weights, n)]
    token = rng.integers(0, space.vocab_size, size=n)
    others = rng.integers(0, space.vocab_size - 1, size=(n, space.length))
    others += others >= token[:, None]  # uniform over the tokens other than `token`
    rank = np.argsort(np.argsort(rng.random((n, space.length)), axis=1), axis=1)
    return np.where(rank < k[:, None], token[:, None], others)


def _majority_holds(x, s):
    return _token_counts(x, s).max(axis=1) * 2 > s.length


_register(
    "has_majority",
    lambda s: f"one token fills more than half of the positions (at least {s.length // 2 + 1} of {s.length})",
    _majority_holds,
    lambda s: s.vocab_size * sum(_majority_counts(s)[1]),
    _majority_draw,
)


# --- increasing_pairs / decreasing_pairs -----------------------------------------------------------
def _pairs_draw(increasing):
    def draw(space, rng, n):
        lo, hi = np.triu_indices(space.vocab_size, k=1)
        pick = rng.integers(0, len(lo), size=(n, space.length // 2))
        first, second = (lo[pick], hi[pick]) if increasing else (hi[pick], lo[pick])
        x = _uniform(space, rng, n)  # the unpaired last token, when length is odd, stays uniform
        x[:, 0 : 2 * (space.length // 2) : 2] = first
        x[:, 1 : 2 * (space.length // 2) : 2] = second
        return x

    return draw


def _pairs_count(s):
    return (s.vocab_size * (s.vocab_size - 1) // 2) ** (s.length // 2) * s.vocab_size ** (s.length % 2)


def _pairs_holds(compare):
    def holds(x, s):
        m = 2 * (s.length // 2)
        return compare(x[:, 0:m:2], x[:, 1:m:2]).all(axis=1)

    return holds


def _pairs_text(word, s):
    pairs = ", ".join(f"{i + 1}-{i + 2}" for i in range(0, 2 * (s.length // 2), 2))
    return f"in each consecutive pair of positions ({pairs}) the second token is {word} than the first"


_register(
    "increasing_pairs",
    lambda s: _pairs_text("alphabetically later", s),
    _pairs_holds(np.less),
    _pairs_count,
    _pairs_draw(True),
)
_register(
    "decreasing_pairs",
    lambda s: _pairs_text("alphabetically earlier", s),
    _pairs_holds(np.greater),
    _pairs_count,
    _pairs_draw(False),
)


# --- vowel_consonant -------------------------------------------------------------------------
def _vc_counts(s):
    """Members starting with a vowel, and members starting with a consonant."""
    v, c = len(s.vowels), len(s.consonants)
    odd, even = (s.length + 1) // 2, s.length // 2
    return [v**odd * c**even, c**odd * v**even] if v and c else [0, 0]


def _vc_draw(space, rng, n):
    vowels, consonants = np.array(space.vowels), np.array(space.consonants)
    vowel_first = _weighted_choice(rng, _vc_counts(space), n) == 0
    is_vowel = (np.arange(space.length)[None, :] % 2 == 0) == vowel_first[:, None]
    v = vowels[rng.integers(0, len(vowels), size=(n, space.length))]
    c = consonants[rng.integers(0, len(consonants), size=(n, space.length))]
    return np.where(is_vowel, v, c)


def _vc_holds(x, s):
    is_vowel = np.isin(np.arange(s.vocab_size), s.vowels)[x]
    return (is_vowel[:, 1:] != is_vowel[:, :-1]).all(axis=1)


_register(
    "vowel_consonant",
    lambda s: f"vowels ({_letters_list(s, s.vowels)}) and consonants alternate, starting with either",
    _vc_holds,
    lambda s: sum(_vc_counts(s)),
    _vc_draw,
)


# --- first_last_match ------------------------------------------------------------------------
def _first_last_draw(space, rng, n):
    x = _uniform(space, rng, n)
    x[:, -1] = x[:, 0]
    return x


_register(
    "first_last_match",
    lambda s: "the first and last tokens are identical",
    lambda x, s: x[:, 0] == x[:, -1],
    lambda s: s.vocab_size ** (s.length - 1),
    _first_last_draw,
)


# --- mountain_pattern ------------------------------------------------------------------------
def _mountain_step(state, token):
    """States: ("start",), ("up", last, risen) and ("down", last). A fall needs an earlier rise."""
    kind = state[0]
    if kind == "start":
        return ("up", token, False)
    if kind == "up":
        _, last, risen = state
        if token > last:
            return ("up", token, True)
        if token == last:
            return state
        return ("down", token) if risen else None
    last = state[1]
    return ("down", token) if token <= last else None


@lru_cache(maxsize=64)
def _mountain_automaton(space):
    return Automaton(space.vocab_size, space.length, ("start",), _mountain_step, lambda st: st[0] == "down")


def _mountain_holds(x, s):
    """At least one rise and one fall, and every rise before the first fall."""
    d = np.diff(x, axis=1)
    rises, falls = d > 0, d < 0
    last_rise = d.shape[1] - 1 - rises[:, ::-1].argmax(axis=1)
    return rises.any(axis=1) & falls.any(axis=1) & (last_rise < falls.argmax(axis=1))


_register(
    "mountain_pattern",
    lambda s: (
        "tokens rise (strictly at least once) to a peak, then fall (strictly at least once), "
        "never rising again; flat steps allowed"
    ),
    _mountain_holds,
    lambda s: _mountain_automaton(s).count(),
    lambda s, rng, n: _mountain_automaton(s).sample(rng, n),
)

PATTERN_NAMES: tuple[str, ...] = tuple(PATTERNS)


def get_pattern(name: str) -> Pattern:
    try:
        return PATTERNS[name]
    except KeyError:
        raise KeyError(f"unknown pattern {name!r}; known: {', '.join(PATTERNS)}") from None


def match_matrix(sequences: np.ndarray, names, space: SequenceSpace) -> np.ndarray:
    """Bool [n, len(names)]: which of the named patterns each sequence satisfies."""
    sequences = np.asarray(sequences, dtype=np.int64).reshape(-1, space.length)
    if len(names) == 0:
        return np.zeros((len(sequences), 0), dtype=bool)
    return np.stack([PATTERNS[name].holds(sequences, space) for name in names], axis=1)
