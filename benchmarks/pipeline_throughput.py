"""End-to-end throughput of run-data-gen: accepted examples per second, time by stage, peak memory.

Run: python benchmarks/pipeline_throughput.py [--accepted 100] [--workers 2] [--device cpu]
     [--baseline REV [--rounds 2]]

With `--baseline REV`, the same benchmark runs alternately on a git worktree of REV (its own code,
this script driving it) and on this checkout, `--rounds` times each, and prints both figures and their
ratio: the machines here drift by 2x over hours, so only figures of one run compare.

Runs the seed's example config (modification task, mean+std signature) into a temporary folder until
`--accepted` examples are accepted, and prints accepted examples/s, attempted examples/s, the CPU
time of each stage summed over workers (plan, train, validate, signatures, format, checkpoints, write),
the bound the training stage alone sets (accepted examples over its seconds per worker: what the run
would reach if every other stage were free), a probe of the machine's speed at the moment (see
`machine.py`), and the peak resident memory of this process and its workers.
The run's seconds are run-data-gen's own; "whole command" also counts this process's start-up
(imports, writing the signature file), as `weightzoo run-data-gen` would spend it.
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()

import argparse  # noqa: E402  (the clock starts before the imports, as a command's would)
import resource  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import yaml  # noqa: E402

from weightzoo.config import parse_config  # noqa: E402
from weightzoo.run.workers import warm_up  # noqa: E402

CONFIG = Path(__file__).resolve().parents[1] / "configs/seed_example.yaml"
PROBE_STACK = 16  # about the models a stack of the seed's config holds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accepted", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--baseline", help="a git revision to run side by side (a worktree of it)")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if args.baseline:
        side_by_side(args)
        return
    if args.workers > 1:
        warm_up()  # as the command does: the workers' server imports torch while this process does
    from weightzoo.data.probe_sets import make_signature_set
    from weightzoo.output.files import write_json_atomic
    from weightzoo.run.pipeline import run_data_gen

    with tempfile.TemporaryDirectory() as folder:
        raw = yaml.safe_load(CONFIG.read_text())
        raw["dataset"]["output_dataset_length"] = args.accepted
        raw["pipeline"].update(output_dir=str(Path(folder) / "out"), num_workers=0)
        if args.device != "cpu":  # the seed's config says auto; keep its recipe on the CPU
            raw["pipeline"]["device"] = args.device
        raw["signature"]["dataset_path"] = str(Path(folder) / "sig.json")
        cfg = parse_config(raw, source=str(CONFIG), base_dir=Path(folder))
        enabled = tuple(cfg.dataset.patterns.enabled_patterns)
        write_json_atomic(cfg.signature.dataset_path, make_signature_set(cfg.space, enabled, 200, 0))
        summary = run_data_gen(cfg, workers=args.workers, log=lambda line: print("  " + line))
    whole = time.perf_counter() - STARTED
    print(
        f"accepted {summary.accepted} of {summary.attempted} attempted in {summary.seconds:.1f} s: "
        f"{summary.accepted / summary.seconds:.2f} accepted examples/s, "
        f"{summary.attempted / summary.seconds:.1f} attempted examples/s ({args.workers} workers)"
    )
    rate = summary.accepted / whole
    print(f"whole command, start-up included: {whole:.1f} s, {rate:.2f} accepted examples/s")
    total = sum(summary.stage_seconds.values()) or 1.0
    print(
        "time by stage (summed over workers): "
        + ", ".join(
            f"{stage} {spent:.1f} s ({spent / total:.0%})" for stage, spent in summary.stage_seconds.items()
        )
    )
    train = summary.stage_seconds.get("train", 0.0)
    if train:  # what the training engine alone allows: every other stage free, the workers always busy
        print(
            f"training alone: {train:.1f} s over {args.workers} workers, at most "
            f"{summary.accepted * args.workers / train:.2f} accepted examples/s"
        )
    # The machine's moment, measured after the run (its workers are gone): one thread, as each worker has.
    import torch
    from machine import bmm_gflops

    torch.set_num_threads(1)
    probe = bmm_gflops(PROBE_STACK, cfg.training.batch_size, cfg.model.neurons_per_layer.max)
    print(
        f"machine probe: batched matmul [{PROBE_STACK}, {cfg.training.batch_size}, "
        f"{cfg.model.neurons_per_layer.max}] x [{cfg.model.neurons_per_layer.max}, "
        f"{cfg.model.neurons_per_layer.max}] on one thread, {probe:.1f} GFLOP/s"
    )
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory: {own:.0f} MiB (this process), {summary.worker_peak_mib:.0f} MiB (largest worker)")


def side_by_side(args) -> None:
    """This benchmark on a worktree of `args.baseline` and on this checkout, alternated."""
    import re
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    rounds: dict[str, list[float]] = {"baseline": [], "this": []}
    with tempfile.TemporaryDirectory() as folder:
        tree = Path(folder) / "baseline"
        subprocess.run(
            ["git", "-C", str(root), "worktree", "add", "--detach", str(tree), args.baseline], check=True
        )
        try:
            for _ in range(args.rounds):
                for name, source in (("baseline", tree), ("this", root)):
                    # Each tree runs its own copy of this benchmark: module paths move between versions.
                    argv = [
                        sys.executable,
                        str(source / "benchmarks" / "pipeline_throughput.py"),
                        "--accepted",
                        str(args.accepted),
                        "--workers",
                        str(args.workers),
                    ]
                    env = {
                        **__import__("os").environ,
                        "PYTHONPATH": f"{source / 'src'}:{source / 'benchmarks'}",
                    }
                    out = subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stdout
                    print(f"--- {name} ({args.baseline if name == 'baseline' else 'this checkout'})")
                    print("\n".join(line for line in out.splitlines() if not line.startswith("  ")))
                    rate = re.search(r"in [\d.]+ s: ([\d.]+) accepted examples/s", out)
                    rounds[name].append(float(rate.group(1)))
        finally:
            subprocess.run(["git", "-C", str(root), "worktree", "remove", "--force", str(tree)], check=False)
    base, this = (sum(v) / len(v) for v in (rounds["baseline"], rounds["this"]))
    print(
        f"side by side, {args.rounds} rounds alternated: baseline {args.baseline} {base:.2f}, this checkout "
        f"{this:.2f} accepted examples/s ({this / base:.2f}x)"
    )


if __name__ == "__main__":
    main()
