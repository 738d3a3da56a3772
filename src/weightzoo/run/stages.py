"""An example's whole path, in one function: indices in, rows and rejections out.

    plan → train pairs → judge → sign → format

`run_stages` is pure: what it returns depends only on the config, the probe set and the indices (never
on which other indices share the call, the thread count or the machine's timing), so every executor
and every split of the work writes the same bytes. Writing, staging and monitoring happen around it
(`pipeline.run_unit`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from weightzoo.config import Config
from weightzoo.data.probe_sets import ProbeSet


class StageTimer:
    """Seconds spent in each stage, in the order the stages first ran."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def __call__(self, stage: str, work: Callable[..., Any], *args, **kwargs) -> Any:
        start = time.perf_counter()
        try:
            return work(*args, **kwargs)
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start


@dataclass
class StageOutput:
    rows: list[dict]  # accepted examples, in the order of `indices`, as output rows
    rejected: list[dict]  # the others, with their reasons
    examples: list  # every TrainedExample (for monitoring and checkpoints)
    seconds: dict[str, float] = field(default_factory=dict)


def run_stages(
    cfg: Config,
    probe: ProbeSet,
    indices: list[int],
    *,
    device: Any = "cpu",
    threads: int = 1,
    watched: Collection[int] = (),
) -> StageOutput:
    """The examples `indices`, from plan to rows. `watched`: the examples whose training curves (and
    epoch snapshots, when the config asks) are recorded; `threads`: stacks trained side by side."""
    from weightzoo.data.pools import shared_pools
    from weightzoo.judge.pairs import judge_pairs
    from weightzoo.plan.jobs import plan_jobs, train_pairs

    timer = StageTimer()
    patterns = cfg.dataset.patterns
    enabled = tuple(patterns.enabled_patterns)
    pools = timer("plan", shared_pools, cfg.space, enabled, patterns.pool_size, cfg.pipeline.random_seed)
    plans, jobs = timer("plan", plan_jobs, cfg, pools, indices, watched)
    results = timer("train", train_pairs, cfg, plans, jobs, device, None, threads)
    examples = timer("validate", judge_pairs, cfg, plans, results)
    kept = [e for e in examples if e.verdict.accepted]
    signatures = timer("signatures", sign, cfg, probe, kept)
    rows, rejected = timer("format", format_rows, cfg, examples, signatures)
    return StageOutput(rows, rejected, examples, timer.seconds)


def sign(cfg: Config, probe: ProbeSet, kept: list) -> dict[int, dict[str, dict]]:
    """Each kept example's two activation signatures on the probe set, by example index."""
    from weightzoo.output.rows import model_config
    from weightzoo.signatures import layer_activations, signature

    methods = cfg.signature.neuron_profile_methods
    signatures: dict[int, dict[str, dict]] = {e.plan.index: {} for e in kept}
    for which in ("degraded", "improved"):
        acts = layer_activations(
            [e.plan.spec for e in kept], [getattr(e, which) for e in kept], probe.sequences
        )
        for e, a in zip(kept, acts, strict=True):
            signatures[e.plan.index][which] = signature(a, methods, probe.groups, model_config(cfg, e))
    return signatures


def format_rows(cfg: Config, examples: list, signatures: dict) -> tuple[list[dict], list[dict]]:
    """The output rows of the accepted examples (prompts, completions, weights, signatures), and the
    rejected examples' rows."""
    from weightzoo.output.rows import accepted_row, rejected_row

    rows = [accepted_row(cfg, e, signatures[e.plan.index]) for e in examples if e.verdict.accepted]
    rejected = [rejected_row(e) for e in examples if not e.verdict.accepted]
    return rows, rejected
