"""The stack loop: models of one `stack_key` trained together, epoch by epoch, through both stages.

`Stack` holds a stack's data and its flat parameter buffer (`layout.py`); each step runs the MLP
forward and backward over all its models at once (`mlp.py`) and Adam with each model's own learning
rate (`adam.py`); after each epoch the schedule (`schedule.py`) says which models checkpoint, stop or
start stage 2, and the loop carries that out on the tensors. Models that finish are dropped from the
stack, so they cost nothing more. The rules are in the package's docstring (`engine/__init__.py`).
"""

from __future__ import annotations

from functools import partial

import numpy as np
import torch
import torch.nn.functional as F

from weightzoo.engine import mlp, schedule, step_kernel
from weightzoo.engine.adam import StackAdam
from weightzoo.engine.jobs import (
    WIDTH_BAND,
    Padding,
    TrainingJob,
    TrainingResult,
    epoch_orders,
)
from weightzoo.engine.layout import Layout
from weightzoo.engine.model import ModelSpec, fold_input_standardization
from weightzoo.engine.rows import selection_rows, stacked_rows
from weightzoo.engine.schedule import StageRules, Stages


class Stack:
    """Models of one `stack_key`, stacked; widths and rows padded to the largest, or to `Padding`."""

    def __init__(
        self,
        jobs: list[TrainingJob],
        rules: StageRules,
        device: torch.device,
        dtype: torch.dtype,
        padding: Padding | None = None,
        compiled: bool | None = None,
    ):
        self.jobs, self.rules, self.device, self.dtype = jobs, rules, device, dtype
        # the compiled step (step_kernel.py) where it can run, unless told; else PyTorch's
        self.compiled = step_kernel.usable(device, dtype) if compiled is None else compiled
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

        self.layout = Layout.of(dims)  # all parameters in one flat buffer [K, P] (layout.py)
        specs = [j.spec for j in jobs]
        self.flat = self.layout.pack([j.init_weights for j in jobs], specs, dtype).to(device)
        self.adam = StackAdam(self.flat)
        self._bind_params()
        unit = torch.arange(W)[None, :] < torch.as_tensor(self.widths)[:, None]
        self.unit_mask = unit.to(device=device, dtype=dtype)[:, None, :]  # [K, 1, W]

        data = partial(stacked_rows, spec=spec0, standardize=self.standardize, device=device, dtype=dtype)

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
            sel = selection_rows(jobs, rules, least.select_rows, data)
            self.x_se, self.y_se, self.select_groups = sel.x, sel.y, sel.groups
            self.target_one_hot, self.allowed_drop = sel.target_one_hot, sel.allowed_drop
        else:
            self.x_se = self.y_se = self.select_groups = self.target_one_hot = self.allowed_drop = None
        self.lr = torch.tensor([j.spec.learning_rate for j in jobs], dtype=dtype, device=device)
        self.flops = 0.0
        self._flops_per_row = 2 * sum(a * b for a, b in zip(dims[:-1], dims[1:], strict=True))
        if self.dropout > 0:  # one generator per model, so no model's masks depend on its neighbours
            self._dropout_gens = [torch.Generator().manual_seed(int(j.order_seed) + 1) for j in jobs]

    def _bind_params(self) -> None:
        """Point the per-layer views at the current flat buffers (after creation or compaction). The
        compiled step reads the flat buffers themselves and needs none of them."""
        if self.compiled:
            return
        self.grad = torch.zeros_like(self.flat)
        self.params = self.layout.views(self.flat)
        self.adam.bind(self.flat, self.grad)

    def logits(self, x: torch.Tensor, flat: torch.Tensor, models: torch.Tensor | None = None):
        """The logits of the models whose parameters `flat` holds (`models`: their stack rows; None: all)."""
        if self.compiled:
            widths = self.widths if models is None else self.widths[models.cpu().numpy()]
            return step_kernel.logits(
                flat=flat,
                widths=widths,
                x=x,
                depth=self.depth,
                width=self.dims[1],
                activation=self.activation,
            )
        unit_mask = self.unit_mask if models is None else self.unit_mask.index_select(0, models)
        return mlp.forward(x, self.layout.views(flat), self.activation, unit_mask)[0]

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

    def _rows(self, which: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """The stack rows of the models in `which`, and their parameters (a copy)."""
        rows = torch.as_tensor(np.flatnonzero(which), device=self.device)
        return rows, self.flat.index_select(0, rows)

    def val_loss(self, labels: torch.Tensor, which: np.ndarray | None = None) -> np.ndarray:
        """Each model's mean validation loss under `labels`; with `which`, only those models' (NaN for
        the others): a model's loss is the same whichever models are run beside it."""
        x, flat, mask, models = self.x_va, self.flat, self.val_mask, None
        if which is not None:
            models, flat = self._rows(which)
            x, labels, mask = (t.index_select(0, models) for t in (x, labels, mask))
        with torch.no_grad():
            logits = self.logits(x, flat, models)
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
        rows, flat = self._rows(which)
        accuracy = np.full(self.target_one_hot.shape, np.nan)
        with torch.no_grad():
            logits = self.logits(self.x_se.index_select(0, rows), flat, models=rows)
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
        """One step for the models in `stepping`: each model's mean BCE over its own rows, its
        gradient (`mlp.py`) and an Adam step at its own learning rate (`adam.py`). Returns each
        model's summed loss over its rows."""
        keep = self._dropout_scales(x.shape[1], stepping)
        self.flops += 3 * self._flops_per_row * x.shape[0] * x.shape[1]  # forward + backward, padded
        if self.compiled:
            return step_kernel.step(
                flat=self.flat,
                m=self.adam.m,
                v=self.adam.v,
                t=self.adam.t,
                lr=lr,
                stepping=stepping,
                widths=self.widths,
                x=x,
                y=y,
                mask=row_mask,
                keep=torch.stack(keep) if keep is not None else None,
                depth=self.depth,
                width=self.dims[1],
                activation=self.activation,
            )
        with torch.no_grad():
            logits, pre, outs = mlp.forward(x, self.params, self.activation, self.unit_mask, keep)
            counts = row_mask.sum(1).clamp(min=1)
            per_row = F.binary_cross_entropy_with_logits(logits, y, reduction="none") * row_mask
            delta = ((torch.sigmoid(logits) - y) * row_mask / counts[:, None])[..., None]  # dL/dlogit
            grads = mlp.backward(delta, self.params, pre, outs, self.activation, keep)
            torch.cat(grads, dim=1, out=self.grad)
        self.adam.step(stepping, lr)
        return per_row.sum(1)

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
        self.state = schedule.begin_epoch(self.state)
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

        # The schedule decides (schedule.py); the tensors follow.
        self.state, act = schedule.judge_epoch(self.state, loss, score, params_ok, rules)
        self._save(act.save_degraded, self.ckpt1)
        self._save(act.save_improved, self.ckpt2)
        if act.broke.any():  # keep NaN out of the shared arithmetic: a broken model stops here
            self._zero(act.broke)
        self._save(act.ended_stage1, self.ckpt2, source=self.ckpt1)  # improved = degraded, until beaten
        if act.start_stage2.any():
            self._switch_to_stage2(act.start_stage2)

    def _switch_to_stage2(self, go_on: np.ndarray) -> None:
        """Restart the selected models from their degraded checkpoint with fresh Adam state."""
        self.state = schedule.begin_stage2(self.state, go_on, self.rules)
        sel = torch.as_tensor(go_on, device=self.device)
        with torch.no_grad():
            self.flat[sel] = self.ckpt1[sel]
            self.adam.reset(sel)
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
            for name in ("flat", "ckpt1", "ckpt2", *self._PER_MODEL_TENSORS):
                if getattr(self, name, None) is not None:
                    setattr(self, name, getattr(self, name).index_select(0, sel))
            self.adam.select(sel)
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
            for tensor in (self.flat, self.adam.m, self.adam.v):
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
                "exp_avg": self.layout.unpack(self.adam.m[k], job.spec),
                "exp_avg_sq": self.layout.unpack(self.adam.v[k], job.spec),
                "step": int(self.adam.t[k]),
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
        weights = self.layout.unpack(flat[k], spec)
        return fold_input_standardization(spec, weights) if self.standardize else weights
