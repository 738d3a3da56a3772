"""Hub upload, up to the network boundary: a fake client records the calls; the token never leaks."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from weightzoo.config import parse_config
from weightzoo.errors import UserError
from weightzoo.output.hub import RECORD, HubUploader, resolve_token, scrub
from weightzoo.output.rows import REJECTED_SCHEMA, SCHEMA

TOKEN = "hf_SeCrEtToKeN0123456789abcdefXYZ"
REPO = "someone/weightzoo-test"


class FakeApi:
    """Records every call; `fail` makes a method raise an error quoting the token, as a client could."""

    def __init__(self, fail: str | None = None):
        self.calls: list[tuple[str, dict]] = []
        self.fail = fail

    def _record(self, name: str, kwargs: dict):
        if name == self.fail:
            raise RuntimeError(
                f"401 Unauthorized for url https://huggingface.co (Authorization: Bearer {TOKEN})"
            )
        self.calls.append((name, kwargs))

    def create_repo(self, **kwargs):
        self._record("create_repo", kwargs)

    def upload_file(self, **kwargs):
        self._record("upload_file", kwargs)

    def delete_file(self, **kwargs):
        self._record("delete_file", kwargs)

    def uploaded(self) -> list[str]:
        return [kw["path_in_repo"] for name, kw in self.calls if name == "upload_file"]


def shard(out: Path, kind: str, k: int, n: int) -> Path:
    path = out / kind / f"cohort-{k:05d}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "data":
        rows = [
            {
                **dict.fromkeys(SCHEMA.names),
                "example_id": k * 10 + i,
                "metadata": json.dumps({"target_pattern": "palindrome", "accuracy": {}}),
                "modification_text": "x" * (i + 1),
            }
            for i in range(n)
        ]
        table = pa.Table.from_pylist(rows, schema=SCHEMA)
    else:
        rows = [
            {**dict.fromkeys(REJECTED_SCHEMA.names), "example_id": k * 10 + i, "reason": "no_gain"}
            for i in range(n)
        ]
        table = pa.Table.from_pylist(rows, schema=REJECTED_SCHEMA)
    pq.write_table(table, path)
    return path


def make_output(out: Path) -> Path:
    shard(out, "data", 0, 2)
    shard(out, "rejected", 0, 1)
    info = {"weightzoo_version": "0.1.0", "config_hash": "c" * 64, "config": {}, "complete": True}
    (out / "dataset_info.json").write_text(json.dumps(info))
    return out


def test_create_makes_a_dataset_repo():
    api = FakeApi()
    HubUploader(REPO, TOKEN, private=True, api=api, log=lambda _: None).create()
    assert api.calls == [
        ("create_repo", {"repo_id": REPO, "repo_type": "dataset", "private": True, "exist_ok": True})
    ]


def test_shards_go_to_their_paths_in_the_repo(tmp_path):
    out = make_output(tmp_path / "out")
    api = FakeApi()
    up = HubUploader(REPO, TOKEN, private=False, api=api, log=lambda _: None)
    assert up.upload_shard(out / "data" / "cohort-00000.parquet", out)
    ((name, kwargs),) = api.calls
    assert name == "upload_file"
    assert kwargs["path_in_repo"] == "data/cohort-00000.parquet"
    assert kwargs["repo_type"] == "dataset"
    assert kwargs["repo_id"] == REPO
    assert Path(kwargs["path_or_fileobj"]) == out / "data" / "cohort-00000.parquet"


def test_card_and_info_are_uploaded_at_the_end(tmp_path):
    out = make_output(tmp_path / "out")
    api = FakeApi()
    HubUploader(REPO, TOKEN, api=api, log=lambda _: None).sync(out)
    assert api.calls[0][0] == "create_repo"
    assert api.uploaded() == [
        "data/cohort-00000.parquet",
        "rejected/cohort-00000.parquet",
        "README.md",
        "dataset_info.json",
    ]
    assert (out / "README.md").exists()


def test_a_resumed_run_uploads_only_what_is_new_or_changed(tmp_path):
    out = make_output(tmp_path / "out")
    HubUploader(REPO, TOKEN, api=FakeApi(), log=lambda _: None).sync(out)
    shard(out, "data", 1, 3)
    shard(out, "rejected", 1, 1)
    shard(out, "data", 0, 1)  # cut to size at the end of the run: changed

    api = FakeApi()
    HubUploader(REPO, TOKEN, api=api, log=lambda _: None).sync(out)
    # README.md changes with the counts; dataset_info.json did not change
    assert sorted(api.uploaded()) == sorted(
        [
            "data/cohort-00000.parquet",
            "data/cohort-00001.parquet",
            "rejected/cohort-00001.parquet",
            "README.md",
        ]
    )

    again = FakeApi()
    HubUploader(REPO, TOKEN, api=again, log=lambda _: None).sync(out)
    assert again.uploaded() == []


def test_another_repo_starts_fresh(tmp_path):
    out = make_output(tmp_path / "out")
    HubUploader(REPO, TOKEN, api=FakeApi(), log=lambda _: None).sync(out)
    api = FakeApi()
    HubUploader("someone/other", TOKEN, api=api, log=lambda _: None).sync(out)
    assert len(api.uploaded()) == 4


def test_files_gone_from_the_folder_are_deleted_from_the_repo(tmp_path):
    out = make_output(tmp_path / "out")
    extra = shard(out, "data", 1, 1)
    HubUploader(REPO, TOKEN, api=FakeApi(), log=lambda _: None).sync(out)
    extra.unlink()
    api = FakeApi()
    HubUploader(REPO, TOKEN, api=api, log=lambda _: None).sync(out)
    assert (
        "delete_file",
        {
            "path_in_repo": "data/cohort-00001.parquet",
            "repo_id": REPO,
            "repo_type": "dataset",
            "commit_message": "Delete data/cohort-00001.parquet",
        },
    ) in api.calls
    assert "data/cohort-00001.parquet" not in json.loads((out / RECORD).read_text())["files"]


def test_the_record_and_hidden_files_are_never_uploaded(tmp_path):
    out = make_output(tmp_path / "out")
    up = HubUploader(REPO, TOKEN, api=FakeApi(), log=lambda _: None)
    up.sync(out)
    with pytest.raises(UserError, match="not a dataset file"):
        up.upload_shard(out / RECORD, out)
    with pytest.raises(UserError, match="not inside"):
        up.upload_shard(tmp_path / "elsewhere.parquet", out)


def test_token_from_config_else_environment(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_fromTheEnvironment0123456789")
    assert resolve_token(parse_config({})) == "hf_fromTheEnvironment0123456789"
    assert resolve_token(parse_config({"hub": {"token": TOKEN}})) == TOKEN
    monkeypatch.delenv("HF_TOKEN")
    assert resolve_token(parse_config({})) is None
    monkeypatch.setenv("HF_TOKEN", "")
    assert resolve_token(parse_config({})) is None


@pytest.mark.parametrize("failing", ["create_repo", "upload_file"])
def test_a_client_error_is_scrubbed_of_the_token(tmp_path, failing):
    out = make_output(tmp_path / "out")
    up = HubUploader(REPO, TOKEN, api=FakeApi(fail=failing), log=lambda _: None)
    with pytest.raises(UserError) as caught:
        up.sync(out)
    message = str(caught.value)
    assert message.startswith(f"hub upload to {REPO} failed: ")
    assert "***" in message and "401" in message
    assert TOKEN not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert TOKEN not in repr(up)


def test_scrub_also_hides_other_token_shaped_strings():
    assert scrub("a hf_abcdefghijklmnopqrstuvwxyz b", None) == "a *** b"
    assert scrub("key=sekrit!", "sekrit!") == "key=***"


def test_the_token_is_in_no_file_and_no_log_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    out = make_output(tmp_path / "out")
    cfg = parse_config({"hub": {"dataset_name": REPO}})
    token = resolve_token(cfg)
    assert token == TOKEN
    lines: list[str] = []
    up = HubUploader(cfg.hub.dataset_name, token, cfg.hub.private, api=FakeApi(), log=lines.append)
    up.sync(out)
    shard(out, "data", 1, 1)
    with pytest.raises(UserError):
        HubUploader(REPO, token, api=FakeApi(fail="upload_file"), log=lines.append).sync(out)
    assert lines and all(TOKEN not in line for line in lines)
    assert any(REPO in line for line in lines)
    files = [p for p in out.rglob("*") if p.is_file()]
    assert RECORD in {p.name for p in files}
    for path in files:
        assert TOKEN.encode() not in path.read_bytes(), path


def test_the_real_client_is_built_without_network(tmp_path):
    pytest.importorskip("huggingface_hub")
    from huggingface_hub import HfApi

    up = HubUploader(REPO, TOKEN, private=True)
    assert isinstance(up.api, HfApi)
    assert up.api.token == TOKEN
    assert TOKEN not in repr(up)
