"""Upload a run's output folder to a Hugging Face dataset repo, resumably, without leaking the token.

`HubUploader(repo_id, token, private)` creates the dataset repo, uploads each shard to its path relative
to the output folder (`data/cohort-00000.parquet`), and at the end the card (`README.md`) and
`dataset_info.json`. What was uploaded is remembered in `out/.hub_uploaded.json` (repo id and, per file,
its sha256), so a resumed run uploads only files that are new or changed.

The token is a secret: it is handed to the hub client only, never written to a file (the record holds
the repo id and hashes; `dataset_info.json` holds the config without `hub.token`) and never logged. An
error from the hub client can quote request headers or URLs; its message is scrubbed of the token before
it is re-raised as a `UserError`, and the original exception is dropped (`from None`) so no traceback
carries it either.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from weightzoo.errors import UserError
from weightzoo.output.files import sha256_file, write_json_atomic
from weightzoo.output.store import CARD, INFO, PINNED_SIGNATURE

RECORD = ".hub_uploaded.json"
FINAL_FILES = (PINNED_SIGNATURE.as_posix(), CARD, INFO)  # the probe set, the card, the manifest
# Anything that looks like a Hugging Face access token is scrubbed too, not only the one we hold.
_TOKEN_LIKE = re.compile(r"hf_[A-Za-z0-9]{16,}")


def resolve_token(cfg) -> str | None:
    """The token to upload with: `hub.token` from the config, else the HF_TOKEN environment variable."""
    token = cfg.hub.token or os.environ.get("HF_TOKEN")
    return token or None


def scrub(text: str, token: str | None) -> str:
    """`text` with the token (and anything shaped like a HF token) replaced by ***."""
    if token:
        text = text.replace(token, "***")
    return _TOKEN_LIKE.sub("***", text)


class HubUploader:
    """Uploads one output folder's files to the dataset repo `repo_id`."""

    def __init__(
        self,
        repo_id: str,
        token: str | None,
        private: bool = False,
        api: Any = None,
        log: Callable[[str], None] = print,
    ):
        self.repo_id = repo_id
        self.private = private
        self._token = token
        self._log = log
        if api is None:
            try:
                from huggingface_hub import HfApi
            except ImportError:
                raise UserError(
                    "uploading to the Hub needs the huggingface_hub package: pip install huggingface_hub"
                ) from None
            api = HfApi(token=token)
        self.api = api

    def __repr__(self) -> str:  # never the token
        return f"HubUploader(repo_id={self.repo_id!r}, private={self.private})"

    # -- the hub client, with errors scrubbed --------------------------------------------------------

    def _call(self, what: str, fn: Callable, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as e:  # any client error: its text may quote the token
            message = scrub(f"{what}: {type(e).__name__}: {e}", self._token)
            raise UserError(f"hub upload to {self.repo_id} failed: {message}") from None

    # -- the record of what was uploaded -------------------------------------------------------------

    def _load_record(self, out: Path) -> dict[str, str]:
        try:
            record = json.loads((Path(out) / RECORD).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(record, dict) or record.get("repo_id") != self.repo_id:
            return {}  # another repo (or a damaged record): everything is new there
        files = record.get("files")
        return dict(files) if isinstance(files, dict) else {}

    def _save_record(self, out: Path, files: dict[str, str]) -> None:
        path = Path(out) / RECORD
        write_json_atomic(path, {"repo_id": self.repo_id, "files": dict(sorted(files.items()))})

    def uploaded(self, out: Path) -> dict[str, str]:
        """Files recorded as uploaded from `out` to this repo: path in repo → sha256."""
        return self._load_record(out)

    # -- uploads -------------------------------------------------------------------------------------

    def create(self) -> None:
        """Create the dataset repo (nothing happens when it exists)."""
        self._call(
            "create repo",
            self.api.create_repo,
            repo_id=self.repo_id,
            repo_type="dataset",
            private=self.private,
            exist_ok=True,
        )
        self._log(f"hub: dataset repo {self.repo_id} ready")

    def upload_shard(self, path: Path, out: Path) -> bool:
        """Upload one file of `out` to its path relative to `out`; False when already uploaded as is."""
        path, out = Path(path), Path(out)
        try:
            in_repo = path.resolve().relative_to(out.resolve()).as_posix()
        except ValueError:
            raise UserError(f"{path} is not inside the output folder {out}") from None
        if in_repo == RECORD or Path(in_repo).name.startswith("."):
            raise UserError(f"{in_repo} is not a dataset file; refusing to upload it")
        try:
            digest = sha256_file(path)
        except OSError as e:
            raise UserError(f"cannot read {path}: {e.strerror or e}") from None
        files = self._load_record(out)
        if files.get(in_repo) == digest:
            return False
        self._call(
            f"upload {in_repo}",
            self.api.upload_file,
            path_or_fileobj=str(path),
            path_in_repo=in_repo,
            repo_id=self.repo_id,
            repo_type="dataset",
            commit_message=f"Upload {in_repo}",
        )
        files[in_repo] = digest
        self._save_record(out, files)
        self._log(f"hub: uploaded {in_repo} to {self.repo_id}")
        return True

    def upload_card(self, out: Path, write: bool = True) -> list[str]:
        """Upload README.md (written first from the folder when `write`) and dataset_info.json.

        Returns the paths uploaded (those unchanged since the last upload are skipped)."""
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
        """Delete from the repo recorded files that no longer exist in `out` (cohorts cut by the run)."""
        out = Path(out)
        files = self._load_record(out)
        gone = sorted(p for p in files if not (out / p).exists())
        for in_repo in gone:
            self._call(
                f"delete {in_repo}",
                self.api.delete_file,
                path_in_repo=in_repo,
                repo_id=self.repo_id,
                repo_type="dataset",
                commit_message=f"Delete {in_repo}",
            )
            del files[in_repo]
            self._save_record(out, files)
            self._log(f"hub: deleted {in_repo} from {self.repo_id}")
        return gone

    def sync(self, out: Path, include_rejected: bool = True) -> list[str]:
        """The whole folder: create the repo, upload new or changed shards, drop stale ones, then the card.

        Returns the paths uploaded."""
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
