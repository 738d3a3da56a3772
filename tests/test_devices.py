import pytest
import torch

from weightzoo.engine.devices import resolve_device, threads_per_worker
from weightzoo.errors import UserError


def test_cpu_is_always_there():
    assert resolve_device("cpu") == torch.device("cpu")


def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto").type == "cpu"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("auto").type == "mps"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto").type == "cuda"


@pytest.mark.parametrize("name", ["cuda", "mps"])
def test_a_missing_device_is_a_clear_error_not_a_fallback(monkeypatch, name):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(UserError, match=f"pipeline.device: '{name}'"):
        resolve_device(name)


def test_threads_are_set_deliberately(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert threads_per_worker(3, workers=2) == 3
    assert threads_per_worker(0, workers=2) == 1
    assert threads_per_worker(0, workers=1) == 2
    assert threads_per_worker(0, workers=4) == 1


# --- pipeline.device, end to end ---------------------------------------------------------------------------


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_a_run_asking_for_a_missing_device_stops_before_any_work(tmp_path):
    from test_pipeline import tiny_config

    from weightzoo.run.pipeline import run_data_gen

    cfg = tiny_config(tmp_path, pipeline={"device": "cuda"})
    with pytest.raises(UserError, match="pipeline.device: 'cuda' was asked for"):
        run_data_gen(cfg, workers=1, log=lambda _: None)
    assert not cfg.pipeline.output_dir.exists()


@pytest.mark.parametrize("name", ["auto", "cpu"])
def test_the_configured_device_reaches_the_training_engine_and_the_stamps(tmp_path, monkeypatch, name):
    import json

    import pyarrow.parquet as pq
    from test_pipeline import COHORT, tiny_config

    import weightzoo.plan.jobs as training
    from weightzoo.run.pipeline import run_data_gen

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    seen, real = [], training.train_cohort

    def recorded(jobs, rules, device="cpu", **kwargs):
        seen.append(torch.device(device))
        return real(jobs, rules, device=device, **kwargs)

    monkeypatch.setattr(training, "train_cohort", recorded)
    cfg = tiny_config(tmp_path, pipeline={"device": name})
    run_data_gen(cfg, workers=1, log=lambda _: None, cohort_size=COHORT)
    assert seen and set(seen) == {torch.device("cpu")}
    for path in cfg.pipeline.output_dir.glob("*/cohort-*.parquet"):
        assert json.loads(pq.read_metadata(path).metadata[b"weightzoo"])["device"] == "cpu"


def test_a_folder_written_on_another_device_is_refused():
    from weightzoo.output.shards import RunIdentity

    here = RunIdentity("v", "r", "s", 8, 8, 2, "cpu")
    stamp = {**here.fields(), "device": "cuda"}
    assert here.differences(stamp) == ["device cuda, here cpu"]


def test_the_engine_runs_on_an_explicit_device_object():
    """The device-generic path (tensors created on `device`, results back on the CPU) on the CPU."""
    from test_cohort import RULES, synthetic_job

    from weightzoo.engine import train_cohort

    jobs = [synthetic_job(i) for i in range(4)]
    by_name = train_cohort(jobs, RULES, device="cpu", dtype=torch.float64)
    by_device = train_cohort(jobs, RULES, device=torch.device("cpu"), dtype=torch.float64)
    for a, b in zip(by_name, by_device, strict=True):
        assert all(v.device.type == "cpu" for v in a.improved.values())
        assert all(torch.equal(a.improved[k], b.improved[k]) for k in a.improved)
