"""The space of token sequences a run works in: vocabulary size, length, and how tokens print.

Tokens are integers 0..vocab_size-1 and print as letters A, B, C, ... . Vowels are the letters
A, E, I, O, U that fall inside the vocabulary, so every description derived from a space is true
for that vocabulary.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

import numpy as np

LETTERS = string.ascii_uppercase
VOWEL_LETTERS = "AEIOU"
MIN_VOCAB, MAX_VOCAB = 5, 26
MIN_LENGTH, MAX_LENGTH = 4, 20


@dataclass(frozen=True)
class SequenceSpace:
    """All sequences of `length` tokens over a vocabulary of `vocab_size` letters."""

    vocab_size: int
    length: int
    starts_with_token: int = 0  # the token `starts_with` asks for (A by default)
    ends_with_token: int = 1  # the token `ends_with` asks for (B by default)

    @property
    def letters(self) -> str:
        return LETTERS[: self.vocab_size]

    @property
    def vowels(self) -> tuple[int, ...]:
        return tuple(i for i, ch in enumerate(self.letters) if ch in VOWEL_LETTERS)

    @property
    def consonants(self) -> tuple[int, ...]:
        return tuple(i for i, ch in enumerate(self.letters) if ch not in VOWEL_LETTERS)

    @property
    def size(self) -> int:
        """Number of sequences in the space (may exceed 64 bits: a Python int)."""
        return self.vocab_size**self.length

    def letter(self, token: int) -> str:
        return LETTERS[token]

    def to_letters(self, row) -> list[str]:
        return [LETTERS[int(t)] for t in row]

    def to_text(self, row) -> str:
        return "".join(self.to_letters(row))

    def from_letters(self, letters) -> np.ndarray:
        """Parse a sequence given as a string or a list of single letters; reject anything else."""
        tokens = []
        for ch in letters:
            if not isinstance(ch, str) or len(ch) != 1 or ch not in self.letters:
                raise ValueError(f"{ch!r} is not a token of vocabulary {self.letters}")
            tokens.append(LETTERS.index(ch))
        if len(tokens) != self.length:
            raise ValueError(
                f"sequence {''.join(letters)!r} has length {len(tokens)}, expected {self.length}"
            )
        return np.array(tokens, dtype=np.int64)
