"""The output folder as a guarded store: each case that once mixed, lost or destroyed data, as a test."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_pipeline import (
    COHORT,
    MANY_COHORTS,
    SRC,
    data_gen_command,
    many_cohorts,  # noqa: F401 (a fixture)
    one_worker,  # noqa: F401 (a fixture)
    shard_bytes,
    tiny_config,
    wait_for_a_shard,
)

from weightzoo.cli import main
from weightzoo.data.probe_sets import make_signature_set
from weightzoo.errors import UserError
from weightzoo.output.cohorts import cohort_path
from weightzoo.output.files import write_json_atomic
from weightzoo.output.store import LOCK, MARKER, PINNED_SIGNATURE
from weightzoo.run.pipeline import run_data_gen


def quiet(_line: str) -> None:
    pass


def run(cfg, **kwargs):
    return run_data_gen(cfg, workers=1, log=quiet, cohort_size=COHORT, **kwargs)


def cli(capsys, *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    return code, captured.err


def other_signature(cfg, seed: int = 99) -> dict:
    return make_signature_set(cfg.space, tuple(cfg.dataset.patterns.enabled_patterns), 30, seed)


# --- 1. the signature file re-created while a run goes on ----------------------------------------------


def test_recreating_the_signature_file_mid_run_changes_nothing_in_that_run(many_cohorts, tmp_path):  # noqa: F811
    cfg = tiny_config(tmp_path, **MANY_COHORTS)
    out = cfg.pipeline.output_dir
    original = cfg.signature.dataset_path.read_bytes()
    with data_gen_command(tmp_path) as child:
        wait_for_a_shard(child, out)
        write_json_atomic(cfg.signature.dataset_path, other_signature(cfg))
        assert child.wait(timeout=300) == 0, (tmp_path / "stderr").read_text()
    assert shard_bytes(out) == many_cohorts  # every unit used the probe set read at the start
    assert (out / PINNED_SIGNATURE).read_bytes() == original
    info = json.loads((out / "dataset_info.json").read_text())
    assert info["complete"]
    # ... and a run with the new file refuses the folder rather than mixing two probe sets
    with pytest.raises(UserError, match="signature_hash"):
        run_data_gen(cfg, workers=1, log=quiet)


# --- 2. a deleted or edited manifest cannot mix two configs ---------------------------------------------


def test_a_deleted_manifest_does_not_let_another_config_add_to_the_folder(tmp_path):
    cfg = tiny_config(tmp_path)
    run(cfg)
    out = cfg.pipeline.output_dir
    before = shard_bytes(out)
    (out / "dataset_info.json").unlink()
    other = tiny_config(tmp_path, pipeline={"random_seed": 8})
    with pytest.raises(UserError, match=r"cohort-00000\.parquet was written by another config.*recipe_hash"):
        run(other)
    assert shard_bytes(out) == before
    run(cfg)  # its own config rebuilds the manifest and keeps every byte
    assert shard_bytes(out) == before
    assert json.loads((out / "dataset_info.json").read_text())["complete"]


def test_an_edited_manifest_does_not_let_another_config_add_to_the_folder(tmp_path):
    cfg = tiny_config(tmp_path)
    run(cfg)
    out = cfg.pipeline.output_dir
    other = tiny_config(tmp_path, pipeline={"random_seed": 8})
    info = json.loads((out / "dataset_info.json").read_text())
    info["recipe_hash"] = other.recipe_hash  # as if the manifest were of the other config
    (out / "dataset_info.json").write_text(json.dumps(info))
    with pytest.raises(UserError, match="was written by another config"):
        run(other)


@pytest.mark.parametrize("damage", ["truncated", "not json", "a list"])
def test_a_damaged_manifest_is_rebuilt_from_the_shards(one_worker, tmp_path, damage):  # noqa: F811
    reference, _ = one_worker
    cfg = tiny_config(tmp_path)
    run(cfg)
    out = cfg.pipeline.output_dir
    path = out / "dataset_info.json"
    text = path.read_text()
    path.write_text({"truncated": text[: len(text) // 2], "not json": "{]", "a list": "[1, 2]"}[damage])
    lines = []
    run_data_gen(cfg, workers=1, log=lines.append, cohort_size=COHORT)
    assert any("dataset_info.json is damaged" in line for line in lines), lines
    assert shard_bytes(out) == shard_bytes(reference.pipeline.output_dir)
    assert json.loads(path.read_text())["complete"]


# --- 3. a folder that is not weightzoo's is refused, and nothing of the user's is touched ---------------


def test_a_folder_of_the_users_own_is_refused_and_left_as_it_was(tmp_path, capsys):
    tiny_config(tmp_path, pipeline={"output_dir": "."})
    mine = {"README.md": "# my project\n", "notes.tmp": "keep", ".draft.tmp": "keep too"}
    for name, text in mine.items():
        (tmp_path / name).write_text(text)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    code, err = cli(capsys, "run-data-gen", "--config-path", tmp_path / "config.yaml")
    assert code == 2
    assert (
        err.startswith(f"error: pipeline.output_dir: {tmp_path} is not empty")
        and "not made by weightzoo" in err
    )
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before
    assert not (tmp_path / MARKER).exists() and not (tmp_path / "data").exists()


def test_an_empty_or_new_folder_is_claimed_and_the_users_files_in_it_later_are_kept(tmp_path):
    cfg = tiny_config(tmp_path)
    out = cfg.pipeline.output_dir
    run(cfg)
    assert (out / MARKER).is_file()
    (out / "my-notes.txt").write_text("mine")
    (out / ".scratch.tmp").write_text("mine too")  # not a name weightzoo writes
    (out / "data" / ".cohort-00001.parquet.x1y2.tmp").write_text("left by a killed run")
    run(cfg)
    assert (out / "my-notes.txt").read_text() == "mine" and (out / ".scratch.tmp").read_text() == "mine too"
    assert not (out / "data" / ".cohort-00001.parquet.x1y2.tmp").exists()


def test_the_signature_and_benchmark_files_may_live_in_the_output_folder(tmp_path, capsys):
    """The bundled configs keep both in the output folder: writing them claims it for weightzoo."""
    cfg = tiny_config(tmp_path, signature={"dataset_path": "out/sig.json"})
    shutil.rmtree(cfg.pipeline.output_dir)  # tiny_config wrote the file itself; the commands do it here
    config = tmp_path / "config.yaml"
    assert cli(capsys, "create-sig-dataset", "--config-path", config, "--size", 30)[0] == 0
    assert (
        cli(capsys, "create-benchmark-dataset", "--config-path", config, "--samples-per-pattern", 3)[0] == 0
    )
    assert (cfg.pipeline.output_dir / MARKER).is_file()
    assert cli(capsys, "run-data-gen", "--config-path", config)[0] == 0


@pytest.mark.parametrize(
    "name", ["dataset_info.json", "README.md", "data/x.json", "inputs/signature_dataset.json"]
)
def test_a_probe_file_is_never_written_over_a_file_the_run_manages(tmp_path, capsys, name):
    tiny_config(tmp_path)
    config = tmp_path / "config.yaml"
    code, err = cli(
        capsys, "create-sig-dataset", "--config-path", config, "--filename", tmp_path / "out" / name
    )
    assert code == 2 and "would replace a file the run manages" in err


# --- 4. signature and benchmark files say which kind they are --------------------------------------------


def test_a_benchmark_file_is_never_written_over_the_signature_file(tmp_path, capsys):
    cfg = tiny_config(tmp_path)
    config, sig = tmp_path / "config.yaml", cfg.signature.dataset_path
    before = sig.read_bytes()
    code, err = cli(
        capsys,
        "create-benchmark-dataset",
        "--config-path",
        config,
        "--samples-per-pattern",
        3,
        "--filename",
        sig,
    )
    assert code == 2 and "is a signature file" in err
    assert sig.read_bytes() == before
    copy = tmp_path / "copy.json"
    copy.write_bytes(before)  # the same file under another name: its kind says what it is
    args = (
        "create-benchmark-dataset",
        "--config-path",
        config,
        "--samples-per-pattern",
        3,
        "--filename",
        copy,
    )
    code, err = cli(capsys, *args)
    assert code == 2 and "is a signature file" in err


def test_a_benchmark_file_is_not_accepted_as_the_probe_set_nor_the_other_way(tmp_path, capsys):
    cfg = tiny_config(tmp_path)
    config = tmp_path / "config.yaml"
    bench = tmp_path / "bench.json"
    args = (
        "create-benchmark-dataset",
        "--config-path",
        config,
        "--samples-per-pattern",
        3,
        "--filename",
        bench,
    )
    assert cli(capsys, *args)[0] == 0
    cfg.signature.dataset_path.write_bytes(bench.read_bytes())
    with pytest.raises(UserError, match="sig.json is a benchmark file, not a signature file"):
        run(cfg)
    code, err = cli(capsys, "create-sig-dataset", "--config-path", config, "--filename", bench)
    assert code == 2 and "is a benchmark file" in err


# --- 6. a probe set for other patterns, a tokenizer that does not exist -----------------------------------


def test_a_signature_file_made_for_other_patterns_is_refused(tmp_path):
    cfg = tiny_config(tmp_path)
    space = cfg.space
    write_json_atomic(
        cfg.signature.dataset_path, make_signature_set(space, ("palindrome", "has_majority"), 30, 1)
    )
    with pytest.raises(
        UserError, match="was made for the patterns palindrome, has_majority, but the config enables"
    ):
        run(cfg)
    assert not cfg.pipeline.output_dir.exists()


def test_a_tokenizer_path_that_does_not_exist_is_refused_before_any_work(tmp_path):
    cfg = tiny_config(tmp_path, signature={"prompt_format": {"tokenizer": "no/such/tokenizer.json"}})
    with pytest.raises(
        UserError, match="signature.prompt_format.tokenizer: no/such/tokenizer.json does not exist"
    ):
        run(cfg)
    assert not cfg.pipeline.output_dir.exists()


# --- one writer at a time ----------------------------------------------------------------------------------


def test_a_second_run_on_a_folder_in_use_is_refused_and_the_first_finishes(many_cohorts, tmp_path, capsys):  # noqa: F811
    cfg = tiny_config(tmp_path, **MANY_COHORTS)
    out = cfg.pipeline.output_dir
    with data_gen_command(tmp_path) as child:
        wait_for_a_shard(child, out)
        code, err = cli(capsys, "run-data-gen", "--config-path", tmp_path / "config.yaml")
        assert code == 2 and "is being written by another weightzoo run" in err, err
        assert child.wait(timeout=300) == 0, (tmp_path / "stderr").read_text()
    assert shard_bytes(out) == many_cohorts


def test_a_killed_run_leaves_no_stale_lock(tmp_path):
    cfg = tiny_config(tmp_path, **MANY_COHORTS)
    out = cfg.pipeline.output_dir
    with data_gen_command(tmp_path) as child:
        wait_for_a_shard(child, out)
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
    assert (out / LOCK).exists()
    started = time.monotonic()
    run_data_gen(cfg, workers=1, log=quiet)
    assert json.loads((out / "dataset_info.json").read_text())["complete"]
    assert time.monotonic() - started < 120


# --- shards that vouch for themselves ---------------------------------------------------------------


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def garble(path: Path) -> None:
    """16 bytes flipped near the end of the shard's largest column chunk: in its compressed rows (its
    start is a page header, whose statistics no row depends on)."""
    group = pq.read_metadata(path).row_group(0)
    chunk = max((group.column(i) for i in range(group.num_columns)), key=lambda c: c.total_compressed_size)
    data = bytearray(path.read_bytes())
    middle = chunk.data_page_offset + chunk.total_compressed_size - 32
    data[middle : middle + 16] = bytes(255 - b for b in data[middle : middle + 16])
    path.write_bytes(bytes(data))


def edit_rows(path: Path) -> None:
    """A valid Parquet file with its stamp kept, and one row's text changed."""
    table = pq.read_table(path)
    metadata = pq.read_metadata(path).metadata
    column = table.column("metadata").to_pylist()
    column[0] = column[0].replace("palindrome", "PALINDROME") + " "
    table = table.set_column(table.schema.get_field_index("metadata"), "metadata", pa.array(column))
    table = table.replace_schema_metadata({k: v for k, v in metadata.items() if k != b"ARROW:schema"})
    pq.write_table(table, path)


@pytest.mark.parametrize("damage", [truncate, garble, edit_rows], ids=["truncated", "garbled", "edited"])
def test_a_damaged_shard_is_named_and_repair_regenerates_exactly_it(one_worker, tmp_path, capsys, damage):  # noqa: F811
    reference, _ = one_worker
    expected = shard_bytes(reference.pipeline.output_dir)
    cfg = tiny_config(tmp_path, pipeline={"checkpoint_interval": COHORT})
    config = tmp_path / "config.yaml"
    assert cli(capsys, "run-data-gen", "--config-path", config)[0] == 0
    out = cfg.pipeline.output_dir
    assert shard_bytes(out) == expected
    last = max(int(p.stem.split("-")[1]) for p in out.glob("data/cohort-*.parquet"))
    for cohort in (1, last):  # a whole cohort, and the last one, cut at the Nth accepted example
        damage(cohort_path(out, "data", cohort))
    code, err = cli(capsys, "run-data-gen", "--config-path", config)
    assert code == 2
    assert f"{cohort_path(out, 'data', 1)} is damaged" in err and "--repair" in err
    assert len(err.strip().splitlines()) == 1
    assert not json.loads((out / "dataset_info.json").read_text())["complete"]
    assert cli(capsys, "run-data-gen", "--config-path", config, "--repair")[0] == 0
    assert shard_bytes(out) == expected
    assert json.loads((out / "dataset_info.json").read_text())["complete"]


def test_a_damaged_staged_part_is_trained_again(tmp_path):
    cfg = tiny_config(tmp_path)
    out = cfg.pipeline.output_dir
    script = (
        "import sys; from pathlib import Path; from weightzoo.config import load_config; "
        "import weightzoo.run.pipeline as p; "
        "p.write_cohort = lambda *a: sys.exit(3); "  # stop with the first cohort's parts staged, unwritten
        f"p.run_data_gen(load_config(Path(sys.argv[1])), workers=1, log=lambda _: None, cohort_size={COHORT})"
    )
    env = {**os.environ, "PYTHONPATH": SRC}
    assert (
        subprocess.run([sys.executable, "-c", script, str(tmp_path / "config.yaml")], env=env).returncode == 3
    )
    staged = sorted((out / ".units" / "data").glob("*.arrow"))
    assert staged
    truncate(staged[0])
    lines: list[str] = []
    run_data_gen(cfg, workers=1, log=lines.append, cohort_size=COHORT)
    assert any(f"{staged[0]} is damaged" in line and "trained again" in line for line in lines), lines
    (tmp_path / "fresh").mkdir()
    fresh = tiny_config(tmp_path / "fresh")
    run(fresh)
    assert shard_bytes(out) == shard_bytes(fresh.pipeline.output_dir)


def test_every_shard_carries_its_runs_identity_and_checksum(one_worker):  # noqa: F811
    cfg, _ = one_worker
    out = cfg.pipeline.output_dir
    for path in sorted(out.glob("*/cohort-*.parquet")):
        stamp = json.loads(pq.read_metadata(path).metadata[b"weightzoo"])
        assert stamp["recipe_hash"] == cfg.recipe_hash
        assert (
            stamp["signature_hash"] == json.loads((out / "dataset_info.json").read_text())["signature_hash"]
        )
        assert stamp["kind"] == path.parent.name and stamp["cohort"] == int(path.stem.split("-")[1])
        assert stamp["rows"] == pq.read_metadata(path).num_rows and len(stamp["rows_sha256"]) == 64


def test_the_same_recipe_in_another_folder_writes_the_same_bytes(one_worker, tmp_path):  # noqa: F811
    """The stamp holds the recipe hash, not the paths: a dataset's bytes do not depend on where it is."""
    reference, _ = one_worker
    (tmp_path / "a" / "b").mkdir(parents=True)
    elsewhere = tiny_config(tmp_path / "a" / "b", pipeline={"output_dir": "elsewhere/out"})
    assert elsewhere.config_hash != reference.config_hash and elsewhere.recipe_hash == reference.recipe_hash
    run(elsewhere)
    assert shard_bytes(elsewhere.pipeline.output_dir) == shard_bytes(reference.pipeline.output_dir)
