"""One training step of one stack, timed: the compiled step against the PyTorch step, beside the probe.

Run: python benchmarks/step_kernel.py [--examples 512] [--seconds 1.0]

Plans `--examples` examples of the seed's config, takes its largest stack of each activation (as
run-data-gen pads it), and times `Stack.step` on the stack's first batch, over and over, on one thread:
with the compiled step (`engine/step_kernel.py`) and with the PyTorch step, alternated. Printed per
stack: its shape, µs per model and step and GFLOP/s (padded forward and backward arithmetic) of each,
and the machine probe (PyTorch's `bmm` at the stack's shapes) measured in the same run. The step alone,
without the epoch loop around it: what `train_throughput.py` measures whole.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from machine import bmm_gflops

from weightzoo.config import load_config
from weightzoo.data.pools import build_pools
from weightzoo.engine import stack_key, step_kernel
from weightzoo.engine.stack import Stack
from weightzoo.plan.examples import plan_example
from weightzoo.plan.jobs import stack_padding, stage_rules, training_job

CONFIG = Path(__file__).resolve().parents[1] / "configs/seed_example.yaml"


def time_step(stack: Stack, seconds: float) -> float:
    """Seconds per call of the stack's step on its first batch (the parameters move; the shapes do not)."""
    rows = stack.rules.batch_size
    x, y = stack.x_tr[:, :rows], stack.y1_tr[:, :rows]
    mask = (torch.arange(rows)[None, :] < torch.as_tensor(stack.n_tr)[:, None]).to(stack.dtype)
    stepping = np.ones(stack.K, dtype=bool)
    stack.origin = np.arange(stack.K)
    stack.step(x, y, mask, stepping, stack.lr)
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        stack.step(x, y, mask, stepping, stack.lr)
        calls += 1
    return (time.perf_counter() - start) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=512)
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)  # as train_cohort trains
    if not step_kernel.usable(torch.device("cpu"), torch.float32):
        raise SystemExit("the compiled step does not build here (no C++ compiler?): nothing to compare")
    print(f"compiled step: {step_kernel.build_name()}")

    cfg = load_config(CONFIG)
    pools = build_pools(cfg.space, cfg.dataset.patterns.enabled_patterns, cfg.dataset.patterns.pool_size, 0)
    jobs = [training_job(plan_example(cfg, pools, i), cfg) for i in range(args.examples)]
    rules, padding = stage_rules(cfg), stack_padding(cfg)
    groups: dict[tuple, list] = {}
    for job in jobs:
        groups.setdefault(stack_key(job.spec), []).append(job)
    largest: dict[str, list] = {}
    for key, members in groups.items():
        if len(members) > len(largest.get(key[1], [])):
            largest[key[1]] = members

    for activation, members in sorted(largest.items()):
        seconds = {}
        for compiled in (True, False, True, False):  # alternated: the machine drifts
            stack = Stack(members, rules, torch.device("cpu"), torch.float32, padding, compiled=compiled)
            spent = time_step(stack, args.seconds / 2)
            seconds[compiled] = min(seconds.get(compiled, np.inf), spent)
        flops = 3 * stack._flops_per_row * stack.K * rules.batch_size
        width = stack.dims[1]
        probe = bmm_gflops(stack.K, rules.batch_size, width)
        print(
            f"{activation}: {stack.K} models, {stack.depth} layers of {width} units, "
            f"{rules.batch_size} rows; probe (bmm [{stack.K}, {rules.batch_size}, {width}] x "
            f"[{width}, {width}]) {probe:.1f} GFLOP/s"
        )
        for compiled, name in ((True, "compiled step"), (False, "pytorch step")):
            rate = flops / seconds[compiled] / 1e9
            print(
                f"  {name}: {seconds[compiled] / stack.K * 1e6:.1f} µs a model and step, {rate:.1f} GFLOP/s "
                f"({rate / probe:.0%} of the probe)"
            )
        print(f"  compiled / pytorch: {seconds[False] / seconds[True]:.2f}x")


if __name__ == "__main__":
    main()
