"""Worker processes for run-data-gen: forked from a server that imports the heavy modules once.

A spawned worker imports torch itself (about 2 s on these machines), and with two workers the imports
compete for the same two cores at the start of every run. A fork server (`multiprocessing`'s
"forkserver") imports them once and forks each worker with everything loaded. `warm_up` starts it
early, so that its imports run while the command's own process imports the same modules. The server
never runs torch operations, so forking it is safe (no thread pools to inherit), and it ignores
Ctrl-C, like the workers. The server and every worker die with the command, however it dies
(`lifeline.py`).
"""

from __future__ import annotations

import multiprocessing
from multiprocessing import forkserver

# What a work unit needs (see pipeline.run_unit): imported by the server before it forks any worker.
PRELOAD = [
    "weightzoo.run.lifeline_server",  # first: the server dies with the command (lifeline.py)
    "weightzoo.plan.jobs",
    "weightzoo.judge.pairs",
    "weightzoo.signatures",
    "weightzoo.output.rows",
    "weightzoo.output.checkpoints",
    "weightzoo.run.monitoring",
    "weightzoo.data.pools",
    "weightzoo.run.stages",
    "weightzoo.run.pipeline",
]


def context() -> multiprocessing.context.BaseContext:
    """The multiprocessing context worker pools use: the fork server where the platform has one
    (Linux, macOS), else spawned workers."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    # Started from the calling thread (the command's main thread), not from a pool's own thread: the
    # kernel ties the server's life to the thread that started it.
    forkserver.ensure_running()
    return ctx


def warm_up() -> None:
    """Start the fork server now (it returns at once; the server imports in the background)."""
    if context().get_start_method() == "forkserver":
        forkserver.ensure_running()
