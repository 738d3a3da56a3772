"""How fast the machine is right now: batched-matmul throughput at the training engine's shapes.

These machines vary by 2x and more over hours, so the benchmarks print this next to their figures: a
figure is only comparable with another measured at a similar probe.
"""

from __future__ import annotations

import time

import torch


def bmm_gflops(stack: int, rows: int, width: int, seconds: float = 1.0, device: str = "cpu") -> float:
    """Measured batched-matmul GFLOP/s for [stack, rows, width] x [stack, width, width]."""
    a = torch.randn(stack, rows, width, device=device)
    b = torch.randn(stack, width, width, device=device)
    torch.bmm(a, b)
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    sync()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        torch.bmm(a, b)
        count += 1
    sync()
    return 2 * stack * rows * width * width * count / (time.perf_counter() - start) / 1e9
