"""Training throughput: the cohort engine against the seed's way (one model at a time).

Run: python benchmarks/train_throughput.py [--examples 512] [--cohort 256] [--naive 24] [--threads 2]
     [--device cpu|cuda|mps] [--compiled-only]

Both sides train the same examples of the seed's example config (6-9 layers, 25-40 units, relu/gelu,
~500 rows): the same data, initial weights, learning rates and two stages. The naive loop does what the
seed's original code did: an `nn.Sequential`, a `DataLoader` over the rows with batch 128, Adam, and a
validation pass after every epoch, for as many epochs per stage as the engine ran for that model. It is
slow, so it runs on the first `--naive` examples; models/s is compared.

The engine runs twice on the same jobs, side by side: with the compiled step (`step_kernel.py`, where
it builds) and with the PyTorch step. Printed: models/s and achieved GFLOP/s (padded arithmetic of
forward and backward passes) of each, the naive loop's models/s and the ratio as `speedup: N.Nx`, and
the machine probe (PyTorch's batched matmul at the engine's shapes) measured in the same run, with
each engine's share of it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from machine import bmm_gflops
from torch.utils.data import DataLoader, TensorDataset

from weightzoo.config import load_config
from weightzoo.data.pools import build_pools
from weightzoo.engine import CohortStats, TrainingJob, TrainingResult, step_kernel, train_cohort
from weightzoo.engine.model import build_model, encode_inputs
from weightzoo.plan.examples import plan_example
from weightzoo.plan.jobs import stack_padding, stage_rules, training_job

CONFIG = Path(__file__).resolve().parents[1] / "configs/seed_example.yaml"


def naive_train(job: TrainingJob, result: TrainingResult, batch_size: int, lr_factor: float) -> None:
    """The seed's loop: one model, DataLoader, Adam, validation every epoch; the engine's epoch counts."""
    model = build_model(job.spec, job.init_weights)
    x_tr, x_va = encode_inputs(job.x_train, job.spec), encode_inputs(job.x_val, job.spec)
    stages = [
        (job.y_train_stage1, job.y_val_stage1, job.spec.learning_rate, result.stage1_epochs),
        (job.y_train_stage2, job.y_val_stage2, job.spec.learning_rate * lr_factor, result.stage2_epochs),
    ]
    for y_tr, y_va, lr, epochs in stages:
        loader = DataLoader(
            TensorDataset(x_tr, torch.as_tensor(y_tr, dtype=torch.float32)),
            batch_size=batch_size,
            shuffle=True,
        )
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        y_va = torch.as_tensor(y_va, dtype=torch.float32)
        for _ in range(epochs):
            model.train()
            for xb, yb in loader:
                optimizer.zero_grad()
                F.binary_cross_entropy_with_logits(model(xb), yb).backward()
                optimizer.step()
            model.eval()
            with torch.no_grad():
                F.binary_cross_entropy_with_logits(model(x_va), y_va)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=512)
    parser.add_argument("--cohort", type=int, default=256)
    parser.add_argument("--naive", type=int, default=24)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="where the engine trains (the naive loop: CPU)")
    parser.add_argument("--compiled-only", action="store_true", help="leave out the PyTorch step's run")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    cfg = load_config(CONFIG)
    pools = build_pools(cfg.space, cfg.dataset.patterns.enabled_patterns, cfg.dataset.patterns.pool_size, 0)
    jobs = [training_job(plan_example(cfg, pools, i), cfg) for i in range(args.examples)]
    rules, padding = stage_rules(cfg), stack_padding(cfg)  # as run-data-gen trains

    def engine(compiled: bool) -> tuple[CohortStats, list[TrainingResult]]:
        stats, results = CohortStats(), []
        for start in range(0, len(jobs), args.cohort):
            cohort = jobs[start : start + args.cohort]
            results += train_cohort(
                cohort,
                rules,
                device=args.device,
                stats=stats,
                padding=padding,
                threads=args.threads,
                compiled=compiled,
            )
        return stats, results

    runs = {}
    if step_kernel.usable(torch.device(args.device), torch.float32):
        runs["compiled step"] = engine(True)
    if not args.compiled_only:
        runs["pytorch step"] = engine(False)
    for name, (stats, results) in runs.items():
        epochs = np.mean([r.stage1_epochs + r.stage2_epochs for r in results])
        print(
            f"engine ({name}): {stats.models_per_second:.1f} models/s, {stats.gflops_per_second:.1f} GFLOP/s "
            f"({stats.models} models in cohorts of {args.cohort}, {stats.stacks} stacks, {args.threads} "
            f"threads, {epochs:.1f} epochs per model on average)"
        )
    stats, results = next(iter(runs.values()))

    start = time.perf_counter()
    for job, result in zip(jobs[: args.naive], results[: args.naive], strict=True):
        naive_train(job, result, cfg.training.batch_size, cfg.staged_training.improvement_lr_factor)
    naive = args.naive / (time.perf_counter() - start)
    print(f"naive loop (nn.Sequential + DataLoader + Adam, one model at a time): {naive:.1f} models/s")
    print(f"speedup: {stats.models_per_second / naive:.1f}x")

    stack = max(1, stats.models // max(stats.stacks, 1))
    width = cfg.model.neurons_per_layer.max
    peak = bmm_gflops(stack, cfg.training.batch_size, width, device=args.device)
    print(
        f"machine probe: batched matmul at the engine's shapes ([{stack}, {cfg.training.batch_size}, "
        f"{width}] x [{width}, {width}]): {peak:.1f} GFLOP/s"
    )
    for name, (stats, _) in runs.items():
        print(f"engine ({name}) at {stats.gflops_per_second / peak:.0%} of the probe")
    if torch.device(args.device).type == "cuda":
        print(f"card memory: {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB at most allocated")


if __name__ == "__main__":
    main()
