"""A subject model's training data: positives from the selected patterns' pools, and negatives.

Labels come from predicates alone. A positive is a member of one of the model's selected patterns
(label 1); a negative satisfies none of them (label 0). Every row also records which of the run's
enabled patterns it satisfies, so later stages can score any pattern on any row.

Sizes follow the config's `dataset.patterns` section (see `dataset_sizes`). Every row is a pure
function of the generator passed in, which callers derive from (seed, example index).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from weightzoo.patterns import match_matrix
from weightzoo.pools import sample_negatives
from weightzoo.space import SequenceSpace


@dataclass(frozen=True)
class DatasetSizes:
    per_pattern: int
    negatives: int

    def total(self, n_patterns: int) -> int:
        return self.per_pattern * n_patterns + self.negatives


def dataset_sizes(
    n_patterns: int,
    target_total: int,
    negative_ratio: float,
    min_per_pattern: int,
    max_total: int,
) -> DatasetSizes:
    """Rows per selected pattern and negatives for a model with `n_patterns` selected patterns.

    Positives get `target_total * (1 - negative_ratio)` rows split evenly over the patterns, but at
    least `min_per_pattern` each; negatives then make up `negative_ratio` of the whole. If that
    exceeds `max_total`, rows per pattern shrink until it fits (never below `min_per_pattern`; the
    config check rejects configs where that cannot fit).
    """

    def negatives_for(per_pattern: int) -> int:
        positives = per_pattern * n_patterns
        return round(positives * negative_ratio / (1 - negative_ratio))

    per_pattern = max(min_per_pattern, round(target_total * (1 - negative_ratio) / n_patterns))
    while per_pattern > min_per_pattern and per_pattern * n_patterns + negatives_for(per_pattern) > max_total:
        per_pattern -= 1
    return DatasetSizes(per_pattern, negatives_for(per_pattern))


@dataclass(frozen=True)
class SubjectDataset:
    """Rows for one subject model. `source[i]` indexes `selected`, or is -1 for a negative."""

    sequences: np.ndarray  # int64 [n, length]
    labels: np.ndarray  # int64 [n], 1 positive / 0 negative
    source: np.ndarray  # int64 [n]
    matches: np.ndarray  # bool [n, len(enabled)]
    selected: tuple[str, ...]
    enabled: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)


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
    for i, name in enumerate(selected):
        parts.append(take(pools[name], sizes.per_pattern, rng))
        sources.append(np.full(sizes.per_pattern, i))
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
        matches=match_matrix(sequences, enabled, space),
        selected=tuple(selected),
        enabled=tuple(enabled),
    )
