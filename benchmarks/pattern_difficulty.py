"""How many distinct rows each pattern needs: one small MLP per (pattern, rows), scored on held-out rows.

Run: python benchmarks/pattern_difficulty.py [--rows 250,500,1000,2000,4000] [--epochs 15]
     [--patterns has_majority,vowel_consonant] [--width 64] [--sparse-init 2]

For each pattern and each row count n: n distinct members and n negatives (sequences matching not
this pattern), a 2-layer ReLU MLP of `--width` units on standardized token indices (vocabulary 7,
length 7), Adam at 0.007 in batches of 128 for `--epochs` epochs, then recall on 300 held-out members
and specificity on 600 held-out negatives. Printed as `n:recall/specificity` per row count. Patterns
whose members the held-out set would exhaust (all_same's 7, alternating's 42) are skipped. This is
what `dataset.patterns.pattern_rows` of the recommended config rests on: the patterns that need the
most distinct rows get the largest shares.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from weightzoo.data.patterns import PATTERN_NAMES, PATTERNS
from weightzoo.data.pools import sample_members, sample_negatives
from weightzoo.data.space import SequenceSpace
from weightzoo.engine.model import ModelSpec, init_weights, input_standardization

SPACE = SequenceSpace(7, 7)
HELD_OUT = 300


def score(name: str, n: int, epochs: int, width: int, sparse: int | None, seed: int) -> tuple[float, float]:
    rng = np.random.default_rng([seed, PATTERN_NAMES.index(name), n])
    test = sample_members(name, SPACE, HELD_OUT, rng)
    test_neg = sample_negatives(SPACE, [name], 2 * HELD_OUT, rng)
    pos = sample_members(name, SPACE, n, rng, exclude_rows=test)
    neg = sample_negatives(SPACE, [name], len(pos), rng, exclude_rows=test_neg)
    spec = ModelSpec(7, 7, 2, width, "relu")
    shift, scale = (torch.as_tensor(a, dtype=torch.float32) for a in input_standardization(spec))

    def inputs(rows):
        return (torch.as_tensor(rows, dtype=torch.float32) - shift) / scale

    x, y = inputs(np.concatenate([pos, neg])), torch.cat([torch.ones(len(pos)), torch.zeros(len(neg))])
    model = torch.nn.Sequential(
        torch.nn.Linear(7, width),
        torch.nn.ReLU(),
        torch.nn.Linear(width, width),
        torch.nn.ReLU(),
        torch.nn.Linear(width, 1),
    )
    generator = torch.Generator().manual_seed(seed)
    start = init_weights(spec, generator, sparse_positions=sparse)
    model.load_state_dict({k.removeprefix("network."): v for k, v in start.items()})
    optimizer = torch.optim.Adam(model.parameters(), lr=0.007)
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for s in range(0, len(x), 128):
            rows = order[s : s + 128]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x[rows]).squeeze(-1), y[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        recall = float((model(inputs(test)) > 0).float().mean())
        specificity = float((model(inputs(test_neg)) <= 0).float().mean())
    return recall, specificity


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="250,500,1000,2000,4000")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--patterns", default=",".join(PATTERN_NAMES))
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--sparse-init", type=int, default=2, help="0: dense init")
    parser.add_argument("--seeds", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(2)
    counts = [int(n) for n in args.rows.split(",")]
    sparse = args.sparse_init or "off"
    print(f"n:recall/specificity, 2x{args.width} ReLU, {args.epochs} epochs, sparse init {sparse}")
    for name in args.patterns.split(","):
        if PATTERNS[name].count(SPACE) < 4 * HELD_OUT:
            print(f"{name:18s} skipped: {PATTERNS[name].count(SPACE)} members")
            continue
        cells = []
        for n in counts:
            runs = [
                score(name, n, args.epochs, args.width, args.sparse_init or None, s)
                for s in range(args.seeds)
            ]
            recall, specificity = np.mean(runs, axis=0)
            cells.append(f"{n}:{recall:.2f}/{specificity:.2f}")
        print(f"{name:18s} " + "  ".join(cells), flush=True)


if __name__ == "__main__":
    main()
