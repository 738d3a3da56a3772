"""Watching a run-data-gen run: a progress bar or log lines, TensorBoard summaries, a TensorBoard server.

- `Progress(target)`: `update(accepted, attempted, seconds)` after each cohort. On a terminal it draws
  a tqdm bar (accepted/target, attempted, acceptance rate, accepted examples/s, ETA); elsewhere (a
  log file, a pipe) it writes one plain line per update with the same numbers.
- `cohort_summary(examples, seconds)`: what one cohort did, as plain numbers and lists (picklable, so
  a worker process can return it), for `Monitor.cohort`.
- `Monitor(log_dir, enabled)`: writes TensorBoard event files under `log_dir` (nothing when disabled).
- `launch_tensorboard(log_dir, port)` / `stop(proc)`: a TensorBoard server on 127.0.0.1 in the
  background; `TensorBoardError` (a `UserError`) says why one cannot start.
"""

from __future__ import annotations

import importlib.util
import math
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING

from weightzoo.errors import UserError
from weightzoo.judge.validation import REASONS
from weightzoo.plan.jobs import CURVE_SAMPLE

if TYPE_CHECKING:
    from weightzoo.judge.pairs import TrainedExample


# Per epoch, and with `metrics.tensorboard.update_freq: batch` the training loss of every step as well.
CURVES = ("stage1_val_loss", "stage2_val_loss", "train_loss", "batch_loss")


# ---------------------------------------------------------------------------------------------------------
# progress on the terminal or in a log
# ---------------------------------------------------------------------------------------------------------


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = round(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"


def progress_numbers(target: int, accepted: int, attempted: int, seconds: float) -> dict:
    """Acceptance rate, accepted examples per second and the estimated seconds left (inf if unknown)."""
    rate = accepted / max(attempted, 1)  # of every example judged, also those beyond the target
    accepted = min(accepted, target)
    per_s = accepted / seconds if seconds > 0 else 0.0
    left = target - accepted
    eta = 0.0 if left <= 0 else (left / per_s if per_s > 0 else math.inf)
    return {"rate": rate, "per_s": per_s, "eta": eta}


class Progress:
    """Progress toward `target` accepted examples: a tqdm bar on a terminal, plain lines elsewhere."""

    def __init__(self, target: int, stream: IO[str] | None = None):
        self.target = target
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self._bar = None
        if isatty is not None and isatty():
            from tqdm import tqdm

            self._bar = tqdm(
                total=target,
                file=self.stream,
                unit="ex",
                dynamic_ncols=True,
                bar_format="{percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} accepted [{elapsed}{postfix}]",
            )

    def update(self, accepted: int, attempted: int, seconds: float) -> None:
        n = progress_numbers(self.target, accepted, attempted, seconds)
        shown = min(accepted, self.target)
        if self._bar is not None:
            self._bar.n = shown
            self._bar.set_postfix_str(
                f"{attempted} attempted, {n['rate']:.1%} accepted, {n['per_s']:.2f} ex/s, "
                f"ETA {_duration(n['eta'])}",
                refresh=False,
            )
            self._bar.refresh()
        else:
            self.stream.write(
                f"{shown}/{self.target} accepted, {attempted} attempted ({n['rate']:.1%} accepted), "
                f"{n['per_s']:.2f} accepted/s, {_duration(seconds)} elapsed, ETA {_duration(n['eta'])}\n"
            )
            self.stream.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False


# ---------------------------------------------------------------------------------------------------------
# TensorBoard summaries
# ---------------------------------------------------------------------------------------------------------


def cohort_summary(
    examples: Sequence[TrainedExample], seconds: float, curves: bool | Collection[int] = True
) -> dict:
    """One cohort for `Monitor.cohort`, in plain Python values (picklable, JSON-able).

    Keys: `attempted`, `accepted` (ints), `seconds` (the cohort's wall time in its worker),
    `target_gains` / `overall_gains` (finite gains of every judged example, accepted or not),
    `accepted_target_gains` / `accepted_overall_gains` (the accepted ones only), `rejected`
    ({reason: count} over every known reason, zeros included) and `curves` (the first `CURVE_SAMPLE`
    examples, or those whose indices `curves` lists, or none when it is False: {"index", "target",
    "accepted", and each of `CURVES`, empty when not recorded}).
    """

    def finite(values) -> list[float]:
        return [float(v) for v in values if v is not None and math.isfinite(v)]

    accepted = [e for e in examples if e.verdict.accepted]
    rejected = dict.fromkeys(REASONS, 0)
    for e in examples:
        if not e.verdict.accepted:
            reason = e.verdict.reason or "unknown"
            rejected[reason] = rejected.get(reason, 0) + 1
    sampled = []
    if isinstance(curves, bool):
        sampled_examples = list(examples)[: CURVE_SAMPLE if curves else 0]
    else:
        wanted = set(curves)
        sampled_examples = [e for e in examples if e.plan.index in wanted]
    for e in sampled_examples:
        history = e.result.history or {}
        curve = {"index": int(e.plan.index), "target": str(e.plan.target)}
        curve["accepted"] = bool(e.verdict.accepted)
        curve.update({name: [float(v) for v in history.get(name, [])] for name in CURVES})
        sampled.append(curve)
    return {
        "attempted": len(examples),
        "accepted": len(accepted),
        "seconds": float(seconds),
        "target_gains": finite(e.verdict.target_gain for e in examples),
        "overall_gains": finite(e.verdict.overall_gain for e in examples),
        "accepted_target_gains": finite(e.verdict.target_gain for e in accepted),
        "accepted_overall_gains": finite(e.verdict.overall_gain for e in accepted),
        "rejected": rejected,
        "curves": sampled,
    }


_LISTS = ("target_gains", "overall_gains", "accepted_target_gains", "accepted_overall_gains", "curves")


def merge_summaries(parts: Sequence[dict]) -> dict:
    """One cohort's summary from those of its work units (the curves in index order)."""
    merged: dict = {"attempted": 0, "accepted": 0, "seconds": 0.0, "rejected": dict.fromkeys(REASONS, 0)}
    merged.update({key: [] for key in _LISTS})
    for part in parts:
        for key in ("attempted", "accepted", "seconds", *_LISTS):
            merged[key] += part[key]
        for reason, count in part["rejected"].items():
            merged["rejected"][reason] = merged["rejected"].get(reason, 0) + count
    merged["curves"].sort(key=lambda curve: curve["index"])
    return merged


def _tag(text: str) -> str:
    """A TensorBoard tag part: letters, digits, `_`, `-` and `.` only."""
    return "".join(c if c.isalnum() or c in "_-." else "_" for c in text) or "_"


class Monitor:
    """TensorBoard event files under `log_dir`, one step per cohort; with `enabled=False`, nothing at all.

    Scalars per cohort (step = cohort index): `cohort/acceptance_rate`, `cohort/accepted`,
    `cohort/attempted`, `cohort/accepted_per_s`, `cohort/trained_per_s`, `rejected/<reason>`;
    histograms `gains/target`, `gains/overall` (all judged examples) and `gains/accepted_target`,
    `gains/accepted_overall`; curves `curves/example_<index>/<stage1_val_loss|stage2_val_loss|train_loss>`
    with step = epoch (1-based), and `curves/example_<index>/batch_loss` with step = optimizer step
    (1-based, both stages) when recorded. `totals(step, accepted, attempted, seconds)` adds the run so far:
    `run/accepted`, `run/attempted`, `run/acceptance_rate`, `run/accepted_per_s`.
    """

    def __init__(self, log_dir: Path, enabled: bool):
        self.log_dir = Path(log_dir)
        self.enabled = enabled
        self._writer = None
        if enabled:
            if importlib.util.find_spec("tensorboard") is None:
                raise UserError(
                    "metrics.tensorboard.enabled needs the tensorboard package: pip install tensorboard"
                )
            from torch.utils.tensorboard import SummaryWriter

            try:
                self.log_dir.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise UserError(f"metrics.dir: cannot create {self.log_dir}: {e.strerror}") from None
            self._writer = SummaryWriter(log_dir=str(self.log_dir))

    def cohort(self, step: int, summary: dict) -> None:
        w = self._writer
        if w is None:
            return
        attempted, accepted, seconds = summary["attempted"], summary["accepted"], summary["seconds"]
        w.add_scalar("cohort/acceptance_rate", accepted / max(attempted, 1), step)
        w.add_scalar("cohort/accepted", accepted, step)
        w.add_scalar("cohort/attempted", attempted, step)
        if seconds > 0:
            w.add_scalar("cohort/accepted_per_s", accepted / seconds, step)
            w.add_scalar("cohort/trained_per_s", attempted / seconds, step)
        for key, tag in (
            ("target_gains", "gains/target"),
            ("overall_gains", "gains/overall"),
            ("accepted_target_gains", "gains/accepted_target"),
            ("accepted_overall_gains", "gains/accepted_overall"),
        ):
            if summary.get(key):
                w.add_histogram(tag, _array(summary[key]), step)
        for reason, count in summary.get("rejected", {}).items():
            w.add_scalar(f"rejected/{_tag(reason)}", count, step)
        for curve in summary.get("curves", []):
            for name in CURVES:
                for epoch, value in enumerate(curve.get(name, []), start=1):
                    w.add_scalar(f"curves/example_{curve['index']}/{name}", value, epoch)
        w.flush()

    def totals(self, step: int, accepted: int, attempted: int, seconds: float) -> None:
        w = self._writer
        if w is None:
            return
        w.add_scalar("run/accepted", accepted, step)
        w.add_scalar("run/attempted", attempted, step)
        w.add_scalar("run/acceptance_rate", accepted / max(attempted, 1), step)
        if seconds > 0:
            w.add_scalar("run/accepted_per_s", accepted / seconds, step)
        w.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False


def _array(values: list[float]):
    import numpy as np

    return np.asarray(values, dtype=np.float64)


# ---------------------------------------------------------------------------------------------------------
# a TensorBoard server
# ---------------------------------------------------------------------------------------------------------

HOST = "127.0.0.1"


class TensorBoardError(UserError):
    """TensorBoard cannot be started; the message says why (meant to be shown as a warning)."""


def port_free(port: int, host: str = HOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def tensorboard_url(port: int) -> str:
    return f"http://{HOST}:{port}/"


def launch_tensorboard(log_dir: Path, port: int) -> subprocess.Popen:
    """Start `python -m tensorboard.main` on 127.0.0.1:`port` in the background; print nothing.

    Returns the process at once (the server needs a few seconds before it answers: see `wait_ready`).
    Its output goes to `<log_dir>/tensorboard.log`. Raises `TensorBoardError` when the tensorboard
    package is missing or the port is already taken; the caller should print that as a warning and
    go on, and call `stop(proc)` when the run ends.
    """
    if importlib.util.find_spec("tensorboard") is None:
        raise TensorBoardError("cannot start TensorBoard: the tensorboard package is not installed")
    if not port_free(port):
        raise TensorBoardError(
            f"cannot start TensorBoard: port {port} on {HOST} is in use "
            "(set metrics.tensorboard.port to a free one)"
        )
    log_dir = Path(log_dir)
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
        log = open(log_dir / "tensorboard.log", "ab")  # handed to the child, closed here after
    except OSError as e:
        raise TensorBoardError(f"cannot start TensorBoard: {log_dir}: {e.strerror}") from None
    try:
        command = [sys.executable, "-m", "tensorboard.main", "--logdir", str(log_dir)]
        command += ["--port", str(port), "--host", HOST]
        return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    except OSError as e:
        raise TensorBoardError(f"cannot start TensorBoard: {e.strerror or e}") from None
    finally:
        log.close()  # the child holds its own copy


def wait_ready(proc: subprocess.Popen, port: int, timeout: float = 20.0) -> bool:
    """Wait until the server answers HTTP on 127.0.0.1:`port`; False if it exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(tensorboard_url(port), timeout=2) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.25)
    return False


def stop(proc: subprocess.Popen | None, timeout: float = 5.0) -> None:
    """End a server from `launch_tensorboard` (terminate, then kill if it lingers) and reap it."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
