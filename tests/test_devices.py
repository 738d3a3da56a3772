import pytest
import torch

from weightzoo.devices import resolve_device, threads_per_worker
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
