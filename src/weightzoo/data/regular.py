"""Exact counting and uniform sampling for patterns that a small automaton recognises.

A pattern given as a deterministic automaton (a start state, a step function that may reject, and
accepting states) can be counted exactly by dynamic programming over positions, and sampled
uniformly by choosing each next token with probability proportional to the number of accepted
completions it leaves. Counts are Python integers (exact at any size); the per-step choice uses
float64 ratios of those exact counts, so the only deviation from uniform is float64 rounding.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from functools import cached_property

import numpy as np

State = Hashable
Step = Callable[[State, int], "State | None"]


@dataclass(frozen=True)
class Automaton:
    """A deterministic automaton over tokens 0..vocab_size-1 reading sequences of a fixed length."""

    vocab_size: int
    length: int
    start: State
    step: Step
    accepts: Callable[[State], bool]

    @cached_property
    def _tables(self):
        """States reachable at each position, and exact completion counts for each of them."""
        layers: list[list[State]] = [[self.start]]
        moves: list[dict[State, list[State | None]]] = []
        for _ in range(self.length):
            nexts: dict[State, None] = {}
            layer_moves = {}
            for state in layers[-1]:
                targets = [self.step(state, t) for t in range(self.vocab_size)]
                layer_moves[state] = targets
                for target in targets:
                    if target is not None:
                        nexts[target] = None
            moves.append(layer_moves)
            layers.append(list(nexts))
        completions: list[dict[State, int]] = [dict() for _ in layers]
        completions[-1] = {s: int(bool(self.accepts(s))) for s in layers[-1]}
        for pos in range(self.length - 1, -1, -1):
            after = completions[pos + 1]
            completions[pos] = {s: sum(after[t] for t in moves[pos][s] if t is not None) for s in layers[pos]}
        return layers, moves, completions

    def count(self) -> int:
        """Exact number of accepted sequences."""
        _, _, completions = self._tables
        return completions[0][self.start]

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """`n` sequences drawn independently and uniformly from the accepted ones, shape [n, length]."""
        layers, moves, completions = self._tables
        if completions[0][self.start] == 0:
            raise ValueError("the automaton accepts no sequence")
        out = np.empty((n, self.length), dtype=np.int64)
        state_index = np.zeros(n, dtype=np.int64)  # index into layers[pos]
        for pos in range(self.length):
            layer, after = layers[pos], completions[pos + 1]
            next_index = {s: i for i, s in enumerate(layers[pos + 1])}
            cumulative = np.zeros((len(layer), self.vocab_size))
            target_index = np.full((len(layer), self.vocab_size), -1, dtype=np.int64)
            for i, state in enumerate(layer):
                total = completions[pos][state]
                if total == 0:
                    continue
                weights = [after[t] if t is not None else 0 for t in moves[pos][state]]
                cumulative[i] = np.cumsum([w / total for w in weights])
                target_index[i] = [next_index[t] if t is not None else -1 for t in moves[pos][state]]
            u = rng.random(n)
            rows = cumulative[state_index]
            tokens = (u[:, None] >= rows).sum(axis=1)
            # Float rounding can leave the last cumulative value a hair below 1: never pick a dead token.
            last_live = (rows < rows[:, -1:]).sum(axis=1)
            tokens = np.minimum(tokens, last_live)
            out[:, pos] = tokens
            state_index = target_index[state_index, tokens]
        return out
