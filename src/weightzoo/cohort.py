"""The batched two-stage training engine: many subject models trained as one tensor program.

Models that share depth, activation, input size, dropout and a band of widths are stacked: each layer's
weights become one tensor with a leading model dimension, and every step is a handful of batched
matmuls (`baddbmm`) for all of them at once. Narrower models are padded with exact zeros to the widest;
a padded unit's weights and bias are zero, so it outputs act(0) (zero for every activation but sigmoid,
whose output is masked), gets exactly zero gradient and stays zero under Adam. Padding never changes a
model's math.

A step is written out in full (`_Stack.step`): forward, backpropagation with PyTorch's own fused
activation-gradient kernels, then Adam through PyTorch's fused kernel, scaled by each model's learning
rate. All parameters of a stack live in one flat buffer, so Adam, checkpoints and finite checks are a
few whole-buffer operations; models that finish are dropped from the stack so they cost nothing more.
`CohortStats` reports models/s and the achieved GFLOP/s.

Each model keeps its own data, batch order, learning rate, Adam state, early stopping and stage. The
rules, for every model independently (they are the same as `reference.py`, the plain loop the engine
is tested against):

Stage 1 trains on the corrupted labels (train split), evaluating the corrupted validation loss after
each epoch. The lowest loss so far is checkpointed; the stage stops after `patience` epochs without a
new lowest, after `max_stage1_epochs`, or when the loss is not finite. The checkpoint is the degraded
model. It counts as having learned only if its loss is at least `min_stage1_improvement` (relative)
below the untrained model's, and it must get there within `stage1_deadline_epochs` epochs (else stage 1
stops then). A model that did not learn skips stage 2 (its example is rejected): a degraded model must
have learned the other patterns, not merely be untrained.

Stage 2 starts from the degraded checkpoint with fresh Adam state and learning rate × `stage2_lr_factor`
and trains on the clean labels. After each epoch it scores the model on the validation split and
checkpoints a new best score. Only stage 2's own epochs are candidates: the improved model has always
been trained on clean labels, never the degraded model handed back unchanged. (With the degraded model
as a candidate, a third of the seed config's examples kept it, since a noisy validation loss picked at
its stage-1 minimum is hard to beat within the patience, and every one of them was then rejected as
`target_not_improved`: 33% of 512 examples were accepted, against 45% now.)
With a target watch (`stage2_max_other_drop` set) the score is measured on a held-out selection set (never
trained on): the gain in accuracy on the target pattern's rows over the degraded model, minus
`stage2_penalty` times the accuracy each other group (each other selected pattern, the negatives) lost
beyond its allowance (the job's `select_allowed_drop`, else `stage2_max_other_drop`). Equal scores are
broken by the lower clean validation loss. Without a watch the score is the clean validation loss alone. (A
hard rule, "no other group may lose more", found an admissible epoch for almost no model; penalties of 0.3,
1 and 3 accepted 8, 11 and 14 of 128 examples of the seed's config, the clean loss alone 12.) Stage 2 stops
after `patience` epochs without a new best, or after `max_stage2_epochs`. The best checkpoint is the
improved model.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from weightzoo import activations, stages
from weightzoo.model import ModelSpec, encode_inputs, fold_input_standardization, input_standardization
from weightzoo.stages import StageRules, Stages  # StageRules: part of this module's API too

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


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


def train_cohort(
    jobs: list[TrainingJob],
    rules: StageRules,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    stats: CohortStats | None = None,
    padding: Padding | None = None,
    threads: int = 1,
) -> list[TrainingResult]:
    """Train every job through both stages; results come back in the jobs' order. `padding`: the fixed
    sizes that make each model's results independent of its stack (None: each stack's own largest).

    `threads`: stacks trained side by side, each on its own thread with single-threaded kernels. A
    kernel that splits one product over several threads rounds differently with each thread count
    (batched products do when a stack holds fewer models than there are threads), so the engine never
    lets one: its bits are the same for any `threads`, and parallelism comes from whole stacks."""
    results: list[TrainingResult | None] = [None] * len(jobs)
    groups: dict[tuple, list[int]] = {}
    for i, job in enumerate(jobs):  # a stack shares one stage-2 rule: with or without a selection set
        key = (*stack_key(job.spec), job.x_select is not None, job.standardize_inputs)
        groups.setdefault(key, []).append(i)
    start = time.perf_counter()

    def train(key: tuple) -> _Stack:
        members = groups[key]
        stack = _Stack([jobs[i] for i in members], rules, torch.device(device), dtype, padding)
        for i, result in zip(members, stack.train(), strict=True):
            results[i] = result
        return stack

    # Adam's second moments of tiny gradients fall into denormal floats, which are many times slower
    # on CPUs; flushing them to zero changes nothing a float32 model can represent.
    flushing = torch.set_flush_denormal(True)
    kernel_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        # largest stacks first, so that no thread is left with a big one at the end
        order = sorted(groups, key=lambda key: (-len(groups[key]), str(key)))
        if threads > 1 and len(order) > 1:
            with ThreadPoolExecutor(min(threads, len(order))) as pool:
                stacks = list(pool.map(train, order))
        else:
            stacks = [train(key) for key in order]
    finally:
        torch.set_num_threads(kernel_threads)
        if flushing:
            torch.set_flush_denormal(False)
    if stats is not None:
        stats.flops += sum(stack.flops for stack in stacks)
        stats.stacks += len(stacks)
        stats.models += len(jobs)
        stats.seconds += time.perf_counter() - start
    return results  # type: ignore[return-value]


def _pad_rows(arrays: list[np.ndarray], rows: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Stack arrays of different lengths along a new first axis, zero-padded to at least `rows`;
    returns (stacked, lengths)."""
    lengths = np.array([len(a) for a in arrays])
    longest = max(int(lengths.max()), rows, 1)
    shape = (len(arrays), longest) + arrays[0].shape[1:]
    out = np.zeros(shape, dtype=arrays[0].dtype)
    for i, a in enumerate(arrays):
        out[i, : len(a)] = a
    return out, lengths


class _Stack:
    """Models of one `stack_key`, stacked; widths and rows padded to the largest, or to `Padding`."""

    def __init__(
        self,
        jobs: list[TrainingJob],
        rules: StageRules,
        device: torch.device,
        dtype: torch.dtype,
        padding: Padding | None = None,
    ):
        self.jobs, self.rules, self.device, self.dtype = jobs, rules, device, dtype
        spec0 = jobs[0].spec
        self.depth, self.activation = spec0.num_layers, spec0.activation_type
        self.standardize = jobs[0].standardize_inputs
        self.dropout = spec0.dropout_rate
        self.K = len(jobs)
        self.widths = np.array([j.spec.neurons_per_layer for j in jobs])
        W = int(self.widths.max())
        if padding is not None:  # the band's widest (all of a stack's models share a band), capped
            W = max(W, min(-(-W // WIDTH_BAND) * WIDTH_BAND, padding.max_width))
        least = padding or Padding(0, 0, 0, 0)  # rows each kind of data is padded to, at least
        dims = [spec0.input_size] + [W] * self.depth + [1]
        self.dims = dims

        # Parameters live in one flat buffer per model, [K, P]; each layer's weight (transposed,
        # [K, fan_in, fan_out], so a layer is baddbmm(b, h, Wt)) and bias are views into it. Adam,
        # checkpoints and finite checks then work on one tensor; gradients are gathered into a
        # buffer of the same layout.
        self.layout: list[tuple[int, tuple[int, ...]]] = []  # (offset, shape per model) of each view
        offset = 0
        for fan_in, fan_out in zip(dims[:-1], dims[1:], strict=True):
            self.layout += [(offset, (fan_in, fan_out)), (offset + fan_in * fan_out, (fan_out,))]
            offset += fan_in * fan_out + fan_out
        flat = torch.zeros(self.K, offset, dtype=dtype)
        views = self.views(flat)
        for layer in range(self.depth + 1):
            for k, job in enumerate(jobs):
                index = job.spec.linear_indices[layer]
                w_k = job.init_weights[f"network.{index}.weight"].to(dtype)  # [out, in]
                views[2 * layer][k, : w_k.shape[1], : w_k.shape[0]] = w_k.T
                views[2 * layer + 1][k, : w_k.shape[0]] = job.init_weights[f"network.{index}.bias"].to(dtype)
        self.flat = flat.to(device)
        self.m = torch.zeros_like(self.flat)
        self.v = torch.zeros_like(self.flat)
        self.t = torch.zeros(self.K, dtype=dtype, device=device)
        self._bind_params()
        unit = torch.arange(W)[None, :] < torch.as_tensor(self.widths)[:, None]
        self.unit_mask = unit.to(device=device, dtype=dtype)[:, None, :]  # [K, 1, W]

        def data(xs, ys1, ys2, least: int):
            x, n = _pad_rows([np.asarray(a, dtype=np.int64) for a in xs], least)
            y1, _ = _pad_rows([np.asarray(a, dtype=np.float64) for a in ys1], least)
            y2, _ = _pad_rows([np.asarray(a, dtype=np.float64) for a in ys2], least)
            to = dict(device=device, dtype=dtype)
            inputs = encode_inputs(x, spec0, torch.float64)
            if self.standardize:
                shift, scale = input_standardization(spec0)
                inputs = (inputs - torch.as_tensor(shift)) / torch.as_tensor(scale)
            return (
                inputs.to(**to),
                torch.as_tensor(y1, **to),
                torch.as_tensor(y2, **to),
                n,
            )

        self.x_tr, self.y1_tr, self.y2_tr, self.n_tr = data(
            [j.x_train for j in jobs],
            [j.y_train_stage1 for j in jobs],
            [j.y_train_stage2 for j in jobs],
            least.train_rows,
        )
        self.x_va, self.y1_va, self.y2_va, self.n_va = data(
            [j.x_val for j in jobs],
            [j.y_val_stage1 for j in jobs],
            [j.y_val_stage2 for j in jobs],
            least.val_rows,
        )
        rows = torch.arange(self.x_va.shape[1])[None, :] < torch.as_tensor(self.n_va)[:, None]
        self.val_mask = rows.to(device=device, dtype=dtype)
        self.watch_target = rules.stage2_max_other_drop is not None and all(
            j.x_select is not None for j in jobs
        )
        if self.watch_target:
            self.x_se, self.y_se, _, n_se = data(
                [j.x_select for j in jobs],
                [j.y_select for j in jobs],
                [j.y_select for j in jobs],
                least.select_rows,
            )
            groups, _ = _pad_rows(
                [np.asarray(j.select_groups, dtype=np.int64) for j in jobs], least.select_rows
            )
            present = np.arange(groups.shape[1])[None, :] < n_se[:, None]
            n_groups = int(groups.max()) + 1
            one_hot = np.eye(n_groups)[groups] * present[:, :, None]  # padded rows belong to no group
            self.select_groups = torch.as_tensor(one_hot, dtype=dtype, device=device)  # [K, rows, groups]
            self.target_one_hot = np.eye(n_groups, dtype=bool)[[j.target_group for j in jobs]]
            self.allowed_drop = np.full(self.target_one_hot.shape, rules.stage2_max_other_drop, dtype=float)
            for k, job in enumerate(jobs):
                if job.select_allowed_drop is not None:
                    self.allowed_drop[k, : len(job.select_allowed_drop)] = job.select_allowed_drop
        else:
            self.x_se = self.y_se = self.select_groups = self.target_one_hot = self.allowed_drop = None
        self.lr = torch.tensor([j.spec.learning_rate for j in jobs], dtype=dtype, device=device)
        self.flops = 0.0
        self._flops_per_row = 2 * sum(a * b for a, b in zip(dims[:-1], dims[1:], strict=True))
        if self.dropout > 0:  # one generator per model, so no model's masks depend on its neighbours
            self._dropout_gens = [torch.Generator().manual_seed(int(j.order_seed) + 1) for j in jobs]

    def views(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """Each layer's weight [K, fan_in, fan_out] and bias [K, fan_out] as views of a flat [K, P]."""
        return [flat[:, o : o + int(np.prod(shape))].view(flat.shape[0], *shape) for o, shape in self.layout]

    def _bind_params(self) -> None:
        """Point the per-layer views at the current flat buffers (after creation or compaction)."""
        self.grad = torch.zeros_like(self.flat)
        self.scratch = torch.zeros_like(self.flat)  # Adam's step before each model's learning rate
        self.params = self.views(self.flat)
        self.grads = self.views(self.grad)
        # Adam's per-model tensor lists (scratch, grad, m, v, step), made once rather than every step
        self._adam_rows = [list(t.unbind(0)) for t in (self.scratch, self.grad, self.m, self.v, self.t)]

    # --- the model: forward, and backpropagation written out -----------------------------------
    def forward(
        self,
        x: torch.Tensor,
        params: list[torch.Tensor],
        models: torch.Tensor | None = None,
        keep: list[torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """Logits [K, rows] for inputs [K, rows, input_size], with each hidden layer's pre-activation
        and output (what backpropagation needs). `models`: the stack rows `params` hold; `keep`: a
        dropout scale per hidden layer."""
        act = activations.get(self.activation).forward
        in_place = self.activation == "relu" and keep is None
        unit_mask = self.unit_mask if models is None else self.unit_mask.index_select(0, models)
        pre, outs = [], [x]
        h = x
        for layer in range(self.depth):
            z = torch.baddbmm(params[2 * layer + 1][:, None, :], h, params[2 * layer])
            # ReLU's gradient needs only its output: computed in place, z is not kept beside it.
            h = z.relu_() if in_place else act(z)
            if not activations.get(self.activation).zero_at_zero:
                h = h * unit_mask  # sigmoid(0) = 0.5: silence padded units
            if keep is not None:
                h = h * keep[layer]
            pre.append(z)
            outs.append(h)
        # The one-unit output layer as products and a sum: a matrix-vector product takes another kernel
        # for one model than for several, with another rounding (see `Padding`).
        logits = (h * params[-2][:, None, :, 0]).sum(-1) + params[-1]
        return logits, pre, outs

    def logits(self, x: torch.Tensor, params: list[torch.Tensor], models: torch.Tensor | None = None):
        return self.forward(x, params, models)[0]

    def _activation_backward(self, grad: torch.Tensor, z: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """Gradient at the pre-activation z from the gradient at the output h = act(z), with the same
        fused kernels autograd uses. (Padded units need no care: no gradient reaches them.)"""
        return activations.get(self.activation).backward(grad, z, h)

    def _act(self, z: torch.Tensor) -> torch.Tensor:
        return activations.get(self.activation).forward(z)

    def _dropout_scales(self, rows: int, stepping: np.ndarray) -> list[torch.Tensor] | None:
        """Dropout masks (scaled by 1/(1-p)) for one step, [K, rows, width] per hidden layer. Each
        stepping model draws a full batch at its own width from its own generator, so its masks never
        depend on which other models share its stack."""
        if self.dropout <= 0:
            return None
        width, scales = self.dims[1], []
        for _ in range(self.depth):
            scale = torch.ones(len(self.origin), rows, width, dtype=self.dtype)
            for k in np.flatnonzero(stepping):
                own = int(self.widths[k])
                draw = torch.rand(self.rules.batch_size, own, generator=self._dropout_gens[self.origin[k]])
                scale[k, :, :own] = (draw[:rows] >= self.dropout).to(self.dtype) / (1 - self.dropout)
            scales.append(scale.to(self.device))
        return scales

    def _rows(self, which: np.ndarray) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The stack rows of the models in `which`, and their parameters' views (a copy)."""
        rows = torch.as_tensor(np.flatnonzero(which), device=self.device)
        return rows, self.views(self.flat.index_select(0, rows))

    def val_loss(self, labels: torch.Tensor, which: np.ndarray | None = None) -> np.ndarray:
        """Each model's mean validation loss under `labels`; with `which`, only those models' (NaN for
        the others): a model's loss is the same whichever models are run beside it."""
        x, params, mask, models = self.x_va, self.params, self.val_mask, None
        if which is not None:
            models, params = self._rows(which)
            x, labels, mask = (t.index_select(0, models) for t in (x, labels, mask))
        with torch.no_grad():
            logits = self.logits(x, params, models)
            loss = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
            mean = ((loss * mask).sum(1) / mask.sum(1).clamp(min=1)).cpu().numpy()
        if which is None:
            return mean
        out = np.full(len(which), np.nan)
        out[which] = mean
        return out

    def selection_accuracy(self, which: np.ndarray) -> np.ndarray:
        """Accuracy per selection group for the models in `which`, [K, groups]: NaN for other models
        and for empty groups. Only those models are run, since the selection set is large."""
        rows, params = self._rows(which)
        accuracy = np.full(self.target_one_hot.shape, np.nan)
        with torch.no_grad():
            logits = self.logits(self.x_se.index_select(0, rows), params, models=rows)
            correct = ((logits > 0) == (self.y_se.index_select(0, rows) > 0.5)).to(self.dtype)
            groups = self.select_groups.index_select(0, rows)
            hits, sizes = torch.einsum("km,kmg->kg", correct, groups), groups.sum(1)
            accuracy[which] = torch.where(sizes > 0, hits / sizes.clamp(min=1), torch.nan).cpu().numpy()
        return accuracy

    def stage2_score(self, accuracy: np.ndarray, baseline: np.ndarray) -> np.ndarray:
        """Target accuracy gain over the degraded model, less the penalty for other groups' excess loss."""
        target, empty = self.target_one_hot, np.isnan(baseline)
        gain = np.where(target & ~empty, accuracy - baseline, 0).sum(1)  # no target rows: 0
        excess = np.where(target | empty, 0, np.maximum(0, baseline - accuracy - self.allowed_drop)).sum(1)
        return gain - self.rules.stage2_penalty * excess

    # --- one optimisation step: per-model masked mean BCE, then Adam gated per model ---------------
    def step(self, x, y, row_mask, stepping: np.ndarray, lr: torch.Tensor) -> torch.Tensor:
        """One Adam step for the models in `stepping`; returns each model's summed loss over its rows.

        The update is PyTorch's fused Adam kernel, run with learning rate 1 on a scratch buffer over
        the stepping models' rows (each with its own step count), then scaled by each model's own
        learning rate: lr * (m_hat / (sqrt(v_hat) + eps)), exactly Adam's step. Other models keep
        their parameters and moments.
        """
        keep = self._dropout_scales(x.shape[1], stepping)
        with torch.no_grad():
            logits, pre, outs = self.forward(x, self.params, keep=keep)
            counts = row_mask.sum(1).clamp(min=1)
            per_row = F.binary_cross_entropy_with_logits(logits, y, reduction="none") * row_mask
            loss_sums = per_row.sum(1)
            # Backpropagate each model's mean loss over its rows; gradients land in self.grad.
            delta = ((torch.sigmoid(logits) - y) * row_mask / counts[:, None])[..., None]  # dL/dlogit
            grads: list[torch.Tensor] = []
            for layer in range(self.depth, -1, -1):
                output = layer == self.depth  # one unit: no matrix-vector products (see forward)
                weight_grad = (
                    (outs[layer] * delta).sum(1) if output else torch.bmm(outs[layer].transpose(1, 2), delta)
                )
                grads += [delta.sum(1).flatten(1), weight_grad.flatten(1)]
                if layer == 0:
                    break
                if output:
                    dh = delta * self.params[2 * layer][:, None, :, 0]
                else:
                    dh = torch.bmm(delta, self.params[2 * layer].transpose(1, 2))
                if keep is not None:
                    dh = dh * keep[layer - 1]
                # the activation's own output (with dropout, outs[layer] is also scaled by the mask)
                act_out = outs[layer] if keep is None else self._act(pre[layer - 1])
                delta = self._activation_backward(dh, pre[layer - 1], act_out)
            torch.cat(grads[::-1], dim=1, out=self.grad)
        self.flops += 3 * self._flops_per_row * x.shape[0] * x.shape[1]  # forward + backward, padded
        beta1, beta2 = ADAM_BETAS
        if stepping.all():
            scratch, grad, m, v, t = self._adam_rows
            self.t.add_(1)  # `t` holds views of self.t
        else:
            on = np.flatnonzero(stepping).tolist()
            scratch, grad, m, v, t = ([rows[i] for i in on] for rows in self._adam_rows)
            self.t[torch.as_tensor(on, device=self.device)] += 1
        with torch.no_grad():
            self.scratch.zero_()
            torch._fused_adam_(
                scratch,
                grad,
                m,
                v,
                [],
                t,
                lr=1.0,
                beta1=beta1,
                beta2=beta2,
                weight_decay=0.0,
                eps=ADAM_EPS,
                amsgrad=False,
                maximize=False,
            )
            self.flat.addcmul_(self.scratch, lr[:, None])
        return loss_sums.detach()

    # --- the two stages --------------------------------------------------------------------------
    def train(self) -> list[TrainingResult]:
        K = self.K
        # stack row -> index among this stack's jobs (rows shrink as finished models are dropped)
        self.origin = np.arange(K)
        self.state = Stages.start(self.val_loss(self.y1_va))  # from the untrained model's stage-1 loss
        # the degraded model's selection accuracy per group, for stage 2's score
        self.baseline = np.full(self.target_one_hot.shape, np.nan) if self.watch_target else None
        self.history = [
            {"stage1_val_loss": [float(v)], "stage2_val_loss": [], "train_loss": []}
            for v in self.state.initial
        ]
        if self.rules.record_batch_loss:
            for history in self.history:
                history["batch_loss"] = []
        self.snapshots: list[list[dict]] = [[] for _ in range(K)]
        self.ckpt1 = self.flat.detach().clone()  # stage 1's best (the degraded model), flat
        self.ckpt2 = self.flat.detach().clone()  # stage 2's best (the improved model), flat
        self.results: list[TrainingResult | None] = [None] * K

        while self.state.training.any():
            self._epoch()
            done = ~self.state.training
            if done.any():
                self._compact(~done)
        return self.results  # type: ignore[return-value]

    def _epoch(self) -> None:
        """One epoch for every model still training, then each model's stage bookkeeping."""
        rules, K, B = self.rules, len(self.origin), self.rules.batch_size
        stage, training = self.state.stage, self.state.training
        # Row order per model for this epoch; finished models get an empty order.
        seeds = [self.jobs[i].order_seed for i in self.origin]
        # Padded to the stack's rows, so the batches' sizes never depend on which models share the stack.
        rows = np.where(training, self.n_tr, 0)
        order, lengths = epoch_orders(seeds, stage, self.state.epoch_in_stage, rows, width=self.x_tr.shape[1])
        order_t = torch.as_tensor(order, device=self.device)
        valid = torch.as_tensor(np.arange(order.shape[1])[None, :] < lengths[:, None], device=self.device)
        stage1 = torch.as_tensor(stage == 1, device=self.device)[:, None]
        y_all = torch.where(stage1, self.y1_tr, self.y2_tr)
        lr = self.lr * torch.as_tensor(
            np.where(stage == 2, rules.stage2_lr_factor, 1.0), dtype=self.dtype, device=self.device
        )
        x_epoch = torch.gather(self.x_tr, 1, order_t[:, :, None].expand(-1, -1, self.x_tr.shape[-1]))
        y_epoch = torch.gather(y_all, 1, order_t)
        row_mask_epoch = valid.to(self.dtype)
        loss_sum = torch.zeros(K, dtype=self.dtype, device=self.device)
        batch_losses = []
        for s in range(0, int(lengths.max()), B):  # steps no model takes are left out: they change nothing
            row_mask = row_mask_epoch[:, s : s + B]
            step_loss = self.step(x_epoch[:, s : s + B], y_epoch[:, s : s + B], row_mask, lengths > s, lr)
            loss_sum += step_loss
            if rules.record_batch_loss:
                batch_losses.append((step_loss / row_mask.sum(1).clamp(min=1)).cpu().numpy())
        epoch_loss = (loss_sum / row_mask_epoch.sum(1).clamp(min=1)).cpu().numpy()  # mean during the epoch
        self.state = stages.begin_epoch(self.state)
        epoch_in_stage = self.state.epoch_in_stage
        for i, batch_loss in enumerate(batch_losses):
            for k in np.flatnonzero(training & (lengths > i * B)):
                self.history[self.origin[k]]["batch_loss"].append(float(batch_loss[k]))
        for k in np.flatnonzero(training):
            if self.jobs[self.origin[k]].snapshot_epochs:
                self._snapshot(k, int(stage[k]), int(epoch_in_stage[k]))

        loss = self.val_loss(torch.where(stage1, self.y1_va, self.y2_va))
        score = np.zeros(K)
        if self.watch_target and (stage == 2).any():
            accuracy = self.selection_accuracy(training & (stage == 2))
            score = np.where(stage == 2, self.stage2_score(accuracy, self.baseline), 0.0)
        params_ok = self._finite_rows().cpu().numpy()
        for k in np.flatnonzero(training):
            history = self.history[self.origin[k]]
            history[f"stage{stage[k]}_val_loss"].append(float(loss[k]))
            history["train_loss"].append(float(epoch_loss[k]))

        # The schedule decides (stages.py); the tensors follow.
        self.state, act = stages.judge_epoch(self.state, loss, score, params_ok, rules)
        self._save(act.save_degraded, self.ckpt1)
        self._save(act.save_improved, self.ckpt2)
        if act.broke.any():  # keep NaN out of the shared arithmetic: a broken model stops here
            self._zero(act.broke)
        self._save(act.ended_stage1, self.ckpt2, source=self.ckpt1)  # improved = degraded, until beaten
        if act.start_stage2.any():
            self._switch_to_stage2(act.start_stage2)

    def _switch_to_stage2(self, go_on: np.ndarray) -> None:
        """Restart the selected models from their degraded checkpoint with fresh Adam state."""
        self.state = stages.begin_stage2(self.state, go_on, self.rules)
        sel = torch.as_tensor(go_on, device=self.device)
        with torch.no_grad():
            self.flat[sel] = self.ckpt1[sel]
            self.m[sel] = 0
            self.v[sel] = 0
            self.t[sel] = 0
        clean = self.val_loss(self.y2_va, go_on)
        if self.watch_target:
            self.baseline = np.where(go_on[:, None], self.selection_accuracy(go_on), self.baseline)
        for k in np.flatnonzero(go_on):
            self.history[self.origin[k]]["stage2_val_loss"].append(float(clean[k]))

    _PER_MODEL_TENSORS = (
        "unit_mask",
        "x_tr",
        "y1_tr",
        "y2_tr",
        "x_va",
        "y1_va",
        "y2_va",
        "val_mask",
        "lr",
        "t",
        "x_se",
        "y_se",
        "select_groups",
    )
    _PER_MODEL_ARRAYS = ("n_tr", "n_va", "widths", "target_one_hot", "allowed_drop", "baseline")

    def _compact(self, keep: np.ndarray) -> None:
        """Record finished models' results, then drop them from every per-model tensor: they no longer
        cost arithmetic. Each model's numbers do not depend on which others share its stack."""
        for k in np.flatnonzero(~keep):
            self.results[self.origin[k]] = self._result(k)
        if not keep.any():
            return
        sel = torch.as_tensor(np.flatnonzero(keep), device=self.device)
        with torch.no_grad():
            for name in ("flat", "m", "v", "ckpt1", "ckpt2", *self._PER_MODEL_TENSORS):
                if getattr(self, name, None) is not None:
                    setattr(self, name, getattr(self, name).index_select(0, sel))
        self._bind_params()
        for name in self._PER_MODEL_ARRAYS:
            if getattr(self, name, None) is not None:
                setattr(self, name, getattr(self, name)[keep])
        self.state = self.state.select(keep)
        self.origin = self.origin[keep]

    def _save(self, which: np.ndarray, ckpt: torch.Tensor, source: torch.Tensor | None = None) -> None:
        """Copy the selected models' parameters (or `source`'s) into a flat checkpoint."""
        if which.any():
            sel = torch.as_tensor(np.flatnonzero(which), device=self.device)
            with torch.no_grad():
                ckpt.index_copy_(0, sel, (source if source is not None else self.flat).index_select(0, sel))

    def _zero(self, which: np.ndarray) -> None:
        sel = torch.as_tensor(which, device=self.device)
        with torch.no_grad():
            for tensor in (self.flat, self.m, self.v):
                tensor[sel] = 0

    def _finite_rows(self) -> torch.Tensor:
        """Whether each model's parameters are all finite. A row sum is finite when every entry is
        (barring overflow), and costs a fraction of an elementwise check, which only suspect rows get."""
        with torch.no_grad():
            finite = torch.isfinite(self.flat.sum(1))
            suspect = torch.nonzero(~finite).flatten()
            if len(suspect):
                finite[suspect] = torch.isfinite(self.flat.index_select(0, suspect)).all(1)
        return finite

    def _snapshot(self, k: int, stage: int, epoch: int) -> None:
        """Keep model k's weights as they are after this epoch (and Adam's state, when asked)."""
        job = self.jobs[self.origin[k]]
        snapshot = {"stage": stage, "epoch": epoch, "weights": self._weights(k, job.spec, self.flat)}
        if job.snapshot_optimizer:
            snapshot["adam"] = {
                "exp_avg": self._unpad(k, job.spec, self.m),
                "exp_avg_sq": self._unpad(k, job.spec, self.v),
                "step": int(self.t[k]),
            }
        self.snapshots[self.origin[k]].append(snapshot)

    def _result(self, k: int) -> TrainingResult:
        st, job = self.state, self.jobs[self.origin[k]]
        history = self.history[self.origin[k]]
        h1, h2 = history["stage1_val_loss"], history["stage2_val_loss"]
        return TrainingResult(
            degraded=self._weights(k, job.spec, self.ckpt1),
            improved=self._weights(k, job.spec, self.ckpt2),
            stage1_epochs=len(h1) - 1,
            stage2_epochs=max(len(h2) - 1, 0),
            stage1_best_epoch=int(st.best_epoch1[k]),
            stage2_best_epoch=int(st.best_epoch2[k]),
            stage1_learned=bool(st.stage1_learned[k]),
            finite=bool(st.finite[k]),
            history=history,
            snapshots=self.snapshots[self.origin[k]],
        )

    def _weights(self, k: int, spec: ModelSpec, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Model k's weights as a subject model that takes the raw encoding (folded when standardized)."""
        weights = self._unpad(k, spec, flat)
        return fold_input_standardization(spec, weights) if self.standardize else weights

    def _unpad(self, k: int, spec: ModelSpec, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Model k's own weights, unpadded, as new tensors. Sliced in NumPy: a model's dozens of small
        tensors cost a fraction of what as many torch slicing ops would (measured: 85 µs against 401)."""
        row = flat[k].detach().cpu().numpy()  # on the CPU a view of the live buffer: every piece is copied
        weights = {}
        for layer, ((fan_in, fan_out), index) in enumerate(
            zip(spec.layer_sizes, spec.linear_indices, strict=True)
        ):
            (offset, shape), (bias_offset, _) = self.layout[2 * layer], self.layout[2 * layer + 1]
            wt = row[offset : offset + shape[0] * shape[1]].reshape(shape)
            weights[f"network.{index}.weight"] = torch.from_numpy(wt[:fan_in, :fan_out].T.copy())
            weights[f"network.{index}.bias"] = torch.from_numpy(
                row[bias_offset : bias_offset + fan_out].copy()
            )
        return weights
