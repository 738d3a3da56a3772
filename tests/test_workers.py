"""Worker pools fork from a server that has imported the heavy modules once."""

from __future__ import annotations

import sys
from concurrent.futures import ProcessPoolExecutor

from weightzoo.run.workers import PRELOAD, context, warm_up


def _loaded() -> tuple[bool, bool]:
    return "torch" in sys.modules, "weightzoo.judge.pairs" in sys.modules


def test_a_worker_starts_with_torch_already_imported():
    warm_up()
    with ProcessPoolExecutor(max_workers=1, mp_context=context()) as pool:
        assert pool.submit(_loaded).result(timeout=120) == (True, True)


def test_the_server_preloads_what_a_work_unit_needs():
    import weightzoo.run.pipeline as pipeline

    assert pipeline.__name__ in PRELOAD
    assert context().get_start_method() == "forkserver"


def test_without_a_fork_server_workers_are_spawned(monkeypatch):
    import multiprocessing

    import weightzoo.run.workers as workers

    monkeypatch.setattr(multiprocessing, "get_all_start_methods", lambda: ["spawn"])
    started = []
    monkeypatch.setattr(workers.forkserver, "ensure_running", lambda: started.append(True))
    assert workers.context().get_start_method() == "spawn"
    workers.warm_up()
    assert started == []
