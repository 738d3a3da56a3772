"""Where work units run: in this process, in a pool of local worker processes, or on a Ray cluster.

Every executor has the same small interface, `submit(fn, *args) -> Future` and `stop()` (drop the
work in flight now), and is a context manager. What runs is a pure function of its arguments
(`pipeline.run_unit`: a part of a work unit in, its rows out), and the results come back to this
process, which alone writes the output folder: an executor knows nothing of the store, and the
store nothing of executors. A result is the same on any executor, so a run writes the same bytes on
any of them, for any number of workers or nodes.

Ray: `pipeline.backend: ray` starts a local Ray (one CPU per `pipeline.max_threads`) or joins the
cluster at `pipeline.ray_address` (`--ray-address`). Each part is a Ray task asking for
`ray_cpus_per_task` CPUs and `ray_gpus_per_task` GPUs; a task whose node dies is retried elsewhere
(`RAY_RETRIES`), and since the driver writes each result once, no part is lost or written twice.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

from weightzoo.errors import UserError, shorten
from weightzoo.run.lifeline import die_with_parent

RAY_RETRIES = 3  # times a Ray task is retried when its worker or node dies


class InProcess:
    """One worker: each part runs right here, when submitted (nothing is left running if killed)."""

    slots = 1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def submit(self, fn, *args) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args))
        except BaseException as e:  # handed to the caller through the future, as a pool would
            future.set_exception(e)
        return future

    def stop(self) -> None:
        pass


# In a pool worker: the lock, the table of the workers computing a part and the pool's "stopping"
# flag (set by `_worker_start`).
_COMPUTING = None


def _worker_start(lock, computing, stopping) -> None:
    """In each pool worker: leave Ctrl-C to the main process, which stops the workers itself, and die
    with the fork server, which dies with the command (lifeline.py).

    A terminal's Ctrl-C reaches every process of the foreground group; without this, each idle worker
    would print a KeyboardInterrupt traceback as it dies.
    """
    global _COMPUTING
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent()
    _COMPUTING = (lock, computing, stopping)


def _computing(fn, *args):
    """Run `fn(*args)` with this worker's pid in the table of workers computing (see `LocalPool.stop`);
    the result is sent back after it is out of the table. A part taken after the pool stopped is not
    run: its result would be dropped."""
    lock, table, stopping = _COMPUTING
    pid = os.getpid()
    with lock:
        if stopping.value:
            return None
        table[list(table).index(0)] = pid
    try:
        return fn(*args)
    finally:
        with lock:
            table[list(table).index(pid)] = 0


class LocalPool:
    """`workers` processes forked from a server that imported torch once (`workers.py`)."""

    def __init__(self, workers: int):
        from weightzoo.run.workers import context

        self.slots = workers
        ctx = context()
        self.lock, self.computing = ctx.Lock(), ctx.Array("q", workers, lock=False)
        self.stopping = ctx.Value("b", 0, lock=False)
        self.pool = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=ctx,
            initializer=_worker_start,
            initargs=(self.lock, self.computing, self.stopping),
        )

    def __enter__(self):
        self.pool.__enter__()
        return self

    def __exit__(self, *exc):
        return self.pool.__exit__(*exc)

    def submit(self, fn, *args) -> Future:
        return self.pool.submit(_computing, fn, *args)

    def stop(self) -> None:
        """Stop now rather than after the parts in flight (each may take minutes). Their results are
        lost, not half-written: only this process writes.

        Only workers still computing are killed, under the table's lock, so none dies halfway
        through sending a result: the pool's reader would wait forever for the rest of it, and the
        interpreter, which joins that reader at exit, with it. A worker sending is left to finish,
        and runs no part it takes after; the pool then tells the idle ones to exit."""
        self.pool.shutdown(wait=False, cancel_futures=True)
        with self.lock:
            self.stopping.value = 1
            for pid in list(self.computing):
                if pid:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass


@dataclass
class RayCluster:
    """Parts as Ray tasks, on a local Ray or an existing cluster."""

    address: str | None
    local_cpus: int
    cpus_per_task: float = 1
    gpus_per_task: float = 0

    def __enter__(self):
        try:
            import ray
        except ImportError:
            raise UserError("pipeline.backend: 'ray' needs Ray: pip install 'weightzoo[ray]'") from None
        self.ray = ray
        # Ray's own future behaviour (it warns on every start otherwise): no GPU asked, none visible
        os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
        self.started = not ray.is_initialized()
        if self.started:
            if self.address and self.address != "auto":
                _reachable(self.address)
            try:
                if self.address:
                    ray.init(address=self.address, log_to_driver=False)
                else:
                    ray.init(num_cpus=self.local_cpus, include_dashboard=False, log_to_driver=False)
            except (ConnectionError, RuntimeError, ValueError) as e:
                where = self.address or "a local Ray"
                raise UserError(f"pipeline.ray_address: cannot connect to {where}: {str(e)[:200]}") from None
        self.refs: list = []
        return self

    @property
    def slots(self) -> int:
        """Tasks the cluster can run at once now (nodes may join or leave during a run)."""
        cpus = float(self.ray.cluster_resources().get("CPU", 1))
        return max(1, int(cpus // max(self.cpus_per_task, 1e-9)))

    def __exit__(self, *exc):
        if self.started:
            self.ray.shutdown()
        return False

    def submit(self, fn, *args) -> Future:
        task = self.ray.remote(fn).options(
            num_cpus=self.cpus_per_task, num_gpus=self.gpus_per_task, max_retries=RAY_RETRIES
        )
        ref = task.remote(*args)
        self.refs.append(ref)
        future: Future = Future()

        def done(ray_future: Future) -> None:
            error = ray_future.exception()
            if error is None:
                future.set_result(ray_future.result())
            else:  # a task's own exception comes back wrapped: hand over the exception itself
                future.set_exception(getattr(error, "cause", None) or error)

        ref.future().add_done_callback(done)
        return future

    def stop(self) -> None:
        for ref in self.refs:
            try:
                self.ray.cancel(ref, force=True)
            except Exception:  # finished already, or its node is gone: nothing to stop
                pass


def _reachable(address: str, seconds: float = 5.0) -> None:
    """A cluster address that nothing answers at is one clear line now, not minutes of Ray retrying."""
    import socket

    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=seconds):
            return
    except ValueError:
        raise UserError(f"pipeline.ray_address: {address!r} is not host:port (or 'auto')") from None
    except OSError as e:
        raise UserError(
            f"pipeline.ray_address: no Ray cluster answers at {address} ({e.strerror or e}); "
            "start one with `ray start --head`, or check the address"
        ) from None


def executor_for(cfg, workers: int):
    """The executor `pipeline.backend` names; `workers`: local processes (1: this process)."""
    pipeline = cfg.pipeline
    if pipeline.backend == "ray":
        return RayCluster(
            pipeline.ray_address, workers, pipeline.ray_cpus_per_task, pipeline.ray_gpus_per_task
        )
    return LocalPool(workers) if workers > 1 else InProcess()


def submit(pool, fn, *args) -> Future:
    """Submit, or a future holding why not (a pool broken by a dead worker): failures surface in
    index order, when the run comes to wait for that unit."""
    try:
        return pool.submit(fn, *args)
    except Exception as e:
        future: Future = Future()
        future.set_exception(e)
        return future


@contextmanager
def failure_named(cohort: int) -> Iterator[None]:
    """A unit that fails, or a worker that dies: one line that says what caused it, and "run again to
    resume" only where a rerun can succeed. What is written stays either way."""
    from concurrent.futures.process import BrokenProcessPool

    try:
        yield
    except UserError:
        raise
    except BrokenProcessPool as e:  # a worker was killed (by the system, for memory, or by a user)
        raise UserError(
            f"cohort {cohort} failed (BrokenProcessPool: a worker process died: {e}); what is written "
            "is kept: run again to resume (if the system killed it for lack of memory, lower "
            "pipeline.max_threads first)"
        ) from None
    except MemoryError:
        raise UserError(
            f"cohort {cohort} ran out of memory: lower pipeline.max_threads, the model sizes "
            "(model.neurons_per_layer, model.num_layers) or the rows per model "
            "(dataset.patterns.max_total_examples); what is written is kept"
        ) from None
    except OSError as e:  # the disk or the folder, not the config: a rerun can succeed once it is fixed
        raise UserError(
            f"cohort {cohort} failed: {e.strerror or e} ({getattr(e, 'filename', None) or 'no file named'}); "
            "what is written is kept: fix that and run again to resume"
        ) from None
    except Exception as e:
        if type(e).__module__.startswith("ray."):  # the cluster, not the config: a rerun can succeed
            raise UserError(
                f"cohort {cohort} failed on the Ray cluster ({type(e).__name__}: {shorten(e, 200)}); "
                "what is written is kept: run again to resume"
            ) from None
        raise UserError(
            f"cohort {cohort} failed inside weightzoo ({type(e).__name__}: {shorten(e, 200)}): not a "
            "config or file mistake that a rerun would fix; what is written is kept"
        ) from None
