"""A cohort of training jobs → their results: jobs grouped into stacks (`jobs.stack_key`), each stack
trained by `stack.Stack`, stacks side by side on threads, results back in the jobs' order."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import torch

from weightzoo.engine.jobs import CohortStats, Padding, TrainingJob, TrainingResult, stack_key
from weightzoo.engine.schedule import StageRules
from weightzoo.engine.stack import Stack


def train_cohort(
    jobs: list[TrainingJob],
    rules: StageRules,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    stats: CohortStats | None = None,
    padding: Padding | None = None,
    threads: int = 1,
    compiled: bool | None = None,
) -> list[TrainingResult]:
    """Train every job through both stages; results come back in the jobs' order. `padding`: the fixed
    sizes that make each model's results independent of its stack (None: each stack's own largest).

    `threads`: stacks trained side by side, each on its own thread with single-threaded kernels. A
    kernel that splits one product over several threads rounds differently with each thread count
    (batched products do when a stack holds fewer models than there are threads), so the engine never
    lets one: its bits are the same for any `threads`, and parallelism comes from whole stacks.

    `compiled`: train with the compiled step (`step_kernel.py`) or PyTorch's; None: the compiled one
    wherever it runs (the CPU, with a C++ compiler on the machine)."""
    results: list[TrainingResult | None] = [None] * len(jobs)
    groups: dict[tuple, list[int]] = {}
    for i, job in enumerate(jobs):  # a stack shares one stage-2 rule: with or without a selection set
        key = (*stack_key(job.spec), job.x_select is not None, job.standardize_inputs)
        groups.setdefault(key, []).append(i)
    start = time.perf_counter()

    def train(key: tuple) -> Stack:
        members = groups[key]
        stack = Stack([jobs[i] for i in members], rules, torch.device(device), dtype, padding, compiled)
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
