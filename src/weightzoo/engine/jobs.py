"""What the engine takes and gives: a model's training problem (`TrainingJob`), what comes back
(`TrainingResult`), how models are grouped into stacks (`stack_key`) and padded (`Padding`), and each
model's row order per epoch, a pure function of its own seed, stage and epoch (`epoch_orders`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from weightzoo.engine.model import ModelSpec


@dataclass
class TrainingJob:
    """One model's training problem. Labels: `*_stage1` corrupted, `*_stage2` clean."""

    spec: ModelSpec
    x_train: np.ndarray
    y_train_stage1: np.ndarray
    y_train_stage2: np.ndarray
    x_val: np.ndarray
    y_val_stage1: np.ndarray
    y_val_stage2: np.ndarray
    init_weights: dict[str, torch.Tensor]
    order_seed: int
    # Stage 2's target watch scores a held-out selection set: rows, labels, and each row's group.
    x_select: np.ndarray | None = None
    y_select: np.ndarray | None = None
    select_groups: np.ndarray | None = None
    target_group: int = 0
    # The most each selection group may lose before it is penalized (inf: never); None: every group
    # gets `StageRules.stage2_max_other_drop`.
    select_allowed_drop: np.ndarray | None = None
    # Train on standardized inputs (`model.input_standardization`), reading `init_weights` as the
    # standardized model's; the weights handed back are folded onto the raw encoding
    # (`model.fold_input_standardization`), as every stored model takes it.
    standardize_inputs: bool = False
    # Keep the weights after every epoch (TrainingResult.snapshots), with Adam's state if asked.
    snapshot_epochs: bool = False
    snapshot_optimizer: bool = False


@dataclass
class TrainingResult:
    degraded: dict[str, torch.Tensor]
    improved: dict[str, torch.Tensor]
    stage1_epochs: int
    stage2_epochs: int
    stage1_best_epoch: int
    stage2_best_epoch: int  # 0: no stage-2 epoch ended with finite weights (improved = degraded)
    stage1_learned: bool
    finite: bool
    history: dict[str, list[float]] = field(default_factory=dict)
    # With `TrainingJob.snapshot_epochs`: after each epoch, {"stage", "epoch", "weights"} and with
    # `snapshot_optimizer` {"adam": {"exp_avg": weights-like, "exp_avg_sq": weights-like, "step"}}.
    snapshots: list[dict] = field(default_factory=list)


@dataclass
class CohortStats:
    """What the engine measured: models trained, seconds, and arithmetic done (padded FLOPs)."""

    models: int = 0
    seconds: float = 0.0
    flops: float = 0.0
    stacks: int = 0

    @property
    def models_per_second(self) -> float:
        return self.models / self.seconds if self.seconds else 0.0

    @property
    def gflops_per_second(self) -> float:
        return self.flops / self.seconds / 1e9 if self.seconds else 0.0


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a well-spread 64-bit hash of each uint64 (arithmetic wraps)."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def epoch_orders(seeds, stages, epochs, counts, width: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Row orders of one epoch for many models at once, [models, most rows or `width`] padded with
    zeros, and each model's row count. Model k's order is a pure function of (seeds[k], stages[k],
    epochs[k], counts[k]): rows sorted by a hash of those and the row's index."""
    counts = np.asarray(counts, dtype=np.int64)
    width = max(int(counts.max(initial=0)), width, 1)
    model = _mix(
        _mix(np.asarray(seeds, dtype=np.uint64)) ^ (np.asarray(stages, dtype=np.uint64) << np.uint64(32))
    )
    model = _mix(model ^ np.asarray(epochs, dtype=np.uint64))
    rows = np.arange(width, dtype=np.uint64)
    keys = _mix(model[:, None] ^ _mix(rows)[None, :])
    keys[rows[None, :] >= counts[:, None].astype(np.uint64)] = np.iinfo(np.uint64).max  # padding sorts last
    order = np.argsort(keys, axis=1, kind="stable")
    order[np.arange(width)[None, :] >= counts[:, None]] = 0
    return order, counts


def epoch_order(order_seed: int, stage: int, epoch: int, n: int) -> np.ndarray:
    """The row order of one epoch of one model: a pure function of its seed, stage and epoch."""
    return epoch_orders([order_seed], [stage], [epoch], [n])[0][0, :n]


WIDTH_BAND = 8  # widths 25-32 and 33-40 stack apart: less padding, stacks still large (measured ~10% faster)


def stack_key(spec: ModelSpec) -> tuple:
    """Models with the same key train in one stack; widths within a band are padded to the widest."""
    band = -(-spec.neurons_per_layer // WIDTH_BAND)
    return (spec.num_layers, spec.activation_type, spec.input_size, spec.dropout_rate, band)


@dataclass(frozen=True)
class Padding:
    """Sizes every stack is padded to, whichever models it holds.

    Padding with zeros is exact in arithmetic, but the products' and sums' rounding can depend on the
    padded sizes (a longer last batch, a wider layer). With these fixed, a model's every bit is the same
    whichever models share its stack: an example is then a function of itself alone, not of the work
    unit it was trained in. Sizes a job exceeds fall back to the stack's own largest."""

    max_width: int  # a stack's width: its width band's widest, capped at this
    train_rows: int
    val_rows: int
    select_rows: int = 0


def pad_rows(arrays: list[np.ndarray], rows: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Stack arrays of different lengths along a new first axis, zero-padded to at least `rows`;
    returns (stacked, lengths)."""
    lengths = np.array([len(a) for a in arrays])
    longest = max(int(lengths.max()), rows, 1)
    shape = (len(arrays), longest) + arrays[0].shape[1:]
    out = np.zeros(shape, dtype=arrays[0].dtype)
    for i, a in enumerate(arrays):
        out[i, : len(a)] = a
    return out, lengths
