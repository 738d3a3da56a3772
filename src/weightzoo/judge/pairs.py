"""Trained pairs → judged pairs: both checkpoints rounded and quantized as stored, scored on held-out rows
they never trained on, and judged (`validation.py`). `train_examples` runs plan, train and judge in one
call, for tests and benchmarks; the pipeline calls the three stages itself (`run/stages.py`).
"""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass, field

import numpy as np
import torch

from weightzoo.config import Config
from weightzoo.engine import CohortStats, TrainingResult
from weightzoo.engine.model import encode_inputs, predict_logits
from weightzoo.judge.quantize import apply_precision_and_quantization
from weightzoo.judge.validation import Thresholds, Verdict, judge
from weightzoo.plan.examples import NEGATIVE, ExamplePlan
from weightzoo.plan.jobs import plan_jobs, train_pairs


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
