"""run-data-gen: config → a dataset of accepted examples on disk, in Parquet shards, resumable.

The run reads as its stages: check the config, the signature file and the output folder → build the
pattern pools → for each cohort of example indices: plan and train (`training.py`) → validate →
extract signatures → format rows → write the cohort's shards (and upload them, with `hub.dataset_name`)
→ at the end, the dataset card (README.md) and `dataset_info.json`. Progress goes to the terminal and,
with `metrics.tensorboard.enabled`, per-cohort figures to TensorBoard under `metrics.dir`.

Examples are processed in fixed cohorts of `pipeline.checkpoint_interval` indices (cohort k holds
indices k·size …), so which examples exist and every byte of them depends only on the config and the
seed, never on the number of workers or on timing. Each cohort is written as two files, each atomically
(a temporary file, then a rename): `rejected/cohort-K.parquet`, then `data/cohort-K.parquet`. A cohort
whose data file exists is done; a restarted run skips it. `output_dataset_length` counts accepted
examples: the dataset is the first N accepted in index order, so the last cohort needed is cut to
size when the run finishes, and `dataset_info.json` records it complete.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from weightzoo import __version__
from weightzoo.card import write_card
from weightzoo.config import Config
from weightzoo.errors import UserError
from weightzoo.files import write_atomic, write_json_atomic
from weightzoo.monitoring import Monitor, Progress
from weightzoo.probe_sets import ProbeSet, read_probe_file

INFO = "dataset_info.json"


@dataclass
class RunSummary:
    accepted: int
    attempted: int
    cohorts: int
    seconds: float
    rejected_reasons: dict[str, int]
    stage_seconds: dict[str, float]  # summed over workers: CPU-side time per stage


class _InProcess:
    """One worker: run each cohort right here (nothing left running if the run is killed)."""

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


def _worker_start() -> None:
    """In each pool worker: leave Ctrl-C to the main process, which stops the workers itself.

    A terminal's Ctrl-C reaches every process of the foreground group; without this, each idle worker
    would print a KeyboardInterrupt traceback as it dies.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _stop_workers(pool) -> None:
    """Stop a process pool now rather than after the cohorts in flight (each may take minutes).

    Their writes are atomic: a stopped worker leaves at most a hidden temporary file, which the next
    run removes.
    """
    if not isinstance(pool, ProcessPoolExecutor):
        return
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()


@contextmanager
def _workers_stopped_on_error(pool) -> Iterator[None]:
    """Ctrl-C or a failed cohort ends the run now: the cohorts still in flight are not waited for."""
    try:
        yield
    except BaseException:
        _stop_workers(pool)
        raise


def cohort_path(out: Path, kind: str, cohort: int) -> Path:
    return out / kind / f"cohort-{cohort:05d}.parquet"


def write_table_atomic(table: pa.Table, path: Path) -> None:
    write_atomic(path, lambda tmp: pq.write_table(table, tmp))


def _check_output(cfg: Config, probe: ProbeSet, cohort_size: int) -> Path:
    """The output folder exists, is writable, and holds nothing from another config."""
    out = cfg.pipeline.output_dir
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"pipeline.output_dir: cannot create {out}: {e.strerror}") from None
    if not os.access(out, os.W_OK):
        raise UserError(f"pipeline.output_dir: {out} is not writable")
    info_path = out / INFO
    if info_path.exists():
        info = json.loads(info_path.read_text())
        same = (info.get("config_hash"), info.get("signature_hash"), info.get("cohort_size"))
        if same != (cfg.config_hash, probe.content_hash, cohort_size):
            raise UserError(
                f"{out} holds a dataset made with another config or signature file "
                f"(config {str(info.get('config_hash'))[:16]}, here {cfg.config_hash[:16]}); "
                "use another pipeline.output_dir or remove that folder"
            )
    else:
        write_json_atomic(info_path, _info(cfg, probe, cohort_size, complete=False))
    return out


def _info(
    cfg: Config, probe: ProbeSet, cohort_size: int, complete: bool, summary: RunSummary | None = None
) -> dict:
    config = cfg.model_dump(mode="json")
    info = {
        "weightzoo_version": __version__,
        "config_hash": cfg.config_hash,
        "signature_hash": probe.content_hash,
        "config": config,
        "cohort_size": cohort_size,
        "complete": complete,
    }
    if summary is not None:
        info.update(
            accepted=summary.accepted,
            attempted=summary.attempted,
            acceptance_rate=summary.accepted / max(summary.attempted, 1),
            rejected_reasons=summary.rejected_reasons,
        )
    return info


@dataclass
class CohortReport:
    """What a worker sends back: counts, seconds per stage, and a summary for monitoring."""

    accepted: int
    attempted: int
    seconds: dict[str, float]
    monitor: dict | None = None


def run_cohort(cfg: Config, cohort: int, threads: int, cohort_size: int) -> CohortReport:
    """Plan, train, judge, sign and format one cohort and write its shards."""
    import torch

    from weightzoo.checkpoints import write_snapshots
    from weightzoo.monitoring import cohort_summary
    from weightzoo.pools import build_pools
    from weightzoo.rows import REJECTED_SCHEMA, SCHEMA, accepted_row, model_config, rejected_row
    from weightzoo.signatures import layer_activations, signature
    from weightzoo.training import train_examples

    torch.set_num_threads(threads)
    clock, seconds = time.perf_counter(), {}

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[stage] = seconds.get(stage, 0.0) + now - clock
        clock = now

    enabled = tuple(cfg.dataset.patterns.enabled_patterns)
    probe = read_probe_file(cfg.signature.dataset_path, cfg.space, enabled)
    pools = build_pools(cfg.space, enabled, cfg.dataset.patterns.pool_size, cfg.pipeline.random_seed)
    indices = list(range(cohort * cohort_size, (cohort + 1) * cohort_size))
    examples = train_examples(cfg, pools, indices)
    kept = [e for e in examples if e.verdict.accepted]
    lap("plan, train and validate")
    if cfg.metrics.checkpoint.save_every_epoch:
        write_snapshots(cfg.metrics.dir, examples)  # the watched models' epochs (checkpoints.py)
        lap("checkpoints")
    methods = cfg.signature.neuron_profile_methods
    signatures: dict[int, dict[str, dict]] = {e.plan.index: {} for e in kept}
    for which in ("degraded", "improved"):
        acts = layer_activations(
            [e.plan.spec for e in kept], [getattr(e, which) for e in kept], probe.sequences
        )
        for e, a in zip(kept, acts, strict=True):
            signatures[e.plan.index][which] = signature(a, methods, probe.groups, model_config(cfg, e))
    lap("signatures")
    rows = [accepted_row(cfg, e, signatures[e.plan.index]) for e in kept]
    rejected = [rejected_row(e) for e in examples if not e.verdict.accepted]
    lap("format")
    out = cfg.pipeline.output_dir
    write_table_atomic(
        pa.Table.from_pylist(rejected, schema=REJECTED_SCHEMA), cohort_path(out, "rejected", cohort)
    )
    write_table_atomic(pa.Table.from_pylist(rows, schema=SCHEMA), cohort_path(out, "data", cohort))
    lap("write")
    return CohortReport(len(rows), len(examples), seconds, cohort_summary(examples, sum(seconds.values())))


def _done(out: Path, cohort: int) -> CohortReport | None:
    """The report of a cohort already on disk (written by an earlier run), or None."""
    data, rejected = cohort_path(out, "data", cohort), cohort_path(out, "rejected", cohort)
    if not (data.exists() and rejected.exists()):
        return None
    kept = pq.read_metadata(data).num_rows
    return CohortReport(kept, kept + pq.read_metadata(rejected).num_rows, {})


def run_data_gen(
    cfg: Config,
    workers: int | None = None,
    log: Callable[[str], None] = print,
    cohort_size: int | None = None,
) -> RunSummary:
    """Generate (or finish) the dataset; `workers` defaults to `pipeline.max_threads`, `cohort_size`
    to `pipeline.checkpoint_interval`."""
    cohort_size = cohort_size or cfg.pipeline.checkpoint_interval
    enabled = tuple(cfg.dataset.patterns.enabled_patterns)
    probe = read_probe_file(cfg.signature.dataset_path, cfg.space, enabled)
    out = _check_output(cfg, probe, cohort_size)
    for stale in [*out.glob("data/.*.tmp"), *out.glob("rejected/.*.tmp")]:  # left by a killed run
        stale.unlink()
    target = cfg.dataset.output_dataset_length
    cores = os.cpu_count() or 1
    workers = workers or cfg.pipeline.max_threads
    if workers > cores:
        log(f"pipeline.max_threads {workers} is more than the {cores} cores here: running {cores} workers")
        workers = cores
    # Thread counts never change results (the same bits with 1 or 2 threads, measured); they only must
    # not oversubscribe the cores.
    threads = min(cfg.pipeline.num_workers or cores, max(1, cores // workers))
    uploader = _uploader(cfg, log)
    start = time.perf_counter()
    with Progress(target) as progress, Monitor(cfg.metrics.dir, cfg.metrics.tensorboard.enabled) as monitor:
        accepted, attempted, cohort, stage_seconds = _generate(
            cfg, out, workers, threads, cohort_size, progress, monitor, start, uploader
        )
    last = cohort - 1
    _finish(out, last, accepted - target)
    # Attempted: every example up to the last one kept (those after it in its cohort are not part of it).
    kept_ids = pq.read_table(cohort_path(out, "data", last), columns=["example_id"]).column(0).to_pylist()
    attempted = max(kept_ids) + 1 if kept_ids else attempted
    summary = RunSummary(
        target,
        attempted,
        last + 1,
        time.perf_counter() - start,
        _reason_counts(out, last, attempted),
        stage_seconds,
    )
    write_json_atomic(out / INFO, _info(cfg, probe, cohort_size, complete=True, summary=summary))
    write_card(out)
    if uploader is not None:
        uploader.sync(out)  # the last shard as cut, shards no longer wanted removed, then the card
    return summary


def _uploader(cfg: Config, log: Callable[[str], None]):
    """A Hub uploader when `hub.dataset_name` is set; shards go up as they are written."""
    if not cfg.hub.dataset_name:
        return None
    from weightzoo.hub import HubUploader, resolve_token

    uploader = HubUploader(cfg.hub.dataset_name, resolve_token(cfg), cfg.hub.private, log=log)
    uploader.create()
    return uploader


def _generate(
    cfg: Config,
    out: Path,
    workers: int,
    threads: int,
    cohort_size: int,
    progress: Progress,
    monitor: Monitor,
    start: float,
    uploader=None,
) -> tuple[int, int, int, dict[str, float]]:
    """Run cohorts in index order, `workers` at a time, until enough examples are accepted."""
    target = cfg.dataset.output_dataset_length
    accepted = attempted = 0
    cohort = 0
    results: dict[int, CohortReport] = {}
    stage_seconds: dict[str, float] = {}
    executor = (
        ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"), initializer=_worker_start)
        if workers > 1
        else _InProcess()
    )
    with executor as pool, _workers_stopped_on_error(pool):
        pending: dict[int, object] = {}
        while accepted < target:
            # Keep `workers` cohorts in flight, in index order; finished cohorts are read from disk.
            while len(pending) < workers:
                nxt = cohort + len(pending)
                if nxt in results or nxt in pending:
                    break
                done = _done(out, nxt)
                if done is not None:
                    results[nxt] = done
                    break
                pending[nxt] = pool.submit(run_cohort, cfg, nxt, threads, cohort_size)
            if cohort in results:
                report = results.pop(cohort)
            elif cohort in pending:
                try:
                    report = pending.pop(cohort).result()
                except UserError:
                    raise
                except Exception as e:  # a worker that died: what is written stays, the run can resume
                    raise UserError(
                        f"cohort {cohort} failed ({type(e).__name__}: {e}); run again to resume"
                    ) from None
            else:
                continue
            accepted += report.accepted
            attempted += report.attempted
            for stage, spent in report.seconds.items():
                stage_seconds[stage] = stage_seconds.get(stage, 0.0) + spent
            seconds = time.perf_counter() - start
            progress.update(accepted, attempted, seconds)
            if report.monitor is not None:
                monitor.cohort(cohort, report.monitor)
            monitor.totals(cohort, min(accepted, target), attempted, seconds)
            if uploader is not None:
                for kind in ("rejected", "data"):
                    uploader.upload_shard(cohort_path(out, kind, cohort), out)
            cohort += 1
            if attempted and accepted == 0 and attempted >= 4 * cohort_size:
                raise UserError(
                    f"no example accepted in {attempted} attempts: the validation rules reject everything"
                )
        if pending:
            # Cohorts started beyond the last one needed are not wanted: stop them now rather than wait.
            _stop_workers(pool)
    return accepted, attempted, cohort, stage_seconds


def _finish(out: Path, last: int, surplus: int) -> None:
    """Cut the last cohort to the rows needed, and remove cohorts computed beyond it."""
    for kind in ("data", "rejected"):
        for path in (out / kind).glob("cohort-*.parquet"):
            if int(path.stem.split("-")[1]) > last:
                path.unlink()
    if surplus > 0:
        path = cohort_path(out, "data", last)
        table = pq.read_table(path)
        write_table_atomic(table.slice(0, table.num_rows - surplus), path)


def _reason_counts(out: Path, last: int, below: int) -> dict[str, int]:
    """Rejection reasons of the examples with index < `below` (those the dataset's run covers)."""
    counts: dict[str, int] = {}
    for cohort in range(last + 1):
        table = pq.read_table(cohort_path(out, "rejected", cohort), columns=["example_id", "reason"])
        for index, reason in zip(*(column.to_pylist() for column in table.columns), strict=True):
            if index < below:
                counts[reason] = counts.get(reason, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))
