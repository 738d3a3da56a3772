"""The compiled training step against the PyTorch step and the reference loop, and its build."""

from __future__ import annotations

import dataclasses
import stat
import warnings

import numpy as np
import pytest
import torch
from test_cohort import RULES, TOL64, assert_same_result, synthetic_job

from weightzoo.engine import Padding, step_kernel, train_cohort
from weightzoo.engine.reference import train_one

pytestmark = pytest.mark.skipif(step_kernel.load() is None, reason="no C++ compiler on this machine")


@pytest.fixture(scope="module")
def mixed_jobs():
    """Every activation, two depths, widths 5-12 padded in one stack, index and one-hot inputs, short
    last batches."""
    return [synthetic_job(i, encoding="one_hot" if i % 8 == 7 else "index") for i in range(40)]


def test_the_compiled_step_is_what_trains_on_the_cpu_by_default():
    assert step_kernel.usable(torch.device("cpu"), torch.float32)
    assert not step_kernel.usable(torch.device("cpu"), torch.float16)
    assert not step_kernel.usable(torch.device("meta"), torch.float32)
    assert step_kernel.build_name().startswith("compiled step ")


def test_the_compiled_and_pytorch_steps_agree_in_float64_for_every_activation(mixed_jobs):
    compiled = train_cohort(mixed_jobs, RULES, dtype=torch.float64, compiled=True)
    pytorch = train_cohort(mixed_jobs, RULES, dtype=torch.float64, compiled=False)
    for i, (got, want) in enumerate(zip(compiled, pytorch, strict=True)):
        assert_same_result(got, want, TOL64, f"job {i} ({mixed_jobs[i].spec.activation_type})")
        assert got.history["train_loss"] == pytest.approx(want.history["train_loss"], rel=1e-10)


@pytest.mark.parametrize("width", [17, 33, 40, 64])
def test_the_compiled_step_agrees_at_the_configs_widths(width):
    """Widths of one to five vectors (float32's 16 lanes, float64's 8), blocks of rows of every size."""
    short = dataclasses.replace(RULES, max_stage1_epochs=3, max_stage2_epochs=2)
    jobs = [
        synthetic_job(200 + k, depth=2, width=width - k, activation=a) for k, a in enumerate(["gelu", "relu"])
    ]
    jobs.append(synthetic_job(202, depth=2, width=width, activation="sigmoid", encoding="one_hot"))
    compiled = train_cohort(jobs, short, dtype=torch.float64, compiled=True)
    pytorch = train_cohort(jobs, short, dtype=torch.float64, compiled=False)
    for i, (got, want) in enumerate(zip(compiled, pytorch, strict=True)):
        assert_same_result(got, want, TOL64, f"width {width}, job {i}")


def test_the_compiled_step_matches_the_reference_loop_with_the_target_watch():
    rules = dataclasses.replace(RULES, stage2_max_other_drop=0.05)
    jobs = [synthetic_job(i) for i in range(6)]
    for i, job in enumerate(jobs):  # a selection set: the validation rows, two groups
        groups = (np.arange(len(job.x_val)) % 2).astype(np.int64)
        jobs[i] = dataclasses.replace(
            job, x_select=job.x_val, y_select=job.y_val_stage2, select_groups=groups
        )
    results = train_cohort(jobs, rules, dtype=torch.float64, compiled=True)
    for i, (job, got) in enumerate(zip(jobs, results, strict=True)):
        assert_same_result(got, train_one(job, rules), TOL64, f"job {i}")


def test_float32_compiled_training_follows_the_pytorch_step(mixed_jobs):
    """In float32 the two round differently (their products sum in other orders; GELU's erf is the same
    formula), so their losses agree to float32's precision over the first epoch. (Single weights may
    not: Adam moves a weight whose gradient is near zero by its full step, in the gradient's sign.)"""
    first_epoch = dataclasses.replace(
        RULES, max_stage1_epochs=1, max_stage2_epochs=0, stage1_deadline_epochs=None
    )
    compiled = train_cohort(mixed_jobs, first_epoch, dtype=torch.float32, compiled=True)
    pytorch = train_cohort(mixed_jobs, first_epoch, dtype=torch.float32, compiled=False)
    for job, got, want in zip(mixed_jobs, compiled, pytorch, strict=True):
        np.testing.assert_allclose(
            got.history["stage1_val_loss"], want.history["stage1_val_loss"], rtol=1e-4, err_msg=str(job.spec)
        )


def test_dropout_in_the_compiled_step_is_the_pytorch_steps():
    jobs = []
    for k, activation in enumerate(["relu", "gelu", "tanh", "sigmoid"]):
        job = synthetic_job(90 + k, depth=2, width=8, activation=activation)
        spec = dataclasses.replace(job.spec, dropout_rate=0.2)
        renamed = {
            f"network.{new}.{p}": job.init_weights[f"network.{old}.{p}"]
            for old, new in zip(job.spec.linear_indices, spec.linear_indices, strict=True)
            for p in ("weight", "bias")
        }
        jobs.append(dataclasses.replace(job, spec=spec, init_weights=renamed))
    compiled = train_cohort(jobs, RULES, dtype=torch.float64, compiled=True)
    pytorch = train_cohort(jobs, RULES, dtype=torch.float64, compiled=False)
    for i, (got, want) in enumerate(zip(compiled, pytorch, strict=True)):
        assert_same_result(got, want, TOL64, f"dropout job {i}")


def test_a_float32_models_training_does_not_depend_on_how_its_stack_is_padded():
    """The compiled step's sums run in an order fixed by the model alone: extra rows and units add exact
    zeros, so padding the stack's rows or width leaves every bit of the training (only the PyTorch
    validation pass, which picks checkpoints, sees the width)."""
    jobs = [synthetic_job(i, depth=3, activation=a) for i, a in enumerate(["gelu", "relu", "sigmoid"])]
    for job in jobs:
        plain = train_cohort([job], RULES, compiled=True)[0]
        for padding in (Padding(0, len(job.x_train) + 21, 0), Padding(0, 0, 0), Padding(15, 0, 0)):
            padded = train_cohort([job], RULES, compiled=True, padding=padding)[0]
            assert padded.history["train_loss"] == plain.history["train_loss"], padding
            for which in ("degraded", "improved"):
                assert all(
                    torch.equal(getattr(padded, which)[n], getattr(plain, which)[n]) for n in plain.degraded
                )


def test_a_float32_model_gets_the_same_bits_alone_beside_others_and_on_any_thread_count(mixed_jobs):
    alone = [train_cohort([job], RULES, compiled=True)[0] for job in mixed_jobs[:6]]
    together = train_cohort(mixed_jobs, RULES, threads=2, compiled=True)[:6]
    for a, b in zip(alone, together, strict=True):
        for which in ("degraded", "improved"):
            assert all(torch.equal(getattr(a, which)[n], getattr(b, which)[n]) for n in a.degraded)


def test_a_non_finite_model_stops_alone_in_the_compiled_step():
    healthy = [synthetic_job(50 + k, depth=3, activation="gelu") for k in range(3)]
    blown = synthetic_job(41, depth=3, width=9, activation="gelu", lr=1e30)
    results = train_cohort([healthy[0], blown, *healthy[1:]], RULES, compiled=True)
    assert not results[1].finite and results[1].stage1_epochs == 1
    without = train_cohort(healthy, RULES, compiled=True)
    for got, want in zip([results[0], *results[2:]], without, strict=True):
        assert got.finite
        assert_same_result(got, want, 0.0, "healthy beside a blown model")


@pytest.fixture
def fresh_build(monkeypatch, tmp_path):
    """An empty kernel cache, and `load()` asked again."""
    monkeypatch.setenv("WEIGHTZOO_CACHE", str(tmp_path / "cache"))
    for cached in (step_kernel.load, step_kernel.build_name, step_kernel._compiler_version):
        cached.cache_clear()
    yield tmp_path
    for cached in (step_kernel.load, step_kernel.build_name, step_kernel._compiler_version):
        cached.cache_clear()


def test_the_step_is_built_once_into_the_cache(fresh_build):
    assert step_kernel.load() is not None
    built = list((fresh_build / "cache").iterdir())
    assert [p.suffix for p in built] == [".so"]  # no temporary left beside it
    stamp = built[0].stat().st_mtime_ns
    step_kernel.load.cache_clear()
    assert step_kernel.load() is not None and built[0].stat().st_mtime_ns == stamp  # not rebuilt


def test_without_a_compiler_the_pytorch_step_trains(fresh_build, monkeypatch):
    monkeypatch.setattr(step_kernel, "_compiler", lambda: None)
    assert step_kernel.load() is None and step_kernel.build_name() == "pytorch step"
    assert not step_kernel.usable(torch.device("cpu"), torch.float32)
    job = synthetic_job(3)
    got = train_cohort([job], RULES, dtype=torch.float64)[0]
    assert_same_result(got, train_cohort([job], RULES, dtype=torch.float64, compiled=False)[0], 0.0)


def test_a_compiler_that_fails_is_a_warning_and_the_pytorch_step_trains(fresh_build, monkeypatch):
    broken = fresh_build / "c++"
    broken.write_text("#!/bin/sh\necho 'broken compiler 1.0'\nexit 1\n")
    broken.chmod(broken.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("CXX", str(broken))
    with pytest.warns(UserWarning, match="did not build"):
        assert step_kernel.load() is None
    assert not step_kernel.usable(torch.device("cpu"), torch.float32)
    assert not list((fresh_build / "cache").glob("*.so*"))  # nothing half-built left behind
    step_kernel.load.cache_clear()  # another process: told by the note, it neither builds nor warns
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert step_kernel.load() is None
