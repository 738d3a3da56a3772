"""Copies of an output folder elsewhere, kept in step with it as the run writes: the shared logic of
the Hub upload (`hub.py`) and of a mirror at any fsspec URL (`FsspecMirror`).

A mirror gets each cohort's shards once they are written, and at the end of the run the shards as cut,
the removal of shards the run no longer wants, then the pinned probe set, the card and the manifest
(`dataset_info.json`), last. What was copied is remembered in a record file in the output folder (the
target and, per file, its sha256), so a resumed run copies only files that are new or changed, and a
record for another target counts for nothing.

The working folder stays local: the lock, the staged units and the checks of a resumed run need a
file system with renames and locks, which object stores do not have. The mirror is where the dataset
is published.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from weightzoo.errors import UserError, shorten
from weightzoo.output.files import sha256_file, write_json_atomic
from weightzoo.output.store import CARD, INFO, MIRROR_RECORD, PINNED_SIGNATURE

FINAL_FILES = (PINNED_SIGNATURE.as_posix(), CARD, INFO)  # the probe set, the card, the manifest (last)


class Mirror:
    """What every mirror shares: the record, which files go when, and stale ones removed. A subclass
    says how one file is put and deleted (`_put`, `_delete`), and names its target and record file."""

    record_name = MIRROR_RECORD
    target = ""  # what the record is for: a repo id, a URL
    target_key = "target"

    def __init__(self, log: Callable[[str], None] = print):
        self._log = log

    def create(self) -> None:
        """Make the target ready (nothing happens when it exists)."""

    def _put(self, path: Path, name: str) -> None:
        raise NotImplementedError

    def _delete(self, name: str) -> None:
        raise NotImplementedError

    # -- the record of what was copied ---------------------------------------------------------------

    def _load_record(self, out: Path) -> dict[str, str]:
        try:
            record = json.loads((Path(out) / self.record_name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(record, dict) or record.get(self.target_key) != self.target:
            return {}  # another target (or a damaged record): everything is new there
        files = record.get("files")
        return dict(files) if isinstance(files, dict) else {}

    def _save_record(self, out: Path, files: dict[str, str]) -> None:
        document = {self.target_key: self.target, "files": dict(sorted(files.items()))}
        write_json_atomic(Path(out) / self.record_name, document)

    def uploaded(self, out: Path) -> dict[str, str]:
        """Files recorded as copied from `out` to this target: path → sha256."""
        return self._load_record(out)

    # -- copies --------------------------------------------------------------------------------------

    def upload_shard(self, path: Path, out: Path) -> bool:
        """Copy one file of `out` to its path relative to `out`; False when already copied as is."""
        path, out = Path(path), Path(out)
        try:
            name = path.resolve().relative_to(out.resolve()).as_posix()
        except ValueError:
            raise UserError(f"{path} is not inside the output folder {out}") from None
        if Path(name).name.startswith("."):
            raise UserError(f"{name} is not a dataset file; refusing to upload it")
        try:
            digest = sha256_file(path)
        except OSError as e:
            raise UserError(f"cannot read {path}: {e.strerror or e}") from None
        files = self._load_record(out)
        if files.get(name) == digest:
            return False
        self._put(path, name)
        files[name] = digest
        self._save_record(out, files)
        self._log(f"{self.describe()}: uploaded {name}")
        return True

    def upload_card(self, out: Path, write: bool = True) -> list[str]:
        """Copy README.md (written first from the folder when `write`), then dataset_info.json.

        Returns the paths copied (those unchanged since the last copy are skipped)."""
        out = Path(out)
        if write:
            from weightzoo.output.card import write_card

            write_card(out)
        done = []
        for name in FINAL_FILES:
            path = out / name
            if path.exists() and self.upload_shard(path, out):
                done.append(name)
        return done

    def remove_stale(self, out: Path) -> list[str]:
        """Delete from the target recorded files that no longer exist in `out` (cohorts cut by the run)."""
        out = Path(out)
        files = self._load_record(out)
        gone = sorted(p for p in files if not (out / p).exists())
        for name in gone:
            self._delete(name)
            del files[name]
            self._save_record(out, files)
            self._log(f"{self.describe()}: deleted {name}")
        return gone

    def sync(self, out: Path, include_rejected: bool = True) -> list[str]:
        """The whole folder: new or changed shards, stale ones removed, then the card and the manifest.

        Returns the paths copied."""
        out = Path(out)
        self.create()
        kinds = ("data", "rejected") if include_rejected else ("data",)
        done = []
        for kind in kinds:
            for path in sorted((out / kind).glob("cohort-*.parquet")):
                if self.upload_shard(path, out):
                    done.append(path.relative_to(out).as_posix())
        self.remove_stale(out)
        done += self.upload_card(out)
        return done

    def describe(self) -> str:
        return self.target


# File systems where a file written under a temporary name and then renamed appears whole, at once.
RENAMING = {"file", "local"}


class FsspecMirror(Mirror):
    """The output folder's files at an fsspec URL (`pipeline.output_url`): `s3://bucket/zoo`,
    `gs://...`, `memory://...`, a local `file://` path, any store with an fsspec filesystem installed.

    What a copy guarantees depends on the store, and is what the store guarantees: on a local file
    system a file is written under a temporary name and renamed, so it appears whole or not at all;
    object stores (S3, GCS, Azure) make an object visible only once it is completely written. On a
    store with neither (FTP, SFTP, WebDAV), a reader can see a file while it is being copied; the
    manifest goes last, so a reader that waits for `dataset_info.json` with `"complete": true` reads
    only finished files.
    """

    record_name = MIRROR_RECORD
    target_key = "url"

    def __init__(self, url: str, log: Callable[[str], None] = print, storage_options: dict | None = None):
        super().__init__(log)
        self.target = url
        key = "pipeline.output_url"
        try:
            import fsspec

            self.fs, self.root = fsspec.core.url_to_fs(url, **(storage_options or {}))
        except ImportError as e:
            raise UserError(
                f"{key}: {shorten(url, 80)} needs the package {e.name!r}: pip install it"
            ) from None
        except (ValueError, TypeError) as e:
            raise UserError(
                f"{key}: {shorten(url, 80)} is not a URL fsspec can open: {shorten(e, 160)}"
            ) from None
        self.root = self.root.rstrip("/")
        protocols = self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,)
        self.renames = bool(RENAMING & set(protocols))

    def _call(self, what: str, fn, *args):
        try:
            return fn(*args)
        except Exception as e:  # the store's client: a network, permission or quota error
            raise UserError(
                f"pipeline.output_url: {what} at {shorten(self.target, 80)} failed: "
                f"{type(e).__name__}: {shorten(e, 200)}; what is written locally is kept: run again to resume"
            ) from None

    def create(self) -> None:
        self._call("creating the folder", self.fs.makedirs, self.root, True)

    def _put(self, path: Path, name: str) -> None:
        dest = f"{self.root}/{name}"
        parent = dest.rsplit("/", 1)[0]
        self._call(f"creating {name}'s folder", self.fs.makedirs, parent, True)
        if self.renames:
            temporary = f"{parent}/.{name.rsplit('/', 1)[-1]}.{os.getpid()}.tmp"
            self._call(f"copying {name}", self.fs.put_file, str(path), temporary)
            self._call(f"renaming {name}", self.fs.mv, temporary, dest)
        else:
            self._call(f"copying {name}", self.fs.put_file, str(path), dest)

    def _delete(self, name: str) -> None:
        dest = f"{self.root}/{name}"
        if self._call(f"looking for {name}", self.fs.exists, dest):
            self._call(f"deleting {name}", self.fs.rm_file, dest)

    def describe(self) -> str:
        return f"mirror {self.target}"
