"""A subject model's training data: positives from the selected patterns' pools, and negatives.

Labels come from predicates alone. A positive is a member of one of the model's selected patterns
(label 1); a negative satisfies none of them (label 0). Every row also records which of the run's
enabled patterns it satisfies, so later stages can score any pattern on any row.

Sizes follow the config's `dataset.patterns` section (see `dataset_sizes`). Every row is a pure
function of the generator passed in, which callers derive from (seed, example index).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from weightzoo.data.patterns import match_matrix
from weightzoo.data.pools import sample_negatives
from weightzoo.data.space import SequenceSpace


@dataclass(frozen=True)
class DatasetSizes:
    """Rows of one subject dataset: `per_pattern[i]` for the i-th selected pattern, then negatives."""

    per_pattern: tuple[int, ...]
    negatives: int

    @property
    def positives(self) -> int:
        return sum(self.per_pattern)

    @property
    def total(self) -> int:
        return self.positives + self.negatives


def dataset_sizes(
    n_patterns: int,
    target_total: int,
    negative_ratio: float,
    min_per_pattern: int,
    max_total: int,
    weights: tuple[float, ...] | None = None,
) -> DatasetSizes:
    """Rows per selected pattern and negatives for a model with `n_patterns` selected patterns.

    `negative_ratio` is negatives per positive, as the seed's code read it (0.5: one negative for two
    positives; 1: as many negatives as positives). Positives are `target_total / (1 + negative_ratio)`,
    shared among the patterns in proportion to their weights (`weights`, default equal:
    `dataset.patterns.pattern_rows`), each at least `min_per_pattern`; negatives are `negative_ratio`
    times the positives. If that exceeds `max_total`, every share shrinks by the same factor until it
    fits (never below `min_per_pattern`; the config check rejects configs where that cannot fit).

    Weights move rows between a model's patterns, never change its total: every model of a config has
    about the same number of rows, so none waits on a larger neighbour in its training stack.
    """
    weights = weights or (1.0,) * n_patterns
    positives = target_total / (1 + negative_ratio)

    def sizes_at(scale: float) -> DatasetSizes:
        per = tuple(max(min_per_pattern, round(positives * scale * w / sum(weights))) for w in weights)
        return DatasetSizes(per, round(sum(per) * negative_ratio))

    sizes = sizes_at(1.0)
    if sizes.total > max_total:
        # the largest scale (to 1e-9) at which the rounded sizes fit
        low, high = 0.0, 1.0
        while high - low > 1e-9:
            mid = (low + high) / 2
            low, high = (mid, high) if sizes_at(mid).total <= max_total else (low, mid)
        sizes = sizes_at(low)
    return sizes


@dataclass(frozen=True)
class SubjectDataset:
    """Rows for one subject model. `source[i]` indexes `selected`, or is -1 for a negative."""

    sequences: np.ndarray  # int64 [n, length]
    labels: np.ndarray  # int64 [n], 1 positive / 0 negative
    source: np.ndarray  # int64 [n]
    selected: tuple[str, ...]
    enabled: tuple[str, ...]
    space: SequenceSpace

    def __len__(self) -> int:
        return len(self.labels)

    @functools.cached_property
    def matches(self) -> np.ndarray:
        """bool [n, len(enabled)]: which enabled patterns each row satisfies. Computed when first asked
        for: planning needs only the selected patterns' columns (`matches_of`)."""
        return match_matrix(self.sequences, self.enabled, self.space)

    def matches_of(self, names: tuple[str, ...], rows: np.ndarray | None = None) -> np.ndarray:
        """bool [rows, len(names)]: whether each row (all by default) satisfies each named pattern."""
        sequences = self.sequences if rows is None else self.sequences[rows]
        return match_matrix(sequences, names, self.space).reshape(len(sequences), len(names))


def take(rows: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` rows: distinct ones while they last (in random order), then uniform repeats."""
    if len(rows) == 0:
        raise ValueError("no rows to take from")
    order = rng.permutation(len(rows))
    if n <= len(rows):
        return rows[order[:n]]
    extra = rng.integers(0, len(rows), size=n - len(rows))
    return rows[np.concatenate([order, extra])]


def build_subject_dataset(
    space: SequenceSpace,
    pools: dict[str, np.ndarray],
    selected: tuple[str, ...],
    enabled: tuple[str, ...],
    sizes: DatasetSizes,
    rng: np.random.Generator,
    exclude_negatives: np.ndarray | None = None,
) -> SubjectDataset:
    """Draw positives from each selected pattern's pool and uniform negatives (none of them in
    `exclude_negatives`, e.g. held-out test rows), then shuffle."""
    parts, sources = [], []
    for i, (name, rows) in enumerate(zip(selected, sizes.per_pattern, strict=True)):
        parts.append(take(pools[name], rows, rng))
        sources.append(np.full(rows, i))
    if sizes.negatives:
        negatives = sample_negatives(space, selected, sizes.negatives, rng, exclude_rows=exclude_negatives)
        if len(negatives) == 0:
            raise ValueError(f"no sequence satisfies none of {', '.join(selected)}")
        parts.append(take(negatives, sizes.negatives, rng))
        sources.append(np.full(sizes.negatives, -1))
    sequences = np.concatenate(parts).astype(np.int64)
    source = np.concatenate(sources).astype(np.int64)
    order = rng.permutation(len(sequences))
    sequences, source = sequences[order], source[order]
    return SubjectDataset(
        sequences=sequences,
        labels=(source >= 0).astype(np.int64),
        source=source,
        selected=tuple(selected),
        enabled=tuple(enabled),
        space=space,
    )
