"""Planning one example: everything random about it, drawn from one generator for (seed, index).

An example's plan fixes its selected patterns and target, its architecture and learning rate, its
training rows (split into train and validation), the corrupted rows, a held-out test set, the initial
weights and the batch-order seed. `plan_example(cfg, pools, index)` is a pure function: the same
config, seed and index give the same plan, whatever else runs, in whatever order.

Held-out rows are set aside first: the test set (for validation) and then the selection set (for
choosing stage 2's checkpoint), each with `validation.test_set_size` distinct members per selected
pattern (at most half of what a pool has left, so training keeps members too) and as many negatives.
Training rows are then drawn from what is left, so no held-out sequence is ever trained on, and the
test set plays no part in training or checkpoint choice.

Corruption (stage 1's labels): `staged_training.corruption_rate` of the target pattern's positive rows
are relabelled negative. Only rows that satisfy the target and none of the other selected patterns are
eligible, since relabelling a row that another selected pattern makes positive would teach a falsehood
about that pattern too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from weightzoo.config import Config
from weightzoo.model import ModelSpec, init_weights
from weightzoo.patterns import PATTERN_NAMES
from weightzoo.pools import row_key, sample_negatives
from weightzoo.seeding import Stream, rng_for
from weightzoo.subject_data import SubjectDataset, build_subject_dataset, dataset_sizes

NEGATIVE = "negative"


@dataclass
class TestSet:
    """Held-out rows; `groups[i]` is the selected pattern row i belongs to, or "negative"."""

    sequences: np.ndarray
    groups: tuple[str, ...]

    @property
    def labels(self) -> np.ndarray:
        return np.array([g != NEGATIVE for g in self.groups], dtype=np.int64)


@dataclass
class ExamplePlan:
    index: int
    selected: tuple[str, ...]
    target: str
    spec: ModelSpec
    data: SubjectDataset  # all training rows, clean labels
    is_val: np.ndarray  # bool [n]: the row is in the validation split
    corrupted: np.ndarray  # bool [n]: the row's label is flipped to 0 in stage 1
    test: TestSet  # held out for validation: never trained on, never used to choose a checkpoint
    selection: TestSet  # held out for choosing stage 2's checkpoint: never trained on
    init_weights: dict[str, torch.Tensor]
    order_seed: int

    @property
    def stage1_labels(self) -> np.ndarray:
        return np.where(self.corrupted, 0, self.data.labels)

    def corruption_stats(self) -> dict:
        target_rows = self.data.source == self.data.selected.index(self.target)
        return {
            "target_positive_rows": int(target_rows.sum()),
            "corrupted_rows": int(self.corrupted.sum()),
            "corrupted_train_rows": int((self.corrupted & ~self.is_val).sum()),
            "corrupted_val_rows": int((self.corrupted & self.is_val).sum()),
            "corruption_rate": float(self.corrupted.sum() / max(int(target_rows.sum()), 1)),
        }


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(math.exp(rng.uniform(math.log(low), math.log(high)))) if high > low else float(low)


def _hold_out(space, pools, selected, size, rng, exclude_negatives):
    """Up to `size` distinct members per selected pattern (at most half of each pool) and `size`
    negatives; returns them as a TestSet, the pools without them, and the negatives."""
    remaining, rows, groups = {}, [], []
    for name in selected:
        pool = pools[name]
        n = min(size, max(1, len(pool) // 2)) if len(pool) > 1 else 0
        order = rng.permutation(len(pool))
        rows.append(pool[order[:n]])
        groups += [name] * n
        remaining[name] = pool[order[n:]]
    negatives = sample_negatives(space, selected, size, rng, exclude_rows=exclude_negatives)
    rows.append(negatives)
    groups += [NEGATIVE] * len(negatives)
    return TestSet(np.concatenate(rows), tuple(groups)), remaining, negatives


def plan_example(cfg: Config, pools: dict[str, np.ndarray], index: int) -> ExamplePlan:
    rng = rng_for(cfg.pipeline.random_seed, Stream.EXAMPLE, index)
    pat = cfg.dataset.patterns
    enabled = tuple(pat.enabled_patterns)
    space = cfg.space

    k = int(rng.integers(pat.min_patterns_per_batch, pat.max_patterns_per_batch + 1))
    chosen = set(rng.choice(len(enabled), size=k, replace=False).tolist())
    selected = tuple(name for name in PATTERN_NAMES if name in enabled and enabled.index(name) in chosen)
    target = selected[int(rng.integers(len(selected)))]

    m = cfg.model
    spec = ModelSpec(
        vocab_size=m.vocab_size,
        sequence_length=m.sequence_length,
        num_layers=int(rng.integers(m.num_layers.min, m.num_layers.max + 1)),
        neurons_per_layer=int(rng.integers(m.neurons_per_layer.min, m.neurons_per_layer.max + 1)),
        activation_type=str(m.activation_types[int(rng.integers(len(m.activation_types)))]),
        dropout_rate=float(m.dropout_rate),
        learning_rate=_log_uniform(rng, m.learning_rate.min, m.learning_rate.max),
        input_encoding=m.input_encoding,
    )

    # Held-out rows first (the test set, then the selection set), then training rows from what remains.
    test_size = cfg.validation.test_set_size
    test, train_pools, test_negatives = _hold_out(space, pools, selected, test_size, rng, None)
    selection, train_pools, select_negatives = _hold_out(
        space, train_pools, selected, test_size, rng, test_negatives
    )
    held_negatives = np.concatenate([test_negatives, select_negatives])

    sizes = dataset_sizes(
        len(selected),
        pat.target_total_examples,
        pat.negative_ratio,
        pat.samples_per_pattern.min,
        pat.max_total_examples,
    )
    data = build_subject_dataset(
        space, train_pools, selected, enabled, sizes, rng, exclude_negatives=held_negatives
    )
    n = len(data)
    is_val = np.zeros(n, dtype=bool)
    is_val[rng.permutation(n)[: round(n * cfg.training.validation_split)]] = True

    target_col = enabled.index(target)
    others = [enabled.index(s) for s in selected if s != target]
    eligible = (data.source == selected.index(target)) & data.matches[:, target_col]
    if others:
        eligible &= ~data.matches[:, others].any(axis=1)
    eligible_rows = np.flatnonzero(eligible)
    n_corrupt = round(cfg.staged_training.corruption_rate * len(eligible_rows))
    corrupted = np.zeros(n, dtype=bool)
    corrupted[rng.choice(eligible_rows, size=n_corrupt, replace=False)] = True

    generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
    return ExamplePlan(
        index=index,
        selected=selected,
        target=target,
        spec=spec,
        data=data,
        is_val=is_val,
        corrupted=corrupted,
        test=test,
        selection=selection,
        init_weights=init_weights(spec, generator),
        order_seed=int(rng.integers(2**62)),
    )


def held_out_is_unseen(plan: ExamplePlan) -> bool:
    """True when no test or selection sequence appears among the training rows, and the two held-out
    sets share none either (a check for tests and audits)."""
    seen = {row_key(r) for r in plan.data.sequences}
    test = {row_key(r) for r in plan.test.sequences}
    selection = {row_key(r) for r in plan.selection.sequences}
    return not (seen & test) and not (seen & selection) and not (test & selection)
