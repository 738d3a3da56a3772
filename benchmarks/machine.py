"""How fast the machine is right now: batched-matmul throughput at the training engine's shapes.

These machines vary by 2x and more over hours, so the benchmarks print this next to their figures: a
figure is only comparable with another measured at a similar probe.
"""

from __future__ import annotations

import time

import torch


def bmm_gflops(stack: int, rows: int, width: int, seconds: float = 1.0) -> float:
    """Measured batched-matmul GFLOP/s for [stack, rows, width] x [stack, width, width]."""
    a, b = torch.randn(stack, rows, width), torch.randn(stack, width, width)
    torch.bmm(a, b)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        torch.bmm(a, b)
        count += 1
    return 2 * stack * rows * width * width * count / (time.perf_counter() - start) / 1e9
