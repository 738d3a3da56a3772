"""What holds on a CUDA device: its runs agree with each other bit for bit, and the engine still
follows the plain reference loop. Skipped where torch sees no CUDA (benchmarks/gpu_check.sh runs them
on a GPU machine). CUDA's kernels round otherwise than the CPU's, so a CUDA run is not compared with a
CPU run byte for byte; the run's identity records the device, and a folder of one is refused on the
other."""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_cuda_training_agrees_with_itself_and_with_the_reference_loop():
    from test_cohort import RULES, assert_same_result, synthetic_job

    from weightzoo.engine import train_cohort
    from weightzoo.engine.reference import train_one

    jobs = [synthetic_job(i) for i in range(32)]
    first = train_cohort(jobs, RULES, device="cuda", dtype=torch.float64)
    second = train_cohort(jobs, RULES, device="cuda", dtype=torch.float64)
    for i, (a, b) in enumerate(zip(first, second, strict=True)):
        assert all(torch.equal(a.improved[k], b.improved[k]) for k in a.improved), i
        assert all(v.device.type == "cpu" for v in a.improved.values())
        # 1e-10, not the CPU's 1e-12: no card has measured how close cuBLAS's float64 sums come
        assert_same_result(a, train_one(jobs[i], RULES), 1e-10, f"job {i}")


def test_two_cuda_runs_write_the_same_bytes(tmp_path):
    from test_pipeline import COHORT, shard_bytes, tiny_config

    from weightzoo.run.pipeline import run_data_gen

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    runs = [tiny_config(tmp_path / name, pipeline={"device": "cuda"}) for name in ("a", "b")]
    for cfg in runs:
        run_data_gen(cfg, workers=1, log=lambda _: None, cohort_size=COHORT)
    assert shard_bytes(runs[0].pipeline.output_dir) == shard_bytes(runs[1].pipeline.output_dir)
