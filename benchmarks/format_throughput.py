"""Prompt formatting throughput: modification prompts and completions of the seed's example sizes.

Run: python benchmarks/format_throughput.py [--examples 200] [--style separate] [--decimals 4] [--json]

Builds `--examples` models like configs/seed_example.yaml's (6-9 hidden layers of 25-40 units,
relu/gelu, vocab 7, index inputs of length 7) with random weights from `model.init_weights`, a
synthetic signature (mean and std per neuron of every Linear layer), then times writing each
example's modification prompt and completion on one thread. The untimed first example warms the
number tables. Printed: examples/s, characters per parameter (weights block) and prompt/completion
sizes with the characters/4 token estimate.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from weightzoo.data.patterns import PATTERNS
from weightzoo.data.space import SequenceSpace
from weightzoo.engine.model import ModelSpec, init_weights
from weightzoo.text import NumberFormat, chars_per_parameter, count_tokens, modification, num_parameters


def synthetic_signature(spec: ModelSpec, rng: np.random.Generator) -> dict:
    layers = {}
    for index, (_, fan_out) in zip(spec.linear_indices, spec.layer_sizes, strict=True):
        means, stds = rng.normal(0, 1, fan_out), rng.gamma(2.0, 0.3, fan_out)
        layers[str(index)] = {
            "neuron_profiles": {
                str(n): {"mean": float(means[n]), "std": float(stds[n])} for n in range(fan_out)
            },
            "layer_info": {"num_neurons": fan_out, "num_examples": 200, "profile_methods": ["mean", "std"]},
        }
    return {"neuron_activations": layers, "model_config": spec.to_config()}


def build_examples(n: int, seed: int = 0) -> list[tuple]:
    rng = np.random.default_rng(seed)
    space = SequenceSpace(7, 7)
    names = list(PATTERNS)
    examples = []
    for i in range(n):
        spec = ModelSpec(
            vocab_size=7,
            sequence_length=7,
            num_layers=int(rng.integers(6, 10)),
            neurons_per_layer=int(rng.integers(25, 41)),
            activation_type=str(rng.choice(["relu", "gelu"])),
        )
        gen = torch.Generator().manual_seed(seed * 100_003 + i)
        degraded, improved = init_weights(spec, gen), init_weights(spec, gen)
        target = PATTERNS[names[int(rng.integers(len(names)))]].description(space)
        examples.append((spec, degraded, improved, synthetic_signature(spec, rng), target))
    return examples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=200)
    parser.add_argument("--style", default="separate", choices=["separate", "interwoven"])
    parser.add_argument("--decimals", type=int, default=4)
    parser.add_argument("--json", action="store_true", help="non-compact (JSON nested list) numbers")
    args = parser.parse_args()
    torch.set_num_threads(1)
    fmt = NumberFormat(decimals=args.decimals, compact=not args.json)
    examples = build_examples(args.examples)
    modification(*examples[0][:4], examples[0][4], number_format=fmt, style=args.style)  # warm tables

    start = time.perf_counter()
    outputs = [
        modification(spec, deg, imp, sig, target, number_format=fmt, style=args.style)
        for spec, deg, imp, sig, target in examples
    ]
    elapsed = time.perf_counter() - start

    params = sum(num_parameters(e[0]) for e in examples)
    cpp = np.mean([chars_per_parameter(e[0], e[2], fmt) for e in examples])
    prompt_chars = np.mean([len(p) for p, _ in outputs])
    completion_chars = np.mean([len(c) for _, c in outputs])
    tokens = np.mean(count_tokens(p + c for p, c in outputs))
    print(f"examples: {len(examples)} ({params / len(examples):.0f} parameters each on average)")
    print(f"format: decimals={args.decimals} compact={not args.json} style={args.style}")
    print(f"examples/s: {len(examples) / elapsed:.1f} (one thread, {elapsed:.3f} s)")
    print(f"chars/parameter: {cpp:.2f}")
    print(
        f"mean prompt chars: {prompt_chars:.0f}, completion chars: {completion_chars:.0f}, "
        f"text tokens (chars/4 estimate): {tokens:.0f}"
    )


if __name__ == "__main__":
    main()
