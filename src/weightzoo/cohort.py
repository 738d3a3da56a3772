"""The batched two-stage training engine: many subject models trained as one tensor program.

Models that share depth, activation, input size and dropout are stacked: each layer's weights become
one tensor with a leading model dimension, and every step is a handful of batched matmuls (`baddbmm`)
for all of them at once. Narrower models are padded with exact zeros to the widest; a padded unit's
weights and bias are zero, so it outputs act(0) (zero for every activation but sigmoid, whose output
is masked), gets exactly zero gradient and stays zero under Adam. Padding never changes a model's math.

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
checkpoints a new best score; the degraded model itself is the first candidate (score 0), so the improved
model is never worse by that score. With a target watch (`stage2_max_other_drop` set) the score is
measured on a held-out selection set (never trained on): the gain in accuracy on the target pattern's
rows over the degraded model, minus `stage2_penalty` times the accuracy each other group (each other
selected pattern, the negatives) lost beyond `stage2_max_other_drop`. Equal scores are broken by the
lower clean validation loss. Without a watch the score is the clean validation loss alone. (A hard
rule, "no other group may lose more", found an admissible epoch for almost no model; penalties of 0.3,
1 and 3 accepted 8, 11 and 14 of 128 examples of the seed's config, the clean loss alone 12.)
Stage 2 stops after `patience` epochs without a new best, or after
`max_stage2_epochs`. The best checkpoint is the improved model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from weightzoo.model import ModelSpec, encode_inputs

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8

_ACTIVATION_FN = {
    "relu": F.relu,
    "gelu": F.gelu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "leaky_relu": F.leaky_relu,
}
_ZERO_AT_ZERO = {"relu", "gelu", "tanh", "leaky_relu"}  # act(0) == 0: padded units need no mask


@dataclass(frozen=True)
class StageRules:
    batch_size: int
    max_stage1_epochs: int
    max_stage2_epochs: int
    patience: int
    min_stage1_improvement: float
    stage2_lr_factor: float
    stage1_deadline_epochs: int | None = None  # stage 1 must have learned by then (None: no deadline)
    # Stage 2 watches the target: None = clean validation loss only; a number = the most any other
    # validation group may lose (see the module docstring).
    stage2_max_other_drop: float | None = None
    stage2_penalty: float = 3.0  # weight of other groups' excess loss against the target's gain


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


@dataclass
class TrainingResult:
    degraded: dict[str, torch.Tensor]
    improved: dict[str, torch.Tensor]
    stage1_epochs: int
    stage2_epochs: int
    stage1_best_epoch: int
    stage2_best_epoch: int  # 0: stage 2 never beat the degraded model
    stage1_learned: bool
    finite: bool
    history: dict[str, list[float]] = field(default_factory=dict)


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


def epoch_order(order_seed: int, stage: int, epoch: int, n: int) -> np.ndarray:
    """The row order of one epoch of one model: a pure function of its seed, stage and epoch."""
    return np.random.default_rng([order_seed, stage, epoch]).permutation(n)


def stack_key(spec: ModelSpec) -> tuple:
    """Models with the same key train in one stack (width may differ: it is padded)."""
    return (spec.num_layers, spec.activation_type, spec.input_size, spec.dropout_rate)


def train_cohort(
    jobs: list[TrainingJob],
    rules: StageRules,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    stats: CohortStats | None = None,
) -> list[TrainingResult]:
    """Train every job through both stages; results come back in the jobs' order."""
    results: list[TrainingResult | None] = [None] * len(jobs)
    groups: dict[tuple, list[int]] = {}
    for i, job in enumerate(jobs):
        groups.setdefault(stack_key(job.spec), []).append(i)
    start = time.perf_counter()
    for key in sorted(groups, key=str):
        members = groups[key]
        stack = _Stack([jobs[i] for i in members], rules, torch.device(device), dtype)
        for i, result in zip(members, stack.train(), strict=True):
            results[i] = result
        if stats is not None:
            stats.flops += stack.flops
            stats.stacks += 1
    if stats is not None:
        stats.models += len(jobs)
        stats.seconds += time.perf_counter() - start
    return results  # type: ignore[return-value]


def _pad_rows(arrays: list[np.ndarray], width: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Stack arrays of different lengths along a new first axis, zero-padded; returns (stacked, lengths)."""
    lengths = np.array([len(a) for a in arrays])
    longest = max(int(lengths.max()), 1)
    shape = (len(arrays), longest) + arrays[0].shape[1:]
    out = np.zeros(shape, dtype=arrays[0].dtype)
    for i, a in enumerate(arrays):
        out[i, : len(a)] = a
    return out, lengths


class _Stack:
    """Models of one depth and activation, stacked; widths padded to the widest."""

    def __init__(self, jobs: list[TrainingJob], rules: StageRules, device: torch.device, dtype: torch.dtype):
        self.jobs, self.rules, self.device, self.dtype = jobs, rules, device, dtype
        spec0 = jobs[0].spec
        self.depth, self.activation = spec0.num_layers, spec0.activation_type
        self.dropout = spec0.dropout_rate
        self.K = len(jobs)
        self.widths = np.array([j.spec.neurons_per_layer for j in jobs])
        W = int(self.widths.max())
        dims = [spec0.input_size] + [W] * self.depth + [1]
        self.dims = dims

        # Parameters: weights stored transposed, [K, fan_in, fan_out], so a layer is baddbmm(b, h, Wt).
        self.params: list[torch.Tensor] = []
        for layer, (fan_in, fan_out) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
            wt = torch.zeros(self.K, fan_in, fan_out, dtype=dtype)
            b = torch.zeros(self.K, fan_out, dtype=dtype)
            for k, job in enumerate(jobs):
                index = job.spec.linear_indices[layer]
                w_k = job.init_weights[f"network.{index}.weight"].to(dtype)  # [out, in]
                wt[k, : w_k.shape[1], : w_k.shape[0]] = w_k.T
                b[k, : w_k.shape[0]] = job.init_weights[f"network.{index}.bias"].to(dtype)
            self.params += [wt.to(device).requires_grad_(), b.to(device).requires_grad_()]
        unit = torch.arange(W)[None, :] < torch.as_tensor(self.widths)[:, None]
        self.unit_mask = unit.to(device=device, dtype=dtype)[:, None, :]  # [K, 1, W]
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.t = torch.zeros(self.K, dtype=dtype, device=device)
        self._shapes = [(-1,) + (1,) * (p.dim() - 1) for p in self.params]  # per-model broadcast

        def data(xs, ys1, ys2):
            x, n = _pad_rows([np.asarray(a, dtype=np.int64) for a in xs])
            y1, _ = _pad_rows([np.asarray(a, dtype=np.float64) for a in ys1])
            y2, _ = _pad_rows([np.asarray(a, dtype=np.float64) for a in ys2])
            to = dict(device=device, dtype=dtype)
            return (
                encode_inputs(x, spec0, dtype).to(device),
                torch.as_tensor(y1, **to),
                torch.as_tensor(y2, **to),
                n,
            )

        self.x_tr, self.y1_tr, self.y2_tr, self.n_tr = data(
            [j.x_train for j in jobs], [j.y_train_stage1 for j in jobs], [j.y_train_stage2 for j in jobs]
        )
        self.x_va, self.y1_va, self.y2_va, self.n_va = data(
            [j.x_val for j in jobs], [j.y_val_stage1 for j in jobs], [j.y_val_stage2 for j in jobs]
        )
        rows = torch.arange(self.x_va.shape[1])[None, :] < torch.as_tensor(self.n_va)[:, None]
        self.val_mask = rows.to(device=device, dtype=dtype)
        self.watch_target = rules.stage2_max_other_drop is not None and all(
            j.x_select is not None for j in jobs
        )
        if self.watch_target:
            self.x_se, self.y_se, _, n_se = data(
                [j.x_select for j in jobs], [j.y_select for j in jobs], [j.y_select for j in jobs]
            )
            groups, _ = _pad_rows([np.asarray(j.select_groups, dtype=np.int64) for j in jobs])
            present = np.arange(groups.shape[1])[None, :] < n_se[:, None]
            n_groups = int(groups.max()) + 1
            one_hot = np.eye(n_groups)[groups] * present[:, :, None]  # padded rows belong to no group
            self.select_groups = torch.as_tensor(one_hot, dtype=dtype, device=device)  # [K, rows, groups]
            self.target_one_hot = np.eye(n_groups, dtype=bool)[[j.target_group for j in jobs]]
        self.lr = torch.tensor([j.spec.learning_rate for j in jobs], dtype=dtype, device=device)
        self.flops = 0.0
        self._flops_per_row = 2 * sum(a * b for a, b in zip(dims[:-1], dims[1:], strict=True))
        if self.dropout > 0:
            self._dropout_gen = torch.Generator(device=device).manual_seed(int(jobs[0].order_seed))

    # --- the model ---------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, params: list[torch.Tensor], train: bool = False) -> torch.Tensor:
        """Logits [K, rows] for inputs [K, rows, input_size]."""
        act = _ACTIVATION_FN[self.activation]
        h = x
        for layer in range(self.depth):
            wt, b = params[2 * layer], params[2 * layer + 1]
            h = act(torch.baddbmm(b[:, None, :], h, wt))
            if self.activation not in _ZERO_AT_ZERO:
                h = h * self.unit_mask
            if train and self.dropout > 0:
                keep = torch.rand(h.shape, generator=self._dropout_gen, device=h.device, dtype=h.dtype)
                h = h * (keep >= self.dropout) / (1 - self.dropout)
        wt, b = params[-2], params[-1]
        return torch.baddbmm(b[:, None, :], h, wt)[..., 0]

    def val_loss(self, labels: torch.Tensor) -> np.ndarray:
        """Each model's mean validation loss under `labels`."""
        with torch.no_grad():
            logits = self.forward(self.x_va, self.params)
            loss = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
            return ((loss * self.val_mask).sum(1) / self.val_mask.sum(1).clamp(min=1)).cpu().numpy()

    def selection_accuracy(self) -> np.ndarray | None:
        """Accuracy per selection group, [K, groups] (NaN where a group is empty); None without a watch."""
        if not self.watch_target:
            return None
        with torch.no_grad():
            correct = ((self.forward(self.x_se, self.params) > 0) == (self.y_se > 0.5)).to(self.dtype)
            hits = torch.einsum("km,kmg->kg", correct, self.select_groups)
            sizes = self.select_groups.sum(1)
            return torch.where(sizes > 0, hits / sizes.clamp(min=1), torch.nan).cpu().numpy()

    def stage2_score(self, accuracy: np.ndarray | None, baseline: np.ndarray | None) -> np.ndarray:
        """Target accuracy gain over the degraded model, less the penalty for other groups' excess loss."""
        if accuracy is None or baseline is None:  # no watch, or no model has reached stage 2 yet
            return np.zeros(self.K)
        target, empty = self.target_one_hot, np.isnan(baseline)
        gain = np.where(target & ~empty, accuracy - baseline, 0).sum(1)  # no target rows: 0
        allowed = self.rules.stage2_max_other_drop
        excess = np.where(target | empty, 0, np.maximum(0, baseline - accuracy - allowed)).sum(1)
        return gain - self.rules.stage2_penalty * excess

    # --- one optimisation step: per-model masked mean BCE, then Adam gated per model ---------------
    def step(self, x, y, row_mask, gate, lr, all_gated: bool) -> torch.Tensor:
        """One Adam step for every gated model; returns each model's summed loss over its rows.

        Adam as torch.optim.Adam computes it, rearranged so the per-model factors fold into two
        broadcasts: lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps)
        == (lr*sqrt(bc2)/bc1) * m / (sqrt(v) + eps*sqrt(bc2)).
        A model outside the gate keeps its parameters; its moments are kept too unless every model
        still training is in the gate (then only finished models' unused moments change).
        """
        for p in self.params:
            p.grad = None
        logits = self.forward(x, self.params, train=True)
        counts = row_mask.sum(1).clamp(min=1)
        per_row = F.binary_cross_entropy_with_logits(logits, y, reduction="none") * row_mask
        loss_sums = per_row.sum(1)
        (loss_sums / counts).sum().backward()
        self.flops += 3 * self._flops_per_row * x.shape[0] * x.shape[1]  # forward + backward, padded
        beta1, beta2 = ADAM_BETAS
        with torch.no_grad():
            grads = [p.grad for p in self.params]
            if all_gated:
                torch._foreach_lerp_(self.m, grads, 1 - beta1)
                torch._foreach_mul_(self.v, beta2)
                torch._foreach_addcmul_(self.v, grads, grads, value=1 - beta2)
            else:
                for g, m, v, shape in zip(grads, self.m, self.v, self._shapes, strict=True):
                    on = gate.view(shape) > 0
                    m.copy_(torch.where(on, m.lerp(g, 1 - beta1), m))
                    v.copy_(torch.where(on, v * beta2 + g * g * (1 - beta2), v))
            self.t += gate
            t = self.t.clamp(min=1)
            root_bc2 = (1 - beta2**t).sqrt()
            scale = gate * lr * root_bc2 / (1 - beta1**t)
            eps = ADAM_EPS * root_bc2
            denom = torch._foreach_sqrt(self.v)
            torch._foreach_add_(denom, [eps.view(shape) for shape in self._shapes])
            numer = torch._foreach_mul(self.m, [scale.view(shape) for shape in self._shapes])
            torch._foreach_addcdiv_(self.params, numer, denom, value=-1)
        return loss_sums.detach()

    # --- the two stages --------------------------------------------------------------------------
    def train(self) -> list[TrainingResult]:
        rules, K = self.rules, self.K
        stage = np.ones(K, dtype=np.int64)  # 1, 2, or 3 = done
        epoch_in_stage = np.zeros(K, dtype=np.int64)
        wait = np.zeros(K, dtype=np.int64)
        finite = np.ones(K, dtype=bool)
        stage1_learned = np.zeros(K, dtype=bool)
        best_epoch = np.zeros((3, K), dtype=np.int64)
        history = [{"stage1_val_loss": [], "stage2_val_loss": [], "train_loss": []} for _ in range(K)]

        initial = self.val_loss(self.y1_va)
        best = initial.copy()  # best validation loss of the current stage
        best_score = np.zeros(K)  # stage 2's score of its best checkpoint (stage 1: always 0)
        baseline = None  # the degraded model's validation accuracy per group, for stage 2's score
        ckpt1 = [p.detach().clone() for p in self.params]
        ckpt2 = [p.detach().clone() for p in self.params]
        for k in range(K):
            history[k]["stage1_val_loss"].append(float(initial[k]))
        B = rules.batch_size

        while (stage < 3).any():
            training = stage < 3
            # Row order per model for this epoch; finished models get an empty order.
            orders = [
                epoch_order(job.order_seed, int(stage[k]), int(epoch_in_stage[k]), int(self.n_tr[k]))
                if training[k]
                else np.zeros(0, dtype=np.int64)
                for k, job in enumerate(self.jobs)
            ]
            order, lengths = _pad_rows(orders)
            order_t = torch.as_tensor(order, device=self.device)
            valid = torch.as_tensor(np.arange(order.shape[1])[None, :] < lengths[:, None], device=self.device)
            stage1 = torch.as_tensor(stage == 1, device=self.device)[:, None]
            y_all = torch.where(stage1, self.y1_tr, self.y2_tr)
            lr = self.lr * torch.as_tensor(
                np.where(stage == 2, rules.stage2_lr_factor, 1.0), dtype=self.dtype, device=self.device
            )
            idx = order_t[:, :, None].expand(-1, -1, self.x_tr.shape[-1])
            x_epoch = torch.gather(self.x_tr, 1, idx)
            y_epoch = torch.gather(y_all, 1, order_t)
            row_mask_epoch = valid.to(self.dtype)
            loss_sum = torch.zeros(K, dtype=self.dtype, device=self.device)
            for s in range(0, int(lengths.max()), B):
                row_mask = row_mask_epoch[:, s : s + B]
                gate = torch.as_tensor(lengths > s, dtype=self.dtype, device=self.device)
                all_gated = bool((lengths > s)[training].all())
                loss_sum += self.step(
                    x_epoch[:, s : s + B], y_epoch[:, s : s + B], row_mask, gate, lr, all_gated
                )
            epoch_loss = loss_sum / row_mask_epoch.sum(1).clamp(min=1)  # mean training loss during the epoch
            epoch_in_stage[training] += 1

            labels = torch.where(stage1, self.y1_va, self.y2_va)
            loss = self.val_loss(labels)
            score = np.where(stage == 2, self.stage2_score(self.selection_accuracy(), baseline), 0.0)
            params_ok = torch.stack([torch.isfinite(p.detach()).flatten(1).all(1) for p in self.params]).all(
                0
            )
            now_finite = np.isfinite(loss) & params_ok.cpu().numpy()
            epoch_loss = epoch_loss.cpu().numpy()

            better = (score > best_score + 1e-12) | ((np.abs(score - best_score) <= 1e-12) & (loss < best))
            improved = training & now_finite & better
            self._save(improved & (stage == 1), ckpt1)
            self._save(improved & (stage == 2), ckpt2)
            for k in np.flatnonzero(training):
                history[k][f"stage{stage[k]}_val_loss"].append(float(loss[k]))
                history[k]["train_loss"].append(float(epoch_loss[k]))
            best = np.where(improved, loss, best)
            best_score = np.where(improved, score, best_score)
            best_epoch[stage[improved], np.flatnonzero(improved)] = epoch_in_stage[improved]
            wait = np.where(improved, 0, wait + training)

            broke = training & ~now_finite
            finite &= ~broke
            if broke.any():  # keep NaN out of the shared arithmetic: a broken model stops here
                self._zero(broke)
            learned = best <= initial * (1 - rules.min_stage1_improvement)
            out_of_epochs1 = epoch_in_stage >= rules.max_stage1_epochs
            if rules.stage1_deadline_epochs is not None:
                out_of_epochs1 |= (epoch_in_stage >= rules.stage1_deadline_epochs) & ~learned
            end1 = (stage == 1) & (broke | (wait >= rules.patience) | out_of_epochs1)
            end2 = (stage == 2) & (
                broke | (wait >= rules.patience) | (epoch_in_stage >= rules.max_stage2_epochs)
            )
            stage[end2] = 3
            if end1.any():
                self._save(end1, ckpt2, source=ckpt1)  # until stage 2 does better, improved = degraded
                stage1_learned[end1] = finite[end1] & learned[end1]
                go_on = end1 & stage1_learned
                stage[end1 & ~go_on] = 3
                if go_on.any():
                    stage[go_on] = 2 if rules.max_stage2_epochs > 0 else 3
                    self._switch_to_stage2(go_on, ckpt1)
                    clean, accuracy = self.val_loss(self.y2_va), self.selection_accuracy()
                    best = np.where(go_on, clean, best)
                    best_score[go_on] = 0.0
                    if accuracy is not None:
                        baseline = (
                            accuracy if baseline is None else np.where(go_on[:, None], accuracy, baseline)
                        )
                    wait[go_on] = 0
                    epoch_in_stage[go_on] = 0
                    for k in np.flatnonzero(go_on):
                        history[k]["stage2_val_loss"].append(float(clean[k]))
        return [self._result(k, ckpt1, ckpt2, best_epoch, stage1_learned, finite, history) for k in range(K)]

    def _save(
        self, which: np.ndarray, ckpt: list[torch.Tensor], source: list[torch.Tensor] | None = None
    ) -> None:
        """Copy the selected models' parameters (or `source`'s) into a checkpoint."""
        if not which.any():
            return
        sel = torch.as_tensor(which, device=self.device)
        with torch.no_grad():
            for c, p in zip(ckpt, source if source is not None else self.params, strict=True):
                c[sel] = p[sel]

    def _zero(self, which: np.ndarray) -> None:
        sel = torch.as_tensor(which, device=self.device)
        with torch.no_grad():
            for tensors in (self.params, self.m, self.v):
                for p in tensors:
                    p[sel] = 0

    def _switch_to_stage2(self, which: np.ndarray, ckpt1) -> None:
        """Restart the selected models from their degraded checkpoint with fresh Adam state."""
        sel = torch.as_tensor(which, device=self.device)
        with torch.no_grad():
            for p, c1, m, v in zip(self.params, ckpt1, self.m, self.v, strict=True):
                p[sel] = c1[sel]
                m[sel] = 0
                v[sel] = 0
            self.t[sel] = 0

    def _result(self, k, ckpt1, ckpt2, best_epoch, learned, finite, history) -> TrainingResult:
        spec = self.jobs[k].spec
        h1, h2 = history[k]["stage1_val_loss"], history[k]["stage2_val_loss"]
        return TrainingResult(
            degraded=self._unpad(k, spec, ckpt1),
            improved=self._unpad(k, spec, ckpt2),
            stage1_epochs=len(h1) - 1,
            stage2_epochs=max(len(h2) - 1, 0),
            stage1_best_epoch=int(best_epoch[1, k]),
            stage2_best_epoch=int(best_epoch[2, k]),
            stage1_learned=bool(learned[k]),
            finite=bool(finite[k]),
            history=history[k],
        )

    def _unpad(self, k: int, spec: ModelSpec, tensors: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        weights = {}
        for layer, ((fan_in, fan_out), index) in enumerate(
            zip(spec.layer_sizes, spec.linear_indices, strict=True)
        ):
            wt, b = tensors[2 * layer][k], tensors[2 * layer + 1][k]
            weights[f"network.{index}.weight"] = wt[:fan_in, :fan_out].T.detach().cpu().clone()
            weights[f"network.{index}.bias"] = b[:fan_out].detach().cpu().clone()
        return weights
