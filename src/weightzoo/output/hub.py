"""Upload a run's output folder to a Hugging Face dataset repo, resumably, without leaking the token.

`HubUploader(repo_id, token, private)` creates the dataset repo, uploads each shard to its path relative
to the output folder (`data/cohort-00000.parquet`), and at the end the card (`README.md`) and
`dataset_info.json`. It is a `Mirror` (`mirror.py`): what was uploaded is remembered in
`out/.hub_uploaded.json` (repo id and, per file, its sha256), so a resumed run uploads only files that
are new or changed.

The token is a secret: it is handed to the hub client only, never written to a file (the record holds
the repo id and hashes; `dataset_info.json` holds the config without `hub.token`) and never logged. An
error from the hub client can quote request headers or URLs; its message is scrubbed of the token before
it is re-raised as a `UserError`, and the original exception is dropped (`from None`) so no traceback
carries it either.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from weightzoo.errors import UserError
from weightzoo.output.mirror import Mirror
from weightzoo.output.store import HUB_RECORD

RECORD = HUB_RECORD
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


class HubUploader(Mirror):
    """Uploads one output folder's files to the dataset repo `repo_id`."""

    record_name = RECORD
    target_key = "repo_id"

    def __init__(
        self,
        repo_id: str,
        token: str | None,
        private: bool = False,
        api: Any = None,
        log: Callable[[str], None] = print,
    ):
        super().__init__(log)
        self.repo_id = self.target = repo_id
        self.private = private
        self._token = token
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

    def describe(self) -> str:
        return f"hub {self.repo_id}"

    # -- the hub client, with errors scrubbed --------------------------------------------------------

    def _call(self, what: str, fn: Callable, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as e:  # any client error: its text may quote the token
            message = scrub(f"{what}: {type(e).__name__}: {e}", self._token)
            raise UserError(f"hub upload to {self.repo_id} failed: {message}") from None

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

    def _put(self, path: Path, name: str) -> None:
        self._call(
            f"upload {name}",
            self.api.upload_file,
            path_or_fileobj=str(path),
            path_in_repo=name,
            repo_id=self.repo_id,
            repo_type="dataset",
            commit_message=f"Upload {name}",
        )

    def _delete(self, name: str) -> None:
        self._call(
            f"delete {name}",
            self.api.delete_file,
            path_in_repo=name,
            repo_id=self.repo_id,
            repo_type="dataset",
            commit_message=f"Delete {name}",
        )
