"""The two-stage rules for one model, as a plain PyTorch loop: the yardstick for the batched engine.

Same rules as the engine (read `engine/__init__.py`), written the obvious way: one `SubjectMLP`, one
`torch.optim.Adam`, one epoch after another. Tests check that the engine's models match this loop's
in float64; it is too slow for real runs.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.nn.functional as F

from weightzoo.engine import StageRules, TrainingJob, TrainingResult, epoch_order
from weightzoo.engine.model import (
    build_model,
    encode_inputs,
    fold_input_standardization,
    input_standardization,
)


def train_one(job: TrainingJob, rules: StageRules, dtype: torch.dtype = torch.float64) -> TrainingResult:
    spec = job.spec
    model = build_model(spec, job.init_weights, dtype)

    def inputs(sequences) -> torch.Tensor:
        x = encode_inputs(sequences, spec, torch.float64)
        if job.standardize_inputs:
            shift, scale = input_standardization(spec)
            x = (x - torch.as_tensor(shift)) / torch.as_tensor(scale)
        return x.to(dtype)

    def raw(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        weights = {k: v.clone() for k, v in weights.items()}
        return fold_input_standardization(spec, weights) if job.standardize_inputs else weights

    x_tr, x_va = inputs(job.x_train), inputs(job.x_val)
    labels = {
        1: (torch.as_tensor(job.y_train_stage1, dtype=dtype), torch.as_tensor(job.y_val_stage1, dtype=dtype)),
        2: (torch.as_tensor(job.y_train_stage2, dtype=dtype), torch.as_tensor(job.y_val_stage2, dtype=dtype)),
    }

    def val_loss(stage: int) -> float:
        model.eval()
        with torch.no_grad():
            return float(F.binary_cross_entropy_with_logits(model(x_va), labels[stage][1]))

    watch_target = rules.stage2_max_other_drop is not None and job.x_select is not None
    if watch_target:
        x_se, groups = inputs(job.x_select), np.asarray(job.select_groups)
        y_se = torch.as_tensor(job.y_select, dtype=dtype)

    def group_accuracy() -> dict[int, float]:
        with torch.no_grad():
            correct = ((model(x_se) > 0) == (y_se > 0.5)).numpy()
        return {int(g): float(correct[groups == g].mean()) for g in np.unique(groups)}

    def allowed_drop(group: int) -> float:
        if job.select_allowed_drop is None:
            return rules.stage2_max_other_drop
        return float(job.select_allowed_drop[group])

    def stage2_score(baseline: dict[int, float]) -> float:
        accuracy = group_accuracy()
        gain = accuracy.get(job.target_group, 0.0) - baseline.get(job.target_group, 0.0)
        excess = sum(
            max(0.0, baseline[g] - accuracy[g] - allowed_drop(g)) for g in baseline if g != job.target_group
        )
        return gain - rules.stage2_penalty * excess

    def finite() -> bool:
        return all(torch.isfinite(p).all() for p in model.parameters())

    def run_stage(stage: int, lr: float, max_epochs: int, best: float, score=lambda: 0.0, deadline=None):
        """Train one stage; returns (checkpoint, best loss, best epoch, epochs run, history, finite).
        A new best is a higher score, or an equal score with a lower validation loss. The starting model
        is the first candidate with loss `best` (stage 1); with `best` = inf (stage 2) it is only the
        fallback, and the first epoch is the first best."""
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        checkpoint, best_epoch, wait, history = copy.deepcopy(model.state_dict()), 0, 0, []
        best_score = 0.0 if math.isfinite(best) else -math.inf
        y_tr = labels[stage][0]
        for epoch in range(max_epochs):
            model.train()
            order = torch.as_tensor(epoch_order(job.order_seed, stage, epoch, len(x_tr)))
            for start in range(0, len(order), rules.batch_size):
                rows = order[start : start + rules.batch_size]
                optimizer.zero_grad()
                F.binary_cross_entropy_with_logits(model(x_tr[rows]), y_tr[rows]).backward()
                optimizer.step()
            loss = val_loss(stage)
            history.append(loss)
            if not (math.isfinite(loss) and finite()):
                return checkpoint, best, best_epoch, epoch + 1, history, False
            model.eval()
            now = score()
            if now > best_score + 1e-12 or (abs(now - best_score) <= 1e-12 and loss < best - rules.min_delta):
                checkpoint, best, best_epoch, wait = copy.deepcopy(model.state_dict()), loss, epoch + 1, 0
                best_score = now
            else:
                wait += 1
            if wait >= rules.patience or (
                deadline is not None and epoch + 1 >= deadline and not deadline_met(best)
            ):
                return checkpoint, best, best_epoch, epoch + 1, history, True
        return checkpoint, best, best_epoch, max_epochs, history, True

    initial = val_loss(1)

    def deadline_met(best: float) -> bool:
        return best <= initial * (1 - rules.min_stage1_improvement)

    degraded, best1, best_epoch1, epochs1, h1, ok = run_stage(
        1, spec.learning_rate, rules.max_stage1_epochs, initial, deadline=rules.stage1_deadline_epochs
    )
    learned = ok and deadline_met(best1)
    history = {"stage1_val_loss": [initial] + h1, "stage2_val_loss": []}
    improved, best_epoch2, epochs2 = degraded, 0, 0
    max2 = rules.max_stage2_epochs
    if learned and max2 > 0:
        model.load_state_dict(degraded)
        start = val_loss(2)
        baseline = group_accuracy() if watch_target else {}
        score = (lambda: stage2_score(baseline)) if watch_target else (lambda: 0.0)
        improved, _, best_epoch2, epochs2, h2, ok = run_stage(
            2, spec.learning_rate * rules.stage2_lr_factor, max2, math.inf, score
        )
        history["stage2_val_loss"] = [start] + h2
    return TrainingResult(
        degraded=raw(degraded),
        improved=raw(improved),
        stage1_epochs=epochs1,
        stage2_epochs=epochs2,
        stage1_best_epoch=best_epoch1,
        stage2_best_epoch=best_epoch2,
        stage1_learned=learned,
        finite=ok,
        history=history,
    )
