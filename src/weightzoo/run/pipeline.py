"""run-data-gen: config → a dataset of accepted examples on disk, in Parquet shards, resumable.

The run: read the inputs once (the signature file, pinned in the output folder) and claim the folder
(`store.py`) → check every file already there (`cohorts.check_files`) → hand parts of work units to an
executor (`executors.py`: this process, local workers or Ray), each part going through every stage of
an example (`stages.run_stages`) → stage each part's rows, write each cohort's shards when its parts
are in (`cohorts.py`), upload them with `hub.dataset_name` → at the end, cut the last cohort to the
Nth accepted example, check every shard, and write the card and `dataset_info.json` (complete).

Scheduling lives here: which parts run, in index order, two per worker in flight; where a unit is
cut when the run will likely end inside it (`piece_end`: the rest is trained only if the first piece
falls short); stopping after the piece holding the Nth accepted example. Which examples exist and
every byte of them depend only on the config and the seed, never on the number of workers, the
executor, timing, or how units are cut into pieces and parts (an example trains to the same bits
beside any others: `engine.Padding`).

Why units and parts: a cohort of 1,000 examples takes one worker about half a minute, and a run needs
whole cohorts; with units of 250 the two workers of a 2-core machine share the cohorts a run needs,
and the run stops a unit after its Nth example rather than a cohort after (the seed's config: 11.3 →
14.2 accepted examples/s). Units smaller still would make smaller stacks, which train slower; parts
let both workers share the last unit too.
"""

from __future__ import annotations

import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow as pa

from weightzoo import __version__
from weightzoo.config import Config
from weightzoo.data.probe_sets import ProbeSet, parse_probe_file, read_probe_bytes, read_probe_file
from weightzoo.errors import UserError
from weightzoo.output.card import write_card
from weightzoo.output.cohorts import (
    UNIT_PARTS,
    UNIT_SIZE,
    UNIT_SIZE_GPU,
    CohortReport,
    check_files,
    check_manifest,
    cohort_path,
    finish,
    reason_counts,
    stage_part,
    write_cohort,
)
from weightzoo.output.files import write_json_atomic
from weightzoo.output.shards import (
    RunIdentity,
)
from weightzoo.output.store import (
    INFO,
    PINNED_SIGNATURE,
    claim,
    pin_signature_file,
    single_writer,
    stale_temporaries,
)
from weightzoo.run.executors import failure_named, submit
from weightzoo.run.monitoring import Monitor, Progress, merge_summaries
from weightzoo.run.scheduling import Schedule, Task


@dataclass
class RunSummary:
    accepted: int
    attempted: int
    cohorts: int
    seconds: float
    rejected_reasons: dict[str, int]
    stage_seconds: dict[str, float]  # summed over workers: CPU-side time per stage
    worker_peak_mib: float = 0.0  # the largest peak resident memory of a process that trained a part


@contextmanager
def _stopped_on_error(pool) -> Iterator[None]:
    """Ctrl-C or a failed part ends the run now: the parts still in flight are not waited for."""
    try:
        yield
    except BaseException:
        pool.stop()
        raise


def _info(cfg: Config, identity: RunIdentity, complete: bool, summary: RunSummary | None = None) -> dict:
    info = {
        **asdict(identity),
        "config_hash": cfg.config_hash,
        "config": cfg.model_dump(mode="json"),
        "signature_copy": str(PINNED_SIGNATURE),
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
class PartOutput:
    """What a part of a work unit gives back: its rows, to be staged by the run (which alone writes)."""

    data: pa.Table
    rejected: pa.Table
    report: CohortReport


def run_unit(
    cfg: Config,
    probe: ProbeSet,
    device: str,
    cohort: int,
    piece: tuple[int, int],
    part: int,
    indices: list[int],
    threads: int,
    watched: list[int],
) -> CohortReport:
    """One part of a piece of a work unit through every stage (`stages.run_stages`), on any executor:
    its rows come back to the run, which stages them. `device`: the kind the run resolved (its
    identity says it). `cohort`, `piece`, `part` name the part; `watched`: the examples whose curves
    (and checkpoints) are recorded."""
    import torch

    from weightzoo.output.checkpoints import write_snapshots
    from weightzoo.output.rows import REJECTED_SCHEMA, SCHEMA
    from weightzoo.run.monitoring import cohort_summary
    from weightzoo.run.stages import run_stages

    # Every kernel runs on one thread, so no float32 sum is split differently with another thread
    # count; the engine spreads whole stacks over `threads` threads instead (engine.train_cohort).
    torch.set_num_threads(1)
    done = run_stages(cfg, probe, indices, device=torch.device(device), threads=threads, watched=watched)
    seconds = done.seconds
    clock = time.perf_counter()
    if cfg.metrics.checkpoint.save_every_epoch:
        write_snapshots(cfg.metrics.dir, done.examples)  # the watched models' epochs (checkpoints.py)
    seconds["checkpoints"] = time.perf_counter() - clock
    data = pa.Table.from_pylist(done.rows, schema=SCHEMA)
    rejected = pa.Table.from_pylist(done.rejected, schema=REJECTED_SCHEMA)
    summary = cohort_summary(done.examples, sum(seconds.values()), curves=watched)
    report = CohortReport(len(done.rows), len(done.examples), seconds, summary, _peak_mib())
    return PartOutput(data, rejected, report)


def _peak_mib() -> float:
    """This process's peak resident memory, or 0 where the platform cannot say."""
    try:
        import resource
    except ImportError:
        return 0.0
    unit = 1024 * 1024 if sys.platform == "darwin" else 1024  # macOS reports bytes, Linux KiB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / unit


def run_data_gen(
    cfg: Config,
    workers: int | None = None,
    log: Callable[[str], None] = print,
    cohort_size: int | None = None,
    unit_size: int | None = None,
    repair: bool = False,
) -> RunSummary:
    """Generate (or finish) the dataset; `workers` defaults to `pipeline.max_threads`, `cohort_size`
    to `pipeline.checkpoint_interval`, `unit_size` to `UNIT_SIZE` (`UNIT_SIZE_GPU` on a GPU).
    `repair`: regenerate the cohorts whose shards are damaged (without it, a damaged shard is an
    error naming it)."""
    cohort_size = cohort_size or cfg.pipeline.checkpoint_interval
    device = _device_kind(cfg)
    unit_size = min(unit_size or (UNIT_SIZE if device == "cpu" else UNIT_SIZE_GPU), cohort_size)
    probe, raw = _read_inputs(cfg)
    out = claim(cfg.pipeline.output_dir)
    if not os.access(out, os.W_OK):
        raise UserError(f"pipeline.output_dir: {out} is not writable")
    identity = RunIdentity(
        __version__,
        cfg.recipe_hash,
        probe.content_hash,
        cohort_size,
        unit_size,
        UNIT_PARTS,
        device,
        _engine_build(cfg, device),
    )
    with single_writer(out):
        for stale in stale_temporaries(out):  # left by a killed run (no other run writes: we hold the lock)
            stale.unlink()
        check_manifest(out, identity, log)
        check_files(out, identity, log, repair=repair)
        pinned = pin_signature_file(out, cfg.signature.dataset_path, raw)
        probe = read_probe_file(pinned, cfg.space, probe.enabled)  # what every unit uses
        write_json_atomic(out / INFO, _info(cfg, identity, complete=False))
        return _run(cfg, out, probe, identity, workers, log)


def _device_kind(cfg: Config) -> str:
    """The device training runs on (`pipeline.device`, `auto` resolved here: a missing device is an
    error now, not in a worker). Part of the run's identity: CUDA's kernels round otherwise than the
    CPU's, so a folder written on one is never finished on the other."""
    from weightzoo.engine.devices import resolve_device

    pipeline = cfg.pipeline
    if pipeline.backend == "ray" and pipeline.ray_address:  # the cluster's nodes train, not this one
        if pipeline.device == "auto":
            return "cuda" if pipeline.ray_gpus_per_task > 0 else "cpu"
        return pipeline.device
    return resolve_device(pipeline.device).type


def _engine_build(cfg: Config, device: str) -> str:
    """What trains: on this machine's CPU, the compiled step where it builds (`step_kernel.build_name`);
    on a GPU, the PyTorch step. A Ray cluster's nodes each build their own: a run on one records
    the build of the machine that drives it, which is theirs only where the nodes are alike."""
    from weightzoo.engine import step_kernel

    return step_kernel.build_name() if device == "cpu" else "pytorch step"


def _read_inputs(cfg: Config) -> tuple[ProbeSet, bytes]:
    """The signature file, read once (its bytes are pinned in the output folder), and a check that the
    tokenizer the config names exists."""
    enabled = tuple(cfg.dataset.patterns.enabled_patterns)
    raw = read_probe_bytes(cfg.signature.dataset_path)
    probe = parse_probe_file(raw, cfg.signature.dataset_path, cfg.space, enabled)
    if cfg.signature.prompt_format.tokenizer is not None:
        from weightzoo.text import load_tokenizer

        load_tokenizer(cfg.signature.prompt_format.tokenizer, cfg.source_path)
    return probe, raw


def _run(
    cfg: Config,
    out: Path,
    probe: ProbeSet,
    identity: RunIdentity,
    workers: int | None,
    log: Callable[[str], None],
) -> RunSummary:
    target = cfg.dataset.output_dataset_length
    cores = os.cpu_count() or 1
    workers = workers or cfg.pipeline.max_threads
    if workers > cores:
        log(f"pipeline.max_threads {workers} is more than the {cores} cores here: running {cores} workers")
        workers = cores
    # Thread counts never change results (kernels run on one thread, stacks side by side); they only
    # must not oversubscribe the cores.
    threads = min(cfg.pipeline.num_workers or cores, max(1, cores // workers))
    if cfg.pipeline.backend == "ray":  # a Ray task trains on the CPUs it asked for
        threads = max(1, int(cfg.pipeline.ray_cpus_per_task))
    mirrors = _mirrors(cfg, log)
    start = time.perf_counter()
    with Progress(target) as progress, Monitor(cfg.metrics.dir, cfg.metrics.tensorboard.enabled) as monitor:
        accepted, attempted, cohort, stage_seconds, peak_mib = _generate(
            cfg, out, probe, identity, workers, threads, progress, monitor, start, mirrors
        )
    last = cohort - 1
    last_kept = finish(out, last, accepted - target, identity)
    # Attempted: every example up to the last one kept (those after it in its cohort are not part of it).
    attempted = last_kept + 1 if last_kept is not None else attempted
    if cfg.metrics.checkpoint.save_every_epoch:
        from weightzoo.output.checkpoints import remove_snapshots_after

        remove_snapshots_after(cfg.metrics.dir, attempted - 1)
    summary = RunSummary(
        target,
        attempted,
        last + 1,
        time.perf_counter() - start,
        reason_counts(out, last, attempted),
        stage_seconds,
        peak_mib,
    )
    check_files(out, identity, log)  # the manifest says complete only of shards that check out
    write_json_atomic(out / INFO, _info(cfg, identity, complete=True, summary=summary))
    write_card(out)
    for mirror in mirrors:
        mirror.sync(out)  # the last shard as cut, shards no longer wanted removed, then the card
    return summary


def _mirrors(cfg: Config, log: Callable[[str], None]) -> list:
    """Where copies of the dataset go as shards are written (`output/mirror.py`): the Hub repo
    `hub.dataset_name`, the fsspec URL `pipeline.output_url`; each is made ready before any work."""
    mirrors = []
    if cfg.pipeline.output_url:
        from weightzoo.output.mirror import FsspecMirror

        mirrors.append(FsspecMirror(cfg.pipeline.output_url, log=log))
    if cfg.hub.dataset_name:
        from weightzoo.output.hub import HubUploader, resolve_token

        mirrors.append(HubUploader(cfg.hub.dataset_name, resolve_token(cfg), cfg.hub.private, log=log))
    for mirror in mirrors:
        mirror.create()
    return mirrors


def _generate(
    cfg: Config,
    out: Path,
    probe: ProbeSet,
    identity: RunIdentity,
    workers: int,
    threads: int,
    progress: Progress,
    monitor: Monitor,
    start: float,
    mirrors: list = (),
) -> tuple[int, int, int, dict[str, float], float]:
    """Run the units' parts in index order, `workers` at a time, until a whole piece brings enough
    examples; write each cohort once its units are in (or once the run has enough)."""
    target = cfg.dataset.output_dataset_length
    cohort_size, unit_size = identity.cohort_size, identity.unit_size
    accepted = attempted = 0
    cohort = 0
    stage_seconds: dict[str, float] = {}
    peak_mib = 0.0
    summaries: list[dict] = []  # the current cohort's unit summaries
    from weightzoo.run.executors import executor_for

    executor = executor_for(cfg, workers)
    schedule = Schedule(cfg, out, cohort_size, unit_size, target, identity.unit_parts)
    ahead: deque[Task] = deque()  # tasks taken from the schedule, not yet counted
    running: dict[tuple, Future] = {}
    pieces: list[tuple[int, int]] = []  # the current cohort's pieces counted so far
    enough = False  # counted at the end of a piece only: its parts interleave its indices
    with executor as pool, _stopped_on_error(pool):
        while not enough:
            slots = pool.slots  # a cluster's may change as nodes join or leave
            in_flight = 2 * slots if slots > 1 else 1
            # Keep two parts per worker submitted, the next ones in index order: a worker that
            # finishes early starts the next part at once rather than wait for the oldest to be counted.
            while sum(item.report is None for item in ahead) < in_flight:
                item = schedule.next_task()
                if item is None:  # the next parts wait for the ones ahead to be counted
                    break
                ahead.append(item)
                if item.report is None:
                    running[item.cohort, item.piece, item.part] = submit(
                        pool,
                        run_unit,
                        cfg,
                        probe,
                        identity.device,
                        *(item.cohort, item.piece, item.part),
                        item.indices,
                        threads,
                        item.watched,
                    )
            item = ahead.popleft()
            report = item.report
            if report is None:
                with failure_named(item.cohort):
                    output = running.pop((item.cohort, item.piece, item.part)).result()
                report = output.report
                report.seconds["write"] = stage_part(
                    out, identity, item.cohort, item.piece, item.part, output.data, output.rejected
                )
            accepted += report.accepted
            attempted += report.attempted
            for stage, spent in report.seconds.items():
                stage_seconds[stage] = stage_seconds.get(stage, 0.0) + spent
            peak_mib = max(peak_mib, report.peak_mib)
            if report.monitor is not None:
                summaries.append(report.monitor)
            seconds = time.perf_counter() - start
            if not item.piece_done:
                continue
            progress.update(accepted, attempted, seconds)
            enough = accepted >= target
            through = item.piece[1] if item.piece is not None else (item.cohort + 1) * cohort_size
            schedule.count(accepted, attempted, through)
            if item.piece is not None:
                pieces.append(item.piece)
            if not (item.last or enough):
                continue
            if item.piece is not None:
                write_cohort(out, item.cohort, pieces, identity)
            pieces = []
            if summaries:
                monitor.cohort(item.cohort, merge_summaries(summaries))
            summaries = []
            monitor.totals(item.cohort, min(accepted, target), attempted, seconds)
            for mirror in mirrors:
                for kind in ("rejected", "data"):
                    mirror.upload_shard(cohort_path(out, kind, item.cohort), out)
            cohort = item.cohort + 1
            if attempted and accepted == 0 and attempted >= 4 * cohort_size:
                raise UserError(
                    f"no example accepted in {attempted} attempts: the validation rules reject everything"
                )
        if running:
            # Units started beyond the last one needed are not wanted: stop them now rather than wait.
            pool.stop()
    return accepted, attempted, cohort, stage_seconds, peak_mib
