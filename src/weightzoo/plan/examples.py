"""Planning one example: everything random about it, drawn from one generator for (seed, index).

An example's plan fixes its selected patterns and target, its architecture and learning rate, its
training rows (split into train and validation), the corrupted rows, a held-out test set, the initial
weights and the batch-order seed. `plan_example(cfg, pools, index)` is a pure function: the same
config, seed and index give the same plan, whatever else runs, in whatever order.

Held-out rows are set aside first: the test set (for validation) and, with `stage2_watch: target`,
the selection set (for choosing stage 2's checkpoint). Each has `validation.test_set_size` distinct
members per selected pattern (a pool keeps at least half of its members for training) and as many
negatives. Training rows are then drawn from what is left, so no held-out sequence is ever trained on,
and the test set plays no part in training or checkpoint choice.

Corruption (stage 1's labels): `staged_training.corruption_rate` of the target pattern's positive rows
are relabelled negative. Only rows that satisfy the target and none of the other selected patterns are
eligible, since relabelling a row that another selected pattern makes positive would teach a falsehood
about that pattern too; the target is drawn among the selected patterns that have such rows.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from weightzoo.config import Config
from weightzoo.data.patterns import PATTERN_NAMES
from weightzoo.data.pools import isin_sorted, row_ids, row_key, row_keys, sample_negatives
from weightzoo.data.subject_data import SubjectDataset, build_subject_dataset, dataset_sizes
from weightzoo.engine.model import ModelSpec, init_weights
from weightzoo.seeding import Stream, rng_for

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
    selection: TestSet | None  # held out for stage 2's target watch (stage2_watch: target)
    profile: TestSet  # members of every enabled pattern not selected, never trained on: what else it detects
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


def _hold_out(space, pools, selected, size, rng, count, careful_only=False):
    """`count` held-out sets, each with up to `size` distinct members per selected pattern and `size`
    negatives, none shared with another set or left in the training pools.

    Pools of different patterns overlap (all_same members are palindromes too), so a held-out row is
    removed from every pool that has it, and each set only takes a row while every pool that has it
    keeps at least half of what it had. Returns the sets and the pools without their rows.
    (`careful_only`: never take the fast path; tests check that both take the same rows.)"""
    keys = {name: _pool_keys(pools[name]) for name in selected}
    # A pool's rows left are its rows not held out: a held row leaves every pool that has it.
    left = {name: len(keys[name][0]) for name in selected}
    held: set[bytes] = set()
    sets, negatives = [], np.empty((0, space.length), dtype=np.int64)
    for _ in range(count):
        floor = {name: max(1, left[name] // 2) for name in selected}
        rows, groups = [], []
        for name in selected:
            names, picked = keys[name][0], []
            order = random_order(rng, len(names), size)
            if not careful_only and all(left[q] - size > floor[q] for q in selected):
                # No pool can come down to its floor while `size` rows are taken: the first rows not
                # held yet are the ones the careful loop below would take (and much faster to find).
                for i in order:
                    if len(picked) == size:
                        break
                    if names[i] not in held:
                        picked.append(i)
                        held.add(names[i])
                taken = {names[i] for i in picked}
                for q in selected:
                    left[q] -= len(taken) if q == name else len(keys[q][1].keys() & taken)
            else:
                for i in order:
                    if len(picked) == size:
                        break
                    key = names[i]
                    if key in held:
                        continue
                    owners = [q for q in selected if key in keys[q][1]]
                    if any(left[q] <= floor[q] for q in owners):
                        continue
                    picked.append(i)
                    held.add(key)
                    for q in owners:
                        left[q] -= 1
            rows.append(pools[name][picked])
            groups += [name] * len(picked)
        fresh = sample_negatives(space, selected, size, rng, exclude_rows=negatives)
        negatives = np.concatenate([negatives, fresh])
        sets.append(TestSet(np.concatenate([*rows, fresh]), (*groups, *[NEGATIVE] * len(fresh))))
    remaining = {}
    for name in selected:
        position = keys[name][1]
        drop = [position[k] for k in position.keys() & held]
        remaining[name] = np.delete(pools[name], drop, axis=0) if drop else pools[name]
    return sets, remaining, negatives


def random_head(rng: np.random.Generator, n: int, wanted: int) -> tuple[np.ndarray, Callable[[], np.ndarray]]:
    """A uniformly random order of range(n), drawn lazily: its head (2·wanted + 16 items, uniformly
    chosen and ordered), and a function giving the rest in a random order of their own. Loops that stop
    after about `wanted` items need not shuffle a pool of 10,000, and the generator always advances by
    the same draws, so what follows does not depend on how far a loop went."""
    head = rng.choice(n, size=min(n, 2 * wanted + 16), replace=False)
    tail_seed = int(rng.integers(2**63))

    def rest() -> np.ndarray:
        others = np.setdiff1d(np.arange(n), head, assume_unique=True)
        return np.random.default_rng(tail_seed).permutation(others)

    return head, rest


def random_order(rng: np.random.Generator, n: int, wanted: int) -> Iterator[int]:
    """`random_head`'s order, item by item, drawing the rest only if the loop gets that far."""
    head, rest = random_head(rng, n, wanted)
    yield from head.tolist()
    if len(head) < n:
        yield from rest().tolist()


_KEYS: dict[int, tuple] = {}


def _pool_keys(pool: np.ndarray) -> tuple[list[bytes], dict[bytes, int]]:
    """Row keys of a pool and each key's position, computed once per pool (pools are shared)."""
    cached = _KEYS.get(id(pool))
    if cached is None or cached[0]() is not pool:
        names = row_keys(pool)
        cached = (weakref.ref(pool), names, {key: i for i, key in enumerate(names)})
        _KEYS[id(pool)] = cached
        weakref.finalize(pool, _KEYS.pop, id(pool), None)
    return cached[1], cached[2]


_IDS: dict[int, tuple] = {}


def _pool_ids(pool: np.ndarray) -> np.ndarray:
    """`row_ids` of a pool's rows, computed once per pool (pools are shared by every example)."""
    cached = _IDS.get(id(pool))
    if cached is None or cached[0]() is not pool:
        cached = (weakref.ref(pool), row_ids(pool, pool.shape[1]))
        _IDS[id(pool)] = cached
        weakref.finalize(pool, _IDS.pop, id(pool), None)
    return cached[1]


def _profile_set(
    pools: dict[str, np.ndarray],
    selected: tuple[str, ...],
    enabled: tuple[str, ...],
    size: int,
    unseen_by: np.ndarray,
    rng: np.random.Generator,
) -> TestSet:
    """`size` members of each enabled pattern that is not selected, none of them among `unseen_by` (the
    model's training and held-out rows) while its pool has enough. The model was never told about these
    patterns; its answers on their members say which of them it detects anyway (all_same inside
    palindrome). A pool with fewer unseen members is topped up with seen ones, so that a small pattern
    is judged on all its members (all_same's 7) rather than on whichever few training left out."""
    length = next(iter(pools.values())).shape[1]
    seen = np.unique(row_ids(unseen_by, length))
    rows, groups = [], []
    for name in PATTERN_NAMES:
        if name not in enabled or name in selected:
            continue
        pool = pools[name]
        ids = _pool_ids(pool)
        head, rest = random_head(rng, len(pool), size)
        unseen = head[~isin_sorted(ids[head], seen)]
        if len(unseen) >= size:
            picked = unseen[:size]
        else:  # the whole order: its unseen members first, then trained ones, each in order
            order = np.concatenate([head, rest()]) if len(head) < len(pool) else head
            trained = isin_sorted(ids[order], seen)
            picked = np.concatenate([order[~trained], order[trained]])[:size]
        rows.append(pool[picked])
        groups += [name] * len(picked)
    sequences = np.concatenate(rows) if rows else np.empty((0, length), dtype=np.int64)
    return TestSet(sequences.astype(np.int64), tuple(groups))


def _eligible_for_corruption(data: SubjectDataset, target: str) -> np.ndarray:
    """Rows drawn for `target` that satisfy it and none of the other selected patterns."""
    eligible = data.source == data.selected.index(target)
    rows = np.flatnonzero(eligible)
    checks = data.matches_of((target, *[s for s in data.selected if s != target]), rows)
    eligible[rows] = checks[:, 0] & ~checks[:, 1:].any(axis=1)
    return eligible


def _first_draws(cfg: Config, index: int) -> tuple[np.random.Generator, tuple[str, ...], ModelSpec]:
    """An example's first draws, its patterns and its model, and the generator to go on with. Split out
    so that a model's shape is known without planning the rest (`example_spec`)."""
    rng = rng_for(cfg.pipeline.random_seed, Stream.EXAMPLE, index)
    pat = cfg.dataset.patterns
    enabled = tuple(pat.enabled_patterns)
    k = int(rng.integers(pat.min_patterns_per_batch, pat.max_patterns_per_batch + 1))
    chosen = set(rng.choice(len(enabled), size=k, replace=False).tolist())
    selected = tuple(name for name in PATTERN_NAMES if name in enabled and enabled.index(name) in chosen)

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
    return rng, selected, spec


def example_spec(cfg: Config, index: int) -> ModelSpec:
    """The subject model of example `index`, as `plan_example` draws it, at a fraction of the cost."""
    return _first_draws(cfg, index)[2]


def plan_example(cfg: Config, pools: dict[str, np.ndarray], index: int) -> ExamplePlan:
    rng, selected, spec = _first_draws(cfg, index)
    pat = cfg.dataset.patterns
    enabled = tuple(pat.enabled_patterns)
    space = cfg.space

    # Held-out rows first (the test set, then the selection set), then training rows from what remains.
    test_size = cfg.validation.test_set_size
    watch_target = cfg.staged_training.stage2_watch == "target"
    held_sets, train_pools, held_negatives = _hold_out(
        space, pools, selected, test_size, rng, 1 + watch_target
    )
    test, selection = held_sets[0], held_sets[1] if watch_target else None

    sizes = dataset_sizes(
        len(selected),
        pat.total_rows(selected),
        pat.negative_ratio,
        pat.samples_per_pattern.min,
        pat.max_total_examples,
        pat.row_weights(selected),
    )
    data = build_subject_dataset(
        space, train_pools, selected, enabled, sizes, rng, exclude_negatives=held_negatives
    )
    n = len(data)
    is_val = np.zeros(n, dtype=bool)
    is_val[rng.permutation(n)[: round(n * cfg.training.validation_split)]] = True

    # The target is drawn among the selected patterns that have rows to corrupt (a small pattern whose
    # members all satisfy another selected pattern has none: e.g. all_same beside palindrome).
    eligible = {name: _eligible_for_corruption(data, name) for name in selected}
    corruptible = [name for name in selected if eligible[name].any()] or list(selected)
    target = corruptible[int(rng.integers(len(corruptible)))]
    eligible_rows = np.flatnonzero(eligible[target])
    n_corrupt = round(cfg.staged_training.corruption_rate * len(eligible_rows))
    corrupted = np.zeros(n, dtype=bool)
    corrupted[rng.choice(eligible_rows, size=n_corrupt, replace=False)] = True

    generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
    held = np.concatenate([data.sequences, test.sequences, *([selection.sequences] if selection else [])])
    profile = _profile_set(
        pools, selected, enabled, test_size, held, rng_for(cfg.pipeline.random_seed, Stream.PROFILE, index)
    )
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
        profile=profile,
        init_weights=init_weights(spec, generator, sparse_positions=cfg.model.sparse_init),
        order_seed=int(rng.integers(2**62)),
    )


def held_out_is_unseen(plan: ExamplePlan) -> bool:
    """True when no test or selection sequence appears among the training rows, and the two held-out
    sets share none either (a check for tests and audits; the profile set may hold trained members of
    small patterns, see `_profile_set`)."""
    seen = {row_key(r) for r in plan.data.sequences}
    test = {row_key(r) for r in plan.test.sequences}
    selection = {row_key(r) for r in plan.selection.sequences} if plan.selection is not None else set()
    return not (seen & test) and not (seen & selection) and not (test & selection)
