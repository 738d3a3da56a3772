"""Are the labels true? Generate a dataset, rebuild every model from its stored weights, and score it
on fresh sequences; side by side with the seed's config as it behaved before the quality gate.

Run: python benchmarks/label_quality.py [--config configs/recommended.yaml] [--accepted 500]
     [--baseline-accepted N] [--unchanged-accepted 50] [--workers 2] [--fresh 500] [--set k=v]

Three runs of `weightzoo run-data-gen` (the command itself, in a subprocess, timed as a whole), each
into its own temporary folder with its own signature file:
1. `--config` until `--accepted` examples are accepted;
2. the seed's config with the behaviour it had before the gate ("baseline": no quality gate,
   negatives unlimited, raw inputs, and `negative_ratio: 1`, which is what its 0.5 used to mean: half
   the rows negative);
3. the seed's config unchanged (the gate on, by default).
Only paths, the number of accepted examples, the worker count and TensorBoard's server (not launched)
are changed, and for the first run each `--set key.path=value`. Each dataset is then scored by
`weightzoo.judge.audit`, which shares no code with training or validation: recall of every selected pattern
and specificity on fresh sequences (outside the run's pools wherever a pattern has members to spare),
the target's gain, the other patterns' and the negatives' change. Printed: the verified share, the
share of classification completions that are true, the distributions, accepted and verified
examples/s, and verified examples/s against the baseline's. Before each run, a one-second probe of the
machine (`machine.py`: batched products at the recommended config's shapes, one thread) is printed
beside it: these machines drift by 2x over hours, and a slow moment slows the product-bound
recommended config more than the baseline, so the ratio moves with it.
"""

from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
import yaml
from machine import bmm_gflops  # sibling scripts: benchmarks/ is on sys.path
from recipe_levers import apply

from weightzoo.config import parse_config
from weightzoo.data.pools import build_pools
from weightzoo.judge.audit import Bars, audit_row, fresh_members, fresh_negatives

ROOT = Path(__file__).resolve().parents[1]
PROBE_STACK = 16  # about the models of one stack of the recommended config
RECOMMENDED = ROOT / "configs/recommended.yaml"
SEED = ROOT / "configs/seed_example.yaml"
# The seed's config as it behaved before the quality gate (see the module docstring).
BEFORE_THE_GATE = {
    "validation": {
        "min_pattern_accuracy": 0.0,
        "min_negative_accuracy": 0.0,
        "max_negative_degradation": 1.0,
    },
    "training": {"standardize_inputs": False},
    "dataset": {"patterns": {"negative_ratio": 1.0}},
}


def merge(base: dict, extra: dict) -> dict:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = value
    return base


def run(
    label: str, config: Path, accepted: int, workers: int, folder: Path, extra: dict, sets: list[str] = ()
) -> dict:
    """One run-data-gen in `folder`; returns its config, output folder and seconds."""
    raw = merge(yaml.safe_load(config.read_text()), extra)
    for assignment in sets:
        apply(raw, assignment)
    raw["dataset"]["output_dataset_length"] = accepted
    raw["pipeline"].update(output_dir=str(folder / "out"), max_threads=workers)
    raw["signature"]["dataset_path"] = str(folder / "signature.json")
    raw.setdefault("metrics", {})["dir"] = str(folder / "runs")
    raw["metrics"].setdefault("tensorboard", {})["auto_launch"] = False
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    command = [sys.executable, "-m", "weightzoo"]
    subprocess.run([*command, "create-sig-dataset", "--config-path", str(path), "--size", "200"], check=True)
    probe = bmm_gflops(PROBE_STACK, 128, 64)
    start = time.perf_counter()
    subprocess.run(
        [*command, "run-data-gen", "--config-path", str(path)], check=True, stdout=subprocess.DEVNULL
    )
    seconds = time.perf_counter() - start
    cfg = parse_config(raw, source=str(path), base_dir=folder)
    info = json.loads((folder / "out/dataset_info.json").read_text())
    print(
        f"{label}: {config.name}, {accepted} accepted of {info.get('attempted')} attempted "
        f"in {seconds:.1f} s (machine probe before it: {probe:.1f} GFLOP/s)"
    )
    return {"label": label, "name": config.name, "cfg": cfg, "out": folder / "out", "seconds": seconds}


def audit(result: dict, fresh_size: int, bars: Bars) -> list[dict]:
    cfg = result["cfg"]
    pat = cfg.dataset.patterns
    enabled = tuple(pat.enabled_patterns)
    rng = np.random.default_rng([2027, cfg.pipeline.random_seed])  # a stream no run uses
    pools = build_pools(cfg.space, enabled, pat.pool_size, cfg.pipeline.random_seed)
    fresh = fresh_members(cfg.space, enabled, fresh_size, rng, pools)
    shared = [name for name in enabled if not fresh.disjoint[name]]
    if shared:
        print(f"  fresh members drawn from all members (the pools hold nearly all): {', '.join(shared)}")
    rows = pq.read_table(result["out"] / "data").to_pylist()
    scores = []
    for row in rows:
        selected = tuple(json.loads(row["metadata"])["selected_patterns"])
        negatives = fresh_negatives(cfg.space, selected, 2 * fresh_size, rng)
        scores.append(audit_row(row, cfg.space, fresh, negatives, bars))
    return scores


def spread(values) -> str:
    if len(values) == 0:
        return "n/a"
    q = np.quantile(np.asarray(values, dtype=float), [0, 0.1, 0.25, 0.5, 0.75, 0.9, 1])
    return " ".join(f"{v:+.3f}" for v in q)


def report(result: dict, scores: list[dict]) -> float:
    n = len(scores)
    verified = sum(s["verified"] for s in scores)
    true = sum(s["completion_true"] for s in scores)
    seconds = result["seconds"]
    print(
        f"  verified {verified} of {n} ({verified / n:.1%}); classification completions true "
        f"{true} of {n} ({true / n:.1%})"
    )
    print(f"  accepted examples/s {n / seconds:.2f}, verified examples/s {verified / seconds:.2f}")
    print("  distributions (min p10 p25 median p75 p90 max), on fresh sequences:")
    print(f"    worst selected recall  {spread([s['worst_selected'] for s in scores])}")
    print(f"    specificity            {spread([s['specificity'] for s in scores])}")
    print(f"    target gain            {spread([s['target_gain'] for s in scores])}")
    print(f"    other patterns' change {spread([c for s in scores for c in s['other_changes']])}")
    print(f"    negatives' change      {spread([s['negatives_change'] for s in scores])}")
    counts = collections.Counter(p for s in scores for p in s["selected"])
    print("  accepted rows selecting each pattern: " + " ".join(f"{p}={n}" for p, n in counts.most_common()))
    named = [len(s["named"]) - len(s["selected"]) for s in scores]
    print(f"  patterns named beyond the selected ones: {sum(named)} in {sum(1 for k in named if k)} rows")
    return verified / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=RECOMMENDED)
    parser.add_argument("--accepted", type=int, default=500)
    parser.add_argument("--baseline-accepted", type=int, help="default: --accepted")
    parser.add_argument("--unchanged-accepted", type=int, default=50, help="0 skips the run")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--fresh", type=int, default=500, help="fresh members per pattern")
    parser.add_argument("--set", action="append", default=[], dest="sets", help="key.path=value for --config")
    args = parser.parse_args()
    torch.set_num_threads(1)  # for the probe; the runs are subprocesses with their own threads
    bars = Bars()
    with tempfile.TemporaryDirectory() as tmp:
        folders = [Path(tmp) / name for name in ("config", "baseline", "unchanged")]
        for folder in folders:
            folder.mkdir()
        runs = [run("config", args.config, args.accepted, args.workers, folders[0], {}, args.sets)]
        baseline_n = args.baseline_accepted or args.accepted
        runs.append(run("baseline", SEED, baseline_n, args.workers, folders[1], BEFORE_THE_GATE))
        if args.unchanged_accepted:
            runs.append(run("unchanged", SEED, args.unchanged_accepted, args.workers, folders[2], {}))
        rates = {}
        for result in runs:
            print(f"\n{result['label']} ({result['name']})")
            rates[result["label"]] = report(result, audit(result, args.fresh, bars))
    if rates.get("baseline"):
        print(
            f"\nverified examples/s: {rates['config']:.2f} against the baseline's {rates['baseline']:.2f}",
            end="",
        )
        print(f" ({rates['config'] / rates['baseline']:.1f}x)")


if __name__ == "__main__":
    main()
