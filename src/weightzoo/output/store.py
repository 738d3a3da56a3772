"""The output folder as a guarded store: weightzoo's own, one writer at a time, inputs pinned.

A run writes into `pipeline.output_dir` only when the folder is empty (or new) or already marked as
weightzoo's by the file `.weightzoo-output`; a folder holding anything else is refused, so a run
pointed at a home folder or a project (`output_dir: "."`) never replaces a `README.md` or deletes a
`*.tmp` it did not write. Inside its folder weightzoo touches only the names it manages (`MANAGED`),
and removes only its own temporary files (`.<name>.<random>.tmp`, files.py) in its own subfolders.

One writer at a time: a run holds an exclusive lock on `.weightzoo-lock` (`filelock`, an `flock` on
POSIX) for as long as it writes. The kernel releases it when the process ends, however it ends, so a
killed run never leaves a stale lock, and a second run on the same folder is refused with one line
rather than deleting the first one's temporary files.

Pinned inputs: the signature (probe) set is read once, at the start, and its bytes are copied to
`inputs/signature_dataset.json`. Every unit of the run uses that one reading (handed to the workers),
so re-creating the signature file while a run is going cannot mix two probe sets into one dataset, and
the dataset carries the probe set its signatures were taken on.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from weightzoo.errors import UserError
from weightzoo.output.files import write_atomic, write_json_atomic

MARKER = ".weightzoo-output"
LOCK = ".weightzoo-lock"
INFO = "dataset_info.json"
CARD = "README.md"
UNITS = ".units"
PINNED_SIGNATURE = Path("inputs") / "signature_dataset.json"
HUB_RECORD = ".hub_uploaded.json"
MIRROR_RECORD = ".mirror_uploaded.json"  # what went to pipeline.output_url (mirror.py)
BENCHMARK = "benchmark_dataset.json"  # create-benchmark-dataset's default file in the folder
REPORT = "report.html"  # weightzoo inspect's default page

# Top-level names weightzoo writes in its folder (and may replace); subfolders it owns whole.
MANAGED_FILES = (MARKER, LOCK, INFO, CARD, HUB_RECORD, MIRROR_RECORD, BENCHMARK, REPORT)
MANAGED_FOLDERS = ("data", "rejected", UNITS, "inputs")
MARKER_DOCUMENT = {"weightzoo_output": 1, "about": "a dataset folder written by weightzoo; see README.md"}


def is_ours(out: Path) -> bool:
    """Marked as weightzoo's, or written by a weightzoo before the marker existed (its manifest says so)."""
    out = Path(out)
    if (out / MARKER).is_file():
        return True
    try:
        info = json.loads((out / INFO).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and "weightzoo_version" in info


def claim(out: Path, key: str = "pipeline.output_dir") -> Path:
    """Make `out` weightzoo's folder: create it, or accept it when empty or already weightzoo's."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UserError(f"{key}: {out} is a file, not a folder") from None
    except OSError as e:
        raise UserError(f"{key}: cannot create {out}: {e.strerror or e}") from None
    if not out.is_dir():
        raise UserError(f"{key}: {out} is not a folder")
    if (out / MARKER).is_file():
        return out
    try:
        entries = sorted(p.name for p in out.iterdir())
    except OSError as e:
        raise UserError(f"{key}: cannot read {out}: {e.strerror or e}") from None
    if entries and not is_ours(out):
        shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
        raise UserError(
            f"{key}: {out} is not empty ({shown}) and was not made by weightzoo (no {MARKER} file): "
            f"weightzoo writes only into an empty or new folder, or one it made; choose another"
        )
    write_json_atomic(out / MARKER, MARKER_DOCUMENT)
    return out


def managed(out: Path, path: Path) -> bool:
    """Whether `path` is one of the names weightzoo manages inside its folder `out`."""
    try:
        relative = Path(path).resolve().relative_to(Path(out).resolve())
    except ValueError:
        return False
    if not relative.parts:
        return True
    return relative.parts[0] in MANAGED_FOLDERS or (
        len(relative.parts) == 1 and relative.name in MANAGED_FILES
    )


def prepare_target(path: Path, out: Path, role: str, allowed: tuple[str, ...] = ()) -> None:
    """Before create-sig-dataset or create-benchmark-dataset writes `path`: a file inside the output
    folder claims that folder for weightzoo (so the run accepts it), and never lands on a name the
    run manages (`allowed` names the one it may: the benchmark file's default)."""
    path, out = Path(path).resolve(), Path(out).resolve()
    if path.is_dir():
        raise UserError(f"{role} file {path} is a folder")
    inside = out == path.parent or out in path.parents
    if not inside:
        return
    if managed(out, path) and path.name not in allowed:
        raise UserError(
            f"{role} file {path} would replace a file the run manages in its output folder {out}; "
            "choose another name"
        )
    claim(out)


@contextmanager
def single_writer(out: Path) -> Iterator[None]:
    """Hold the folder's lock while the body runs; refuse at once if another process holds it."""
    from filelock import FileLock, Timeout

    path = Path(out) / LOCK
    lock = FileLock(str(path), timeout=0, thread_local=False)
    try:
        lock.acquire()
    except Timeout:
        raise UserError(
            f"{out} is being written by another weightzoo run (it holds {path}); "
            "wait for it to finish, or use another pipeline.output_dir"
        ) from None
    except OSError as e:
        raise UserError(f"pipeline.output_dir: cannot lock {path}: {e.strerror or e}") from None
    try:
        yield
    finally:
        lock.release()


def stale_temporaries(out: Path) -> list[Path]:
    """Temporary files a killed run of weightzoo left in its folder: its own names only."""
    out = Path(out)
    found = [p for name in MANAGED_FILES for p in out.glob(f".{name}.*.tmp")]
    for folder in ("data", "rejected", f"{UNITS}/data", f"{UNITS}/rejected", "inputs"):
        found += (out / folder).glob(".*.tmp")
    return sorted(p for p in found if p.is_file())


def pin_signature_file(out: Path, source: Path, raw: bytes) -> Path:
    """Copy the signature file's bytes, as read once, into the output folder; returns the copy."""
    pinned = Path(out) / PINNED_SIGNATURE
    if not (pinned.is_file() and pinned.read_bytes() == raw):
        write_atomic(pinned, lambda tmp: tmp.write_bytes(raw))
    return pinned


def read_manifest(out: Path, finished: bool = False) -> dict:
    """A dataset folder's `dataset_info.json`; `finished`: the run must have completed (the commands
    that read a dataset need every shard in place)."""
    path = Path(out) / INFO
    if Path(out).exists() and not Path(out).is_dir():
        raise UserError(f"{out} is a file, not a weightzoo output folder")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{out} holds no {INFO}: not a weightzoo output folder") from None
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read {path}: {e}") from None
    if not isinstance(info, dict):
        raise UserError(f"cannot read {path}: not a JSON object")
    if finished and not info.get("complete"):
        raise UserError(f"{out}: the run is not complete; finish it (run-data-gen) first")
    return info


def new_folder(target: Path, key: str = "--to") -> Path:
    """A folder made for a derived dataset (render, split): new or empty, then marked as weightzoo's."""
    target = Path(target)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise UserError(f"{key}: {target} exists and is not an empty folder; a new folder is written")
    target.mkdir(parents=True, exist_ok=True)
    write_json_atomic(target / MARKER, MARKER_DOCUMENT)
    return target
