"""Worker pools fork from a server that has imported the heavy modules once."""

from __future__ import annotations

import sys
from concurrent.futures import ProcessPoolExecutor

import pytest

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


STOP_WHILE_SENDING = """
import sys, time
from weightzoo.run.executors import LocalPool
pool = LocalPool(2)
pool.submit(bytes, 1).result()
futures = [pool.submit(bytes, 400_000_000) for _ in range(2)] + [pool.submit(time.sleep, 120)]
time.sleep(float(sys.argv[1]))
pool.stop()
"""


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.2, 1.0, 1.5, 2.0])
def test_a_pool_stopped_while_its_workers_send_results_lets_the_command_exit(delay):
    """A worker killed halfway through sending its result left the pool's reader waiting for the rest,
    and the interpreter, which joins that reader at exit, hung (seen with large results sent for about a
    second). Stopping kills only workers still computing, and a part taken after the stop is not run:
    the process exits at once, not after the queued two-minute part."""
    import subprocess
    import time

    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", STOP_WHILE_SENDING, str(delay)], check=True, timeout=60)
    assert time.perf_counter() - started < 60  # not the queued part's 120 s
