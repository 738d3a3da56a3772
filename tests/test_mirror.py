"""A copy of the dataset at an fsspec URL (`pipeline.output_url`), kept in step with the output folder."""

from __future__ import annotations

import uuid
from pathlib import Path

import fsspec
import pytest
from test_pipeline import COHORT, tiny_config

from weightzoo.errors import UserError
from weightzoo.output.mirror import FsspecMirror
from weightzoo.run.pipeline import run_data_gen


def _published(out: Path) -> dict[str, bytes]:
    """The files a mirror should hold: the dataset's, not the working folder's own (dot files, staging)."""
    return {
        p.relative_to(out).as_posix(): p.read_bytes()
        for p in out.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(out).parts)
    }


def _mirrored(url: str) -> dict[str, bytes]:
    fs, root = fsspec.core.url_to_fs(url)
    root = root.rstrip("/")
    return {path[len(root) + 1 :]: fs.cat_file(path) for path in fs.find(root)}


@pytest.mark.parametrize("scheme", ["memory", "file"])
def test_a_run_publishes_every_dataset_file_byte_for_byte(tmp_path, scheme):
    url = f"memory://zoo-{uuid.uuid4().hex}" if scheme == "memory" else (tmp_path / "published").as_uri()
    cfg = tiny_config(tmp_path, pipeline={"output_url": url})
    lines: list[str] = []
    run_data_gen(cfg, workers=1, log=lines.append, cohort_size=COHORT)
    local = _published(cfg.pipeline.output_dir)
    assert {"README.md", "dataset_info.json", "inputs/signature_dataset.json"} <= set(local)
    assert any(name.startswith("data/cohort-") for name in local)
    assert _mirrored(url) == local  # no temporary file left, no lock, no staged unit
    assert any(line.startswith(f"mirror {url}: uploaded data/") for line in lines)


def test_a_second_sync_copies_nothing_and_cut_shards_are_removed(tmp_path):
    url = f"memory://zoo-{uuid.uuid4().hex}"
    cfg = tiny_config(tmp_path, pipeline={"output_url": url})
    run_data_gen(cfg, workers=1, log=lambda _: None, cohort_size=COHORT)
    out = cfg.pipeline.output_dir
    mirror = FsspecMirror(url, log=lambda _: None)
    assert mirror.sync(out) == []  # everything recorded as copied, unchanged
    last = sorted((out / "data").glob("cohort-*.parquet"))[-1]
    last.unlink()  # as a run that cuts its last cohort does
    mirror.sync(out)
    assert _mirrored(url) == _published(out)


def test_the_record_is_kept_per_url(tmp_path):
    cfg = tiny_config(tmp_path, pipeline={"output_url": f"memory://zoo-{uuid.uuid4().hex}"})
    run_data_gen(cfg, workers=1, log=lambda _: None, cohort_size=COHORT)
    other = f"memory://zoo-{uuid.uuid4().hex}"
    copied = FsspecMirror(other, log=lambda _: None).sync(cfg.pipeline.output_dir)
    assert "dataset_info.json" in copied  # a record for another URL counts for nothing
    assert _mirrored(other) == _published(cfg.pipeline.output_dir)


def test_a_url_with_no_filesystem_is_one_line_naming_the_key(tmp_path):
    with pytest.raises(UserError, match=r"^pipeline\.output_url: nosuch://x") as e:
        FsspecMirror("nosuch://x")
    assert "\n" not in str(e.value)


def test_a_store_that_fails_is_one_line_and_the_local_folder_is_kept(tmp_path, monkeypatch):
    url = f"memory://zoo-{uuid.uuid4().hex}"
    cfg = tiny_config(tmp_path, pipeline={"output_url": url})

    def refuse(self, *args, **kwargs):
        raise PermissionError("access denied")

    monkeypatch.setattr(fsspec.implementations.memory.MemoryFileSystem, "put_file", refuse)
    with pytest.raises(
        UserError, match=r"pipeline\.output_url: copying (data|rejected)/cohort-00000.parquet .*run again"
    ):
        run_data_gen(cfg, workers=1, log=lambda _: None, cohort_size=COHORT)
    assert (cfg.pipeline.output_dir / "data" / "cohort-00000.parquet").exists()
    monkeypatch.undo()
    run_data_gen(cfg, workers=1, log=lambda _: None, cohort_size=COHORT)  # resumes, then publishes
    assert _mirrored(url) == _published(cfg.pipeline.output_dir)


def test_only_a_local_file_system_is_written_by_rename():
    assert FsspecMirror("file:///tmp/zoo").renames
    assert not FsspecMirror(f"memory://zoo-{uuid.uuid4().hex}").renames
