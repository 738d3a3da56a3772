"""Plans → training jobs → trained pairs: what the engine is asked to do for each example, and the call
that does it.

`plan_jobs` plans each example (`plan/examples.py`) and makes its training job: the two stages' rules,
the stack padding and, for `validation.pattern_specific` with `stage2_watch: target`, the held-out
selection rows. `train_pairs` trains every job's (degraded, improved) pair with the engine.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection

import numpy as np
import torch

from weightzoo.config import Config, ValidationSection
from weightzoo.data.subject_data import dataset_sizes
from weightzoo.engine import CohortStats, Padding, StageRules, TrainingJob, TrainingResult, train_cohort
from weightzoo.plan.examples import NEGATIVE, ExamplePlan, plan_example

CURVE_SAMPLE = 2  # models per cohort whose training curves are logged: the first ones, in index order


def stage_rules(cfg: Config) -> StageRules:
    st = cfg.staged_training
    return StageRules(
        batch_size=cfg.training.batch_size,
        max_stage1_epochs=cfg.training.epochs,
        stage1_deadline_epochs=st.max_degraded_epochs,
        max_stage2_epochs=st.improvement_epochs,
        patience=cfg.training.early_stopping.patience,
        min_stage1_improvement=st.min_improvement_threshold,
        stage2_lr_factor=st.improvement_lr_factor,
        record_batch_loss=cfg.metrics.tensorboard.update_freq == "batch",
        min_delta=cfg.training.early_stopping.min_delta,
        stage2_max_other_drop=(
            cfg.validation.max_other_degradation
            if cfg.staged_training.stage2_watch == "target" and cfg.validation.pattern_specific
            else None
        ),
    )


def stack_padding(cfg: Config, factor: float = 1.0) -> Padding:
    """The largest data any example of this config with this dataset factor can have (its widest
    model, most training, validation and selection rows): every stack is padded to these, so an
    example's training never depends on which examples it was trained beside. Examples of different
    factors (`dataset.patterns.pattern_dataset_factor`) train in stacks of their own."""
    pat = cfg.dataset.patterns
    train = val = 0
    weights = pat.row_weights(tuple(pat.enabled_patterns))
    for k in range(pat.min_patterns_per_batch, pat.max_patterns_per_batch + 1):
        # a model's size depends on its patterns' weights alone: each distinct set of them, once
        for chosen in {tuple(sorted(c)) for c in itertools.combinations(weights, k)}:
            n = dataset_sizes(
                k,
                round(pat.target_total_examples * factor),
                pat.negative_ratio,
                pat.samples_per_pattern.min,
                pat.max_total_examples,
                chosen,
            ).total
            n_val = round(n * cfg.training.validation_split)  # as plan_example splits
            train, val = max(train, n - n_val), max(val, n_val)
    select = (pat.max_patterns_per_batch + 1) * cfg.validation.test_set_size
    return Padding(cfg.model.neurons_per_layer.max, train, val, select)


def training_job(plan: ExamplePlan, cfg: Config) -> TrainingJob:
    train, val = ~plan.is_val, plan.is_val
    x, clean, corrupted = plan.data.sequences, plan.data.labels, plan.stage1_labels
    return TrainingJob(
        spec=plan.spec,
        x_train=x[train],
        y_train_stage1=corrupted[train],
        y_train_stage2=clean[train],
        x_val=x[val],
        y_val_stage1=corrupted[val],
        y_val_stage2=clean[val],
        init_weights=plan.init_weights,
        order_seed=plan.order_seed,
        standardize_inputs=cfg.training.standardize_inputs,
        **_selection(plan, cfg.validation),
    )


def _selection(plan: ExamplePlan, validation: ValidationSection) -> dict:
    """The selection set for stage 2's target watch, when the plan has one, and how much each group
    may lose before the watch penalizes it: the validator's limits."""
    if plan.selection is None:
        return {}
    groups = (*plan.selected, NEGATIVE)
    negatives = validation.max_negative_degradation
    allowed = [validation.max_other_degradation] * len(plan.selected)
    allowed.append(validation.max_other_degradation if negatives is None else negatives)
    return {
        "select_allowed_drop": np.array(allowed),
        "x_select": plan.selection.sequences,
        "y_select": plan.selection.labels,
        "select_groups": np.array([groups.index(g) for g in plan.selection.groups]),
        "target_group": groups.index(plan.target),
    }


def plan_jobs(
    cfg: Config, pools: dict[str, np.ndarray], indices: list[int], watched: Collection[int] | None = None
) -> tuple[list[ExamplePlan], list[TrainingJob]]:
    """Each example's plan (patterns, architecture, rows, held-out sets) and its training job."""
    plans = [plan_example(cfg, pools, i) for i in indices]
    jobs = [training_job(p, cfg) for p in plans]
    checkpoint = cfg.metrics.checkpoint
    watched = set(indices[:CURVE_SAMPLE] if watched is None else watched)
    if checkpoint.save_every_epoch:
        for plan, job in zip(plans, jobs, strict=True):
            if plan.index in watched:
                job.snapshot_epochs, job.snapshot_optimizer = True, checkpoint.save_optimizer_state
    return plans, jobs


def train_pairs(
    cfg: Config,
    plans: list[ExamplePlan],
    jobs: list[TrainingJob],
    device: torch.device | str = "cpu",
    stats: CohortStats | None = None,
    threads: int = 1,
) -> list[TrainingResult]:
    """Every job through both stages with the engine; models with another dataset factor (another
    number of rows) train in stacks of their own."""
    results: list = [None] * len(jobs)
    by_factor: dict[float, list[int]] = {}
    for i, plan in enumerate(plans):
        by_factor.setdefault(cfg.dataset.patterns.dataset_factor(plan.selected), []).append(i)
    for factor, members in sorted(by_factor.items()):
        trained = train_cohort(
            [jobs[i] for i in members],
            stage_rules(cfg),
            device=device,
            stats=stats,
            padding=stack_padding(cfg, factor),
            threads=threads,
        )
        for i, result in zip(members, trained, strict=True):
            results[i] = result
    return results
