"""The output folder's files, cohort by cohort: where each lives, staged parts, shards written,
checked, cut. A run (`pipeline.py`) decides what to train; this module knows only files.

Examples are grouped in fixed cohorts of `pipeline.checkpoint_interval` indices (cohort k holds indices
k·size …), each cohort in fixed work units of at most `UNIT_SIZE` indices (split evenly,
`unit_bounds`), each unit trained as `UNIT_PARTS` parts. A finished part is staged under `.units/`
(`stage_part`), named by its piece's index range, so a resumed run adopts it. A cohort whose parts
are all staged is written as two files, each atomically: `rejected/cohort-K.parquet`, then
`data/cohort-K.parquet`, rows in index order (`write_cohort`); its staged parts are then removed. A
cohort whose data file exists is done (`done_report`). Every file is stamped and checked (`shards.py`,
`check_files`); at the end, the last cohort is cut to the examples up to the Nth accepted
(`finish`).
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from weightzoo.errors import UserError
from weightzoo.output.files import write_json_atomic
from weightzoo.output.shards import (
    DamagedFile,
    RunIdentity,
    check_shard,
    check_staged,
    index_blocks,
    read_staged,
    rewrite_prefix,
    write_shard,
    write_staged,
)
from weightzoo.output.store import INFO, UNITS


def cohort_path(out: Path, kind: str, cohort: int) -> Path:
    return out / kind / f"cohort-{cohort:05d}.parquet"


def check_manifest(out: Path, identity: RunIdentity, log: Callable[[str], None]) -> None:
    """`dataset_info.json`, when there is one, is of this run's identity. A damaged one is rebuilt (the
    shards vouch for themselves; it holds nothing they and the config do not)."""
    info_path = out / INFO
    if not info_path.exists():
        return
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
        if not isinstance(info, dict):
            raise ValueError("not a JSON object")
    except (OSError, UnicodeDecodeError, ValueError) as e:
        log(f"{info_path} is damaged ({str(e)[:80]}): rebuilt from the config and the shards")
        return
    differ = identity.differences(info)
    if differ:
        raise UserError(
            f"{out} holds a dataset made with another config, signature file, cohort layout, training "
            f"engine or weightzoo version ({'; '.join(differ)}); use another pipeline.output_dir or remove "
            "that folder"
        )


def mark_incomplete(out: Path) -> None:
    """A manifest that says complete of a folder with a damaged shard is made to say otherwise."""
    try:
        info = json.loads((out / INFO).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return
    if isinstance(info, dict) and info.get("complete"):
        write_json_atomic(out / INFO, {**info, "complete": False})


_SHARD_NAME = re.compile(r"cohort-(\d{5,})\.parquet")
_STAGED_NAME = re.compile(r"cohort-(\d{5,})-from-(\d{9,})-to-(\d{9,})-part-(\d+)\.arrow")


def check_files(
    out: Path,
    identity: RunIdentity,
    log: Callable[[str], None],
    repair: bool = False,
    below: int | None = None,
) -> None:
    """Check every shard and staged part in the folder against this run's identity and its checksum.

    A file of another run is refused (nothing is removed). A damaged staged part is removed (it is
    trained again). A damaged shard is an error naming it; with `repair`, its cohort's two shards are
    removed, so the run regenerates exactly them (every example is a pure function of its index).
    `below`: check only the cohorts before it."""
    damaged: dict[int, DamagedFile] = {}
    for kind in ("rejected", "data"):
        for path in sorted((out / kind).glob("cohort-*.parquet")):
            match = _SHARD_NAME.fullmatch(path.name)
            if match is None or (below is not None and int(match[1]) >= below):
                continue
            cohort = int(match[1])
            try:
                check_shard(path, identity, {"kind": kind, "cohort": cohort})
            except DamagedFile as e:
                damaged.setdefault(cohort, e)
    staged_damaged = []
    for kind in ("rejected", "data"):
        for path in sorted((out / UNITS / kind).glob("*.arrow")):
            match = _STAGED_NAME.fullmatch(path.name)
            if match is None:
                continue
            cohort, start, end, part = map(int, match.groups())
            about = {"kind": kind, "cohort": cohort, "piece": [start, end], "part": part}
            try:
                check_staged(path, identity, about)
            except DamagedFile as e:
                staged_damaged.append(e)
    for e in staged_damaged:
        log(f"{e}: removed; its part is trained again")
        e.path.unlink(missing_ok=True)
    if damaged and not repair:
        mark_incomplete(out)
        first = damaged[min(damaged)]
        more = f" (and {len(damaged) - 1} more cohorts)" if len(damaged) > 1 else ""
        raise UserError(
            f"{first}{more}; run the same command with --repair to regenerate exactly the damaged "
            "cohorts (byte-identical: every example is a pure function of its index)"
        )
    for cohort, e in sorted(damaged.items()):
        log(f"{e}: cohort {cohort} is regenerated")
        for kind in ("data", "rejected"):
            cohort_path(out, kind, cohort).unlink(missing_ok=True)


@dataclass
class CohortReport:
    """What a work unit reports (or a cohort already on disk): counts, seconds per stage, and a summary
    for monitoring."""

    accepted: int
    attempted: int
    seconds: dict[str, float]
    monitor: dict | None = None
    peak_mib: float = 0.0  # the peak resident memory of the process that trained it


UNIT_SIZE = 256  # the most examples trained together (a unit's stacks hold only its own examples)
# On a GPU a stack should hold thousands of models: one unit per cohort, up to this many examples
# (unmeasured on a card so far: benchmarks/gpu_check.sh measures it where one is lent).
UNIT_SIZE_GPU = 4096
UNIT_PARTS = 2  # each unit is trained as this many parts, whole stacks each, by any free worker


def unit_bounds(cohort: int, cohort_size: int, unit_size: int = UNIT_SIZE) -> list[range]:
    """The work units of a cohort: consecutive index ranges of at most `unit_size`, split evenly."""
    n = -(-cohort_size // unit_size)
    edges = [cohort * cohort_size + cohort_size * u // n for u in range(n + 1)]
    return [range(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def unit_path(out: Path, kind: str, cohort: int, piece: tuple[int, int], part: int) -> Path:
    """A staged part of a piece of a unit: the indices start … end-1, named by them, so that a resumed
    run finds what an earlier one trained whichever way it cut its units (`_piece_end`)."""
    start, end = piece
    return out / UNITS / kind / f"cohort-{cohort:05d}-from-{start:09d}-to-{end:09d}-part-{part}.arrow"


def staged_pieces(out: Path, cohort: int) -> dict[int, int]:
    """The pieces of a cohort an earlier run staged parts of: start -> end (the shortest, if several)."""
    ends: dict[int, int] = {}
    for path in (out / UNITS / "data").glob(f"cohort-{cohort:05d}-from-*-part-*.arrow"):
        fields = path.stem.split("-")  # cohort, C, from, START, to, END, part, P
        start, end = int(fields[3]), int(fields[5])
        ends[start] = min(end, ends.get(start, end))
    return ends


def stage_part(
    out: Path, identity: RunIdentity, cohort: int, piece, part: int, data: pa.Table, rejected: pa.Table
) -> float:
    """A part's rows, staged under `.units/` (rejected first): a resumed run adopts them. Returns the
    seconds it took."""
    clock = time.perf_counter()
    for kind, table in (("rejected", rejected), ("data", data)):
        about = {"kind": kind, "cohort": cohort, "piece": list(piece), "part": part}
        write_staged(unit_path(out, kind, cohort, piece, part), table, identity, about)
    return time.perf_counter() - clock


def staged(out: Path, cohort: int, piece: tuple[int, int], part: int) -> CohortReport | None:
    """The report of a part staged by an earlier run, or None."""
    data, rejected = (unit_path(out, kind, cohort, piece, part) for kind in ("data", "rejected"))
    if not (data.exists() and rejected.exists()):
        return None
    kept = staged_rows(data)
    return CohortReport(kept, kept + staged_rows(rejected), {})


def staged_rows(path: Path) -> int:
    """A staged part's row count, from its record batches' headers: the rows themselves are not read
    (the run checked every staged part when it started)."""
    with pa.memory_map(str(path)) as source:
        reader = pa.ipc.open_file(source)
        return sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))


def write_cohort(out: Path, cohort: int, pieces: list[tuple[int, int]], identity: RunIdentity) -> None:
    """A cohort's shards from the staged parts of its `pieces`, rows in index order (rejected first),
    one row group per block of indices (`shards.index_blocks`; a unit's rows in memory at a time); then every
    staged part of the cohort goes (with any an earlier run cut otherwise)."""
    from weightzoo.output.rows import REJECTED_SCHEMA, SCHEMA

    units = unit_bounds(cohort, identity.cohort_size, identity.unit_size)
    for kind, schema in (("rejected", REJECTED_SCHEMA), ("data", SCHEMA)):

        def by_unit(kind=kind):
            for unit in units:
                tables = [
                    read_staged(unit_path(out, kind, cohort, piece, p))
                    for piece in pieces
                    if piece[0] in unit
                    for p in range(identity.unit_parts)
                ]
                if tables:
                    yield pa.concat_tables(tables).sort_by("example_id")

        about = {"kind": kind, "cohort": cohort}
        blocks = index_blocks(by_unit(), cohort * identity.cohort_size)
        write_shard(cohort_path(out, kind, cohort), schema, blocks, identity, about)
    for kind in ("rejected", "data"):
        for path in (out / UNITS / kind).glob(f"cohort-{cohort:05d}-*.arrow"):
            path.unlink()


def done_report(out: Path, cohort: int) -> CohortReport | None:
    """The report of a cohort already on disk (written by an earlier run), or None."""
    data, rejected = cohort_path(out, "data", cohort), cohort_path(out, "rejected", cohort)
    if not (data.exists() and rejected.exists()):
        return None
    kept = pq.read_metadata(data).num_rows
    return CohortReport(kept, kept + pq.read_metadata(rejected).num_rows, {})


def finish(out: Path, last: int, surplus: int, identity: RunIdentity) -> int | None:
    """Cut the last cohort to the examples up to its last one needed (accepted rows beyond it go, and so
    do rejected rows past it), and remove what was computed beyond: later cohorts, staged units.
    Returns the index of the last example kept (None if the last cohort kept none)."""
    for kind in ("data", "rejected"):
        for path in (out / kind).glob("cohort-*.parquet"):
            if int(path.stem.split("-")[1]) > last:
                path.unlink()
    shutil.rmtree(out / UNITS, ignore_errors=True)
    data_path, rejected_path = cohort_path(out, "data", last), cohort_path(out, "rejected", last)
    ids = pq.read_table(data_path, columns=["example_id"]).column(0).to_pylist()
    if surplus > 0:
        ids = ids[: len(ids) - surplus]
        rewrite_prefix(data_path, len(ids), identity, {"kind": "data", "cohort": last})
    if not ids:
        return None
    last_kept = ids[-1]  # ids ascend
    rejected = pq.read_table(rejected_path, columns=["example_id"]).column(0).to_pylist()
    keep = sum(i <= last_kept for i in rejected)  # ids ascend: a prefix
    if keep < len(rejected):
        rewrite_prefix(rejected_path, keep, identity, {"kind": "rejected", "cohort": last})
    return last_kept


def reason_counts(out: Path, last: int, below: int) -> dict[str, int]:
    """Rejection reasons of the examples with index < `below` (those the dataset's run covers)."""
    counts: dict[str, int] = {}
    for cohort in range(last + 1):
        table = pq.read_table(cohort_path(out, "rejected", cohort), columns=["example_id", "reason"])
        for index, reason in zip(*(column.to_pylist() for column in table.columns), strict=True):
            if index < below:
                counts[reason] = counts.get(reason, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))
