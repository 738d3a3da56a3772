"""Shared test setup."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Torch's default thread count oversubscribes small shared machines and makes tiny models crawl."""
    torch.set_num_threads(1)
    yield
