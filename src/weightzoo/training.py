"""Plans → trained, judged (degraded, improved) pairs: the training half of run-data-gen.

Three stages (`stages.run_stages` calls them one by one): `plan_jobs` plans each example and makes its
training job; `train_pairs` trains them together with the engine; `judge_pairs` rounds and quantizes
both checkpoints as the config says, measures every group's accuracy on the held-out test set with
the stored weights, and judges each pair (see `validation.py`). `train_examples` runs all three.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Collection
from dataclasses import dataclass, field

import numpy as np
import torch

from weightzoo.config import Config, ValidationSection
from weightzoo.engine import CohortStats, Padding, StageRules, TrainingJob, TrainingResult, train_cohort
from weightzoo.examples import NEGATIVE, ExamplePlan, plan_example
from weightzoo.model import encode_inputs, predict_logits
from weightzoo.monitoring import CURVE_SAMPLE
from weightzoo.quantize import apply_precision_and_quantization
from weightzoo.subject_data import dataset_sizes
from weightzoo.validation import Thresholds, Verdict, judge


@dataclass
class TrainedExample:
    plan: ExamplePlan
    result: TrainingResult
    degraded: dict[str, torch.Tensor]  # stored weights (rounded and quantized)
    improved: dict[str, torch.Tensor]
    scales: dict[str, dict[str, float]]  # "degraded"/"improved" -> tensor name -> quantization scale
    accuracy: dict[str, dict[str, float]]  # "degraded"/"improved" -> group -> held-out accuracy
    verdict: Verdict
    # "degraded"/"improved" -> every enabled pattern with held-out rows -> share answered "yes"
    recall: dict[str, dict[str, float]] = field(default_factory=dict)


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


def thresholds(cfg: Config) -> Thresholds:
    v = cfg.validation
    return Thresholds(
        pattern_specific=v.pattern_specific,
        min_pattern_improvement=v.min_pattern_improvement,
        max_other_degradation=v.max_other_degradation,
        min_overall_gain=cfg.training.min_degradation_threshold,
        max_negative_degradation=v.max_negative_degradation,
        min_pattern_accuracy=v.min_pattern_accuracy,
        min_negative_accuracy=v.min_negative_accuracy,
    )


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


def held_out_inputs(plan: ExamplePlan) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
    """The encoded held-out rows, the test set then the profile set, and each group's rows: the same for
    both checkpoints. Groups: the selected patterns and "negative" (test set), then every other enabled
    pattern (profile set)."""
    groups = np.array(plan.test.groups + plan.profile.groups)
    rows = np.concatenate([plan.test.sequences, plan.profile.sequences])
    names = (*plan.selected, NEGATIVE, *dict.fromkeys(plan.profile.groups))
    masks = {g: groups == g for g in names}
    return encode_inputs(rows, plan.spec), {g: m for g, m in masks.items() if m.any()}


def held_out_scores(
    plan: ExamplePlan,
    weights: dict[str, torch.Tensor],
    inputs: tuple[torch.Tensor, dict[str, np.ndarray]] | None = None,
) -> tuple[dict[str, float], dict[str, float]]:
    """(accuracy, recall) on held-out rows. `accuracy`: per selected pattern, on negatives and overall,
    on the test set (what validation judges). `recall`: the share of each enabled pattern's held-out
    members answered "yes", for the selected patterns (their test rows) and the others (the profile
    set); negatives are not a pattern and have none. `inputs`: `held_out_inputs` of the plan."""
    x, masks = inputs or held_out_inputs(plan)
    yes = (predict_logits(plan.spec, weights, x) > 0).numpy()
    n_test = len(plan.test.groups)
    correct = yes[:n_test] == plan.test.labels.astype(bool)
    accuracy = {g: float(correct[m[:n_test]].mean()) for g, m in masks.items() if m[:n_test].any()}
    accuracy["overall"] = float(correct.mean())
    recall = {g: float(yes[m].mean()) for g, m in masks.items() if g != NEGATIVE}
    return accuracy, recall


def group_accuracy(
    plan: ExamplePlan,
    weights: dict[str, torch.Tensor],
    inputs: tuple[torch.Tensor, dict[str, np.ndarray]] | None = None,
) -> dict[str, float]:
    """Held-out accuracy per selected pattern, on negatives, and overall (`held_out_scores`)."""
    return held_out_scores(plan, weights, inputs)[0]


def held_out_sizes(plan: ExamplePlan) -> dict[str, int]:
    """Held-out rows behind each recall (every enabled pattern) and behind specificity ("negative")."""
    counts: dict[str, int] = {}
    for group in plan.test.groups + plan.profile.groups:
        counts[group] = counts.get(group, 0) + 1
    return counts


def train_examples(
    cfg: Config,
    pools: dict[str, np.ndarray],
    indices: list[int],
    device: torch.device | str = "cpu",
    stats: CohortStats | None = None,
    watched: Collection[int] | None = None,
    seconds: dict[str, float] | None = None,
    threads: int = 1,
) -> list[TrainedExample]:
    """Plan, train and judge the examples `indices` (`plan_jobs`, `train_pairs`, `judge_pairs`).
    `watched`: the example indices that get per-epoch snapshots when the config asks for them (the
    models whose curves go to TensorBoard); None: the first `CURVE_SAMPLE` of `indices`. `seconds`: if
    given, the time spent planning, training and validating is added to its "plan", "train" and
    "validate" entries. `threads`: stacks trained side by side (the bits do not depend on it)."""
    seconds = {} if seconds is None else seconds
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[stage] = seconds.get(stage, 0.0) + now - clock
        clock = now

    plans, jobs = plan_jobs(cfg, pools, indices, watched)
    lap("plan")
    results = train_pairs(cfg, plans, jobs, device, stats, threads)
    lap("train")
    judged = judge_pairs(cfg, plans, results)
    lap("validate")
    return judged


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


def judge_pairs(cfg: Config, plans: list[ExamplePlan], results: list[TrainingResult]) -> list[TrainedExample]:
    """Both checkpoints of each pair rounded and quantized as stored, scored on held-out rows, judged."""
    rules = thresholds(cfg)
    out = []
    for plan, result in zip(plans, results, strict=True):
        stored, scales, accuracy, recall = {}, {}, {}, {}
        inputs = held_out_inputs(plan)
        for which in ("degraded", "improved"):
            stored[which], scales[which] = apply_precision_and_quantization(
                getattr(result, which), cfg.model.precision, cfg.model.quantization
            )
            accuracy[which], recall[which] = held_out_scores(plan, stored[which], inputs)
        verdict = judge(
            plan.target,
            accuracy["degraded"],
            accuracy["improved"],
            rules,
            result.finite,
            result.stage1_learned,
        )
        out.append(
            TrainedExample(
                plan, result, stored["degraded"], stored["improved"], scales, accuracy, verdict, recall
            )
        )
    return out
