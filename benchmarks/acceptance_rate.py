"""How many examples pass validation, and why the others fail.

Run: python benchmarks/acceptance_rate.py [--examples 256] [--corruption-rate 1.0] [--config PATH]

Plans and trains `--examples` examples of a config (default: the seed's example config, optionally
with another `staged_training.corruption_rate`), judges each on its held-out test set, and prints the
acceptance rate, the rejection reasons with counts, and for accepted examples the mean accuracy gain on
the target pattern and the mean change on the other groups.
"""

from __future__ import annotations

import argparse
import collections
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from weightzoo.config import parse_config
from weightzoo.data.pools import build_pools
from weightzoo.engine import CohortStats
from weightzoo.judge.pairs import train_examples

CONFIG = Path(__file__).resolve().parents[1] / "configs/seed_example.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("--examples", type=int, default=256)
    parser.add_argument("--cohort", type=int, default=256)
    parser.add_argument("--corruption-rate", type=float)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    raw = yaml.safe_load(args.config.read_text())
    if args.corruption_rate is not None:
        raw["staged_training"]["corruption_rate"] = args.corruption_rate
    cfg = parse_config(raw, source=str(args.config), base_dir=args.config.parent)
    pat = cfg.dataset.patterns
    pools = build_pools(cfg.space, pat.enabled_patterns, pat.pool_size, cfg.pipeline.random_seed)

    stats, examples, start = CohortStats(), [], time.perf_counter()
    for first in range(0, args.examples, args.cohort):
        indices = list(range(first, min(first + args.cohort, args.examples)))
        examples += train_examples(cfg, pools, indices, stats=stats)
    seconds = time.perf_counter() - start

    accepted = [e for e in examples if e.verdict.accepted]
    print(
        f"config {args.config.name}, corruption_rate {cfg.staged_training.corruption_rate}: "
        f"{len(accepted)} of {len(examples)} accepted ({len(accepted) / len(examples):.1%}) "
        f"in {seconds:.1f} s ({stats.models_per_second:.1f} models/s trained)"
    )
    reasons = collections.Counter(e.verdict.reason for e in examples if not e.verdict.accepted)
    print("rejected, by first failed rule: " + ", ".join(f"{r} {n}" for r, n in reasons.most_common()))
    every = collections.Counter(f for e in examples for f in e.verdict.failures)
    print("every failed rule:             " + ", ".join(f"{r} {n}" for r, n in every.most_common()))

    for label, items in (("accepted", accepted), ("all", examples)):
        if not items:
            continue
        target = [
            (e.accuracy["degraded"][e.plan.target], e.accuracy["improved"][e.plan.target]) for e in items
        ]
        others = [change(e, [g for g in e.plan.selected if g != e.plan.target]) for e in items]
        negatives = [change(e, ["negative"]) for e in items]
        before, after = np.mean(target, axis=0)
        print(
            f"{label:8s}: target accuracy {before:.3f} -> {after:.3f} (gain {after - before:+.3f}), "
            f"other patterns {np.mean(np.concatenate(others)):+.3f}, negatives {np.mean(negatives):+.3f}"
        )


def change(example, groups: list[str]) -> np.ndarray:
    """Improved minus degraded held-out accuracy for the named groups."""
    return np.array([example.accuracy["improved"][g] - example.accuracy["degraded"][g] for g in groups])


if __name__ == "__main__":
    main()
