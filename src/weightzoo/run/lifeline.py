"""Processes that die with the one that started them: no worker outlives a killed run.

A run's worker pool is a fork server (a child of the command's process) and workers forked from it.
When the command dies by SIGKILL, nothing tells them: they used to keep running, holding ~800 MB, and
the resource tracker beside them. `die_with_parent()` asks the kernel to SIGKILL the calling process
when its parent goes (Linux's `PR_SET_PDEATHSIG`), and elsewhere starts a thread that exits the
process once its parent is gone (checked every second). The fork server calls it as it starts (it
imports `weightzoo.run.lifeline_server`), each worker in its initializer, so the chain command → server →
workers falls together however the command dies; the resource tracker then sees its last pipe close
and exits too.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

_PR_SET_PDEATHSIG = 1
WATCH_SECONDS = 1.0


def die_with_parent() -> None:
    """Be killed when the parent process exits (at once on Linux, within a second elsewhere)."""
    parent = os.getppid()
    if sys.platform.startswith("linux") and _set_death_signal():
        if os.getppid() != parent:  # the parent died before the request took effect
            os._exit(1)
        return
    threading.Thread(target=_watch, args=(parent,), name="weightzoo-lifeline", daemon=True).start()


def _set_death_signal() -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch(parent: int) -> None:
    while True:
        time.sleep(WATCH_SECONDS)
        if os.getppid() != parent:
            os._exit(1)
