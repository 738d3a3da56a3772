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


@pytest.fixture(scope="session")
def finished_dataset(tmp_path_factory):
    """One finished tiny run, shared by the tests of the commands that read a dataset (render,
    evaluate, inspect). They only read it."""
    from test_pipeline import COHORT, tiny_config

    from weightzoo.run.pipeline import run_data_gen

    cfg = tiny_config(tmp_path_factory.mktemp("finished"))
    run_data_gen(cfg, workers=1, log=lambda _: None, cohort_size=COHORT)
    return cfg.pipeline.output_dir
