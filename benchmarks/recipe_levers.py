"""One training lever, measured: train examples of a config in this process and score them on fresh data.

Run: python benchmarks/recipe_levers.py [--config configs/recommended.yaml] [--examples 128] [--first 0]
     [--set key.path=value ...] [--threads 2]

Plans and trains `--examples` examples (indices from `--first`) of the config with each `--set` applied
(YAML values: `--set training.batch_size=64`, `--set "model.num_layers={min: 2, max: 3}"`), judges
them as run-data-gen would, and scores every example's stored models with `weightzoo.judge.audit` on fresh
sequences. Printed: the acceptance rate and rejection reasons, the verified share of the accepted and
of all examples, verified-and-accepted examples per second of training (planning, training and
validating; the pipeline's other stages are left out), the worst selected pattern's recall and the
specificity, mean fresh recall per pattern, the share of the examples selecting each pattern that
end up accepted and verified (a pattern the recipe cannot learn all but vanishes from the dataset),
and the epochs each stage ran. Compare levers by running
this twice, alternating, with and without a `--set`: the machine's speed drifts.
"""

from __future__ import annotations

import argparse
import collections
import json
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from weightzoo.config import parse_config
from weightzoo.data.pools import build_pools
from weightzoo.judge.audit import audit_row, fresh_members, fresh_negatives
from weightzoo.judge.pairs import train_examples
from weightzoo.output.rows import model_config, weights_json

CONFIG = Path(__file__).resolve().parents[1] / "configs/recommended.yaml"


def apply(raw: dict, assignment: str) -> None:
    path, _, value = assignment.partition("=")
    *parents, key = path.split(".")
    for name in parents:
        raw = raw.setdefault(name, {})
    raw[key] = yaml.safe_load(value)


def as_row(cfg, example) -> dict:
    config = model_config(cfg, example)
    meta = {"selected_patterns": list(example.plan.selected), "target_pattern": example.plan.target}
    return {
        "example_id": example.plan.index,
        "metadata": json.dumps(meta),
        "degraded_model_weights": weights_json(config, example.degraded, example.scales["degraded"]),
        "improved_model_weights": weights_json(config, example.improved, example.scales["improved"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("--examples", type=int, default=128)
    parser.add_argument("--first", type=int, default=0, help="first example index")
    parser.add_argument("--set", action="append", default=[], dest="sets")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--fresh", type=int, default=300)
    args = parser.parse_args()
    torch.set_num_threads(1)
    raw = yaml.safe_load(args.config.read_text())
    for assignment in args.sets:
        apply(raw, assignment)
    cfg = parse_config(raw, source=str(args.config), base_dir=args.config.parent)
    pat = cfg.dataset.patterns
    pools = build_pools(cfg.space, pat.enabled_patterns, pat.pool_size, cfg.pipeline.random_seed)
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    indices = list(range(args.first, args.first + args.examples))
    examples = train_examples(cfg, pools, indices, seconds=seconds, threads=args.threads)
    elapsed = time.perf_counter() - start

    rng = np.random.default_rng([2027, cfg.pipeline.random_seed])
    fresh = fresh_members(cfg.space, tuple(pat.enabled_patterns), args.fresh, rng, pools)
    scores = [
        audit_row(
            as_row(cfg, e), cfg.space, fresh, fresh_negatives(cfg.space, e.plan.selected, 2 * args.fresh, rng)
        )
        for e in examples
    ]
    accepted = np.array([e.verdict.accepted for e in examples])
    verified = np.array([s["verified"] for s in scores])
    print(f"{args.config.name} {' '.join(args.sets)}: {len(examples)} examples in {elapsed:.1f} s")
    print("  time: " + ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items()))
    print(
        f"  accepted {accepted.mean():.1%}; verified: of the accepted {verified[accepted].mean():.1%}, "
        f"of all {verified.mean():.1%}; verified and accepted {np.sum(verified & accepted) / elapsed:.2f}/s"
    )
    print(
        f"  fresh: worst selected recall {np.mean([s['worst_selected'] for s in scores]):.3f}, "
        f"specificity {np.mean([s['specificity'] for s in scores]):.3f}, "
        f"negatives' change {np.mean([s['negatives_change'] for s in scores]):+.3f}"
    )
    recall = collections.defaultdict(list)
    for s in scores:
        for p in s["selected"]:
            recall[p].append(s["recall"]["improved"][p])
    print(
        "  recall: "
        + " ".join(f"{p}={np.mean(v):.2f}" for p, v in sorted(recall.items(), key=lambda t: np.mean(t[1])))
    )
    kept = collections.defaultdict(list)  # does an example with this pattern end up in the dataset, true?
    for e, s in zip(examples, scores, strict=True):
        for p in e.plan.selected:
            kept[p].append(e.verdict.accepted and s["verified"])
    shares = sorted(((float(np.mean(v)), p) for p, v in kept.items()))
    print("  kept and verified, by selected pattern: " + " ".join(f"{p}={k:.2f}" for k, p in shares))
    reasons = collections.Counter(e.verdict.reason for e in examples if not e.verdict.accepted)
    print("  rejected: " + ", ".join(f"{r} {n}" for r, n in reasons.most_common()))
    stage1 = np.mean([e.result.stage1_epochs for e in examples])
    stage2 = np.mean([e.result.stage2_epochs for e in examples])
    print(f"  epochs: stage 1 {stage1:.1f}, stage 2 {stage2:.1f}")


if __name__ == "__main__":
    main()
