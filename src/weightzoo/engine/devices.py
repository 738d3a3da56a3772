"""Where training runs: `pipeline.device` (auto, cpu, cuda, mps) and how many CPU threads torch uses.

`auto` picks CUDA, then MPS, then the CPU. Asking for a device that is not there is a user error, not
a silent fallback. Thread counts are set deliberately: torch's default on a busy machine oversubscribes
the cores, which made single tiny models 30 times slower in measurements here.
"""

from __future__ import annotations

import os

import torch

from weightzoo.errors import UserError


def resolve_device(name: str) -> torch.device:
    mps = getattr(torch.backends, "mps", None)
    mps_ok = bool(mps is not None and mps.is_available())
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if mps_ok else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("pipeline.device: 'cuda' was asked for, but torch sees no CUDA device here")
    if name == "mps" and not mps_ok:
        raise UserError("pipeline.device: 'mps' was asked for, but torch sees no MPS device here")
    if name not in ("cpu", "cuda", "mps"):
        raise UserError(f"pipeline.device: {name!r} is not one of auto, cpu, cuda, mps")
    return torch.device(name)


def threads_per_worker(requested: int, workers: int) -> int:
    """`requested` threads (pipeline.num_workers), or with 0 the machine's cores shared among workers."""
    return requested if requested > 0 else max(1, (os.cpu_count() or 1) // max(1, workers))


def set_threads(count: int) -> None:
    torch.set_num_threads(count)
