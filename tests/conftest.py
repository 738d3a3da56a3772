"""Shared test setup."""

from __future__ import annotations

import pytest
import torch
from hypothesis import settings


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Torch's default thread count oversubscribes small shared machines and makes tiny models crawl."""
    torch.set_num_threads(1)
    yield


# Property tests draw the same examples on every run, so CI never fails on a rare draw by chance.
settings.register_profile("weightzoo", derandomize=True, database=None)
settings.load_profile("weightzoo")
