"""run-data-gen end to end on a tiny config: shards, determinism across workers, resume, mismatch."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from weightzoo.cli import main
from weightzoo.config import parse_config
from weightzoo.data.probe_sets import make_signature_set
from weightzoo.engine import stack_key
from weightzoo.engine.model import ModelSpec, build_model
from weightzoo.errors import UserError
from weightzoo.output.cohorts import cohort_path, unit_bounds
from weightzoo.output.files import write_json_atomic
from weightzoo.output.rows import SCHEMA
from weightzoo.plan.examples import example_spec
from weightzoo.run import scheduling
from weightzoo.run.pipeline import run_data_gen, run_unit
from weightzoo.run.scheduling import SPLIT_AFTER, SPLIT_LEAST_REST, Tally, piece_end, unit_parts
from weightzoo.text import parse_weights

SEED_CONFIG = Path(__file__).resolve().parents[1] / "configs/seed_example.yaml"
COHORT = 8
SRC = str(Path(__file__).resolve().parents[1] / "src")


SEED_CFG = parse_config(yaml.safe_load(SEED_CONFIG.read_text()))


def tiny_raw(folder: Path) -> dict:
    raw = yaml.safe_load(SEED_CONFIG.read_text())
    raw["signature"]["dataset_path"] = "sig.json"
    raw["model"].update(
        vocab_size=5,
        sequence_length=4,
        num_layers={"min": 1, "max": 2},
        neurons_per_layer={"min": 4, "max": 8},
        learning_rate={"min": 0.005, "max": 0.02},
    )
    raw["dataset"]["output_dataset_length"] = 14
    raw["dataset"]["patterns"].update(
        enabled_patterns=["palindrome", "sorted_ascending", "first_last_match", "has_majority"],
        min_patterns_per_batch=2,
        max_patterns_per_batch=2,
        target_total_examples=120,
        pool_size=200,
    )
    raw["training"].update(epochs=5, min_degradation_threshold=0.0)
    raw["staged_training"].update(max_degraded_epochs=4, improvement_epochs=3, corruption_rate=1.0)
    # Loose rules, so that most examples pass and the tiny run stays short.
    raw["validation"].update(
        min_pattern_improvement=0.0,
        max_other_degradation=1.0,
        test_set_size=10,
        min_pattern_accuracy=0.0,
        min_negative_accuracy=0.0,
    )
    raw["pipeline"].update(output_dir="out", max_threads=1, num_workers=1)
    raw["metrics"]["tensorboard"]["auto_launch"] = False
    raw["task_generation"]["include_classification"] = True
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return raw


def tiny_config(folder: Path, **changes):
    raw = tiny_raw(folder)
    for section, values in changes.items():
        raw[section].update(values)
    (folder / "config.yaml").write_text(yaml.safe_dump(raw))  # the file says what the returned config says
    cfg = parse_config(raw, source=str(folder / "config.yaml"), base_dir=folder)
    enabled = tuple(cfg.dataset.patterns.enabled_patterns)
    write_json_atomic(cfg.signature.dataset_path, make_signature_set(cfg.space, enabled, 30, 1))
    return cfg


def shard_bytes(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.glob("*/cohort-*.parquet"))}


@pytest.fixture(scope="module")
def one_worker(tmp_path_factory):
    folder = tmp_path_factory.mktemp("one")
    cfg = tiny_config(folder)
    summary = run_data_gen(cfg, workers=1, log=lambda _: None, cohort_size=COHORT)
    return cfg, summary


def test_the_run_reports_its_time_stage_by_stage(one_worker):
    _, summary = one_worker
    stages = ["plan", "train", "validate", "signatures", "format", "checkpoints", "write"]
    assert list(summary.stage_seconds) == stages  # the pipeline's stages, in the order they run
    assert all(summary.stage_seconds[s] > 0 for s in ("plan", "train", "validate", "signatures"))
    assert sum(summary.stage_seconds.values()) <= summary.seconds  # one worker: parts of one clock


def test_the_dataset_has_exactly_the_first_n_accepted_rows_in_the_seed_layout(one_worker):
    cfg, summary = one_worker
    out = cfg.pipeline.output_dir
    table = pq.read_table(out / "data")
    assert table.num_rows == summary.accepted == cfg.dataset.output_dataset_length
    assert table.schema.equals(SCHEMA, check_metadata=False)
    ids = table.column("example_id").to_pylist()
    rejected = pq.read_table(out / "rejected").column("example_id").to_pylist()
    assert ids == sorted(ids) and not set(ids) & set(rejected)
    # The first N accepted in index order: every index up to the last kept one was kept or rejected.
    assert set(range(max(ids) + 1)) <= set(ids) | set(rejected)
    info = json.loads((out / "dataset_info.json").read_text())
    assert (
        info["complete"] and info["config_hash"] == cfg.config_hash and "token" not in info["config"]["hub"]
    )

    row = table.slice(0, 1).to_pylist()[0]
    meta = json.loads(row["metadata"])
    assert {"selected_patterns", "target_pattern", "model_config", "accuracy", "corruption"} <= set(meta)
    improved = json.loads(row["improved_model_weights"])
    spec = ModelSpec.from_config(improved["config"])
    model = build_model(spec, {k: torch.tensor(v) for k, v in improved["weights"].items()})
    assert set(improved["weights"]) == {
        f"network.{i}.{p}" for i in spec.linear_indices for p in ("weight", "bias")
    }
    assert row["modification_text"] == row["modification_prompt"] + row["modification_completion"]
    assert row["classification_completion"].strip() == ", ".join(meta["selected_patterns"])
    parsed = parse_weights(row["modification_completion"], spec)
    for name, tensor in model.state_dict().items():
        assert torch.allclose(parsed[name], tensor, atol=1e-4)
    signature = json.loads(row["degraded_signature"])
    assert set(signature["neuron_activations"]) == {str(i) for i in spec.linear_indices}


def test_two_workers_write_the_same_bytes(one_worker, tmp_path):
    cfg, _ = one_worker
    twin = tiny_config(tmp_path)
    run_data_gen(twin, workers=2, log=lambda _: None, cohort_size=COHORT)
    assert shard_bytes(twin.pipeline.output_dir) == shard_bytes(cfg.pipeline.output_dir)


def run_until_first_shard(folder: Path, workers: int) -> subprocess.Popen:
    """run-data-gen on `folder`'s config in a child process, returned once its first data shard exists."""
    script = (
        "import sys; from pathlib import Path; from weightzoo.config import load_config; "
        "from weightzoo.run.pipeline import run_data_gen; "
        f"run_data_gen(load_config(Path(sys.argv[1])), workers={workers}, log=lambda _: None, "
        f"cohort_size={COHORT})"
    )
    env = {**os.environ, "PYTHONPATH": SRC}
    child = subprocess.Popen([sys.executable, "-c", script, str(folder / "config.yaml")], env=env)
    first = cohort_path(folder / "out", "data", 0)
    deadline = time.time() + 120
    while not first.exists() and child.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    return child


def test_a_killed_run_resumes_to_the_same_bytes(one_worker, tmp_path):
    cfg, _ = one_worker
    twin = tiny_config(tmp_path)
    first = cohort_path(twin.pipeline.output_dir, "data", 0)
    child = run_until_first_shard(tmp_path, workers=1)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert first.exists()
    run_data_gen(twin, workers=1, log=lambda _: None, cohort_size=COHORT)
    assert shard_bytes(twin.pipeline.output_dir) == shard_bytes(cfg.pipeline.output_dir)
    run_data_gen(twin, workers=1, log=lambda _: None, cohort_size=COHORT)  # a finished run stays as it is
    assert shard_bytes(twin.pipeline.output_dir) == shard_bytes(cfg.pipeline.output_dir)


def test_another_configs_output_folder_is_a_clear_error(one_worker):
    cfg, _ = one_worker
    folder = cfg.pipeline.output_dir.parent
    changed = tiny_config(folder, training={"batch_size": 64})
    with pytest.raises(UserError, match="another config"):
        run_data_gen(changed, workers=1, log=lambda _: None, cohort_size=COHORT)


def test_another_versions_output_folder_is_a_clear_error(tmp_path):
    """A folder started by another version is not resumed: it may train the same examples to other bits."""
    cfg = tiny_config(tmp_path)
    info_path = cfg.pipeline.output_dir / "dataset_info.json"
    info_path.parent.mkdir(parents=True)
    info = {"weightzoo_version": "0.0.1", "config_hash": cfg.config_hash}
    info_path.write_text(json.dumps(info))
    with pytest.raises(UserError, match=r"weightzoo_version 0\.0\.1, here \d"):
        run_data_gen(cfg, workers=1, log=lambda _: None, cohort_size=COHORT)


def test_a_folder_trained_by_another_engine_is_not_finished_here(one_worker, monkeypatch):
    """The compiled step and the PyTorch step round otherwise: a folder records which trained it."""
    from weightzoo.engine import step_kernel

    cfg, _ = one_worker
    info = json.loads((cfg.pipeline.output_dir / "dataset_info.json").read_text())
    assert info["engine"] == step_kernel.build_name()
    other = "pytorch step" if info["engine"] != "pytorch step" else "compiled step 0123456789abcdef"
    monkeypatch.setattr(step_kernel, "build_name", lambda: other)
    with pytest.raises(UserError, match="engine "):
        run_data_gen(cfg, workers=1, log=lambda _: None, cohort_size=COHORT)


def test_a_missing_signature_file_is_a_clear_error(tmp_path):
    cfg = tiny_config(tmp_path)
    cfg.signature.dataset_path.unlink()
    with pytest.raises(UserError, match="sig.json does not exist"):
        run_data_gen(cfg, workers=1, log=lambda _: None, cohort_size=COHORT)


def test_a_full_disk_is_a_clear_error_and_leaves_written_shards_intact(tmp_path, monkeypatch):
    import errno

    import weightzoo.output.shards as shards

    cfg = tiny_config(tmp_path)
    run_data_gen(cfg, workers=1, log=lambda _: None, cohort_size=COHORT)
    out = cfg.pipeline.output_dir
    before = shard_bytes(out)
    (out / "dataset_info.json").unlink()  # start over in the same folder, with the disk now full
    for path in out.glob("data/cohort-*.parquet"):
        if path.name != "cohort-00000.parquet":
            path.unlink()

    def full(writer, table, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shards.pq.ParquetWriter, "write_table", full)
    with pytest.raises(UserError, match="No space left on device"):
        run_data_gen(cfg, workers=1, log=lambda _: None, cohort_size=COHORT)
    assert cohort_path(out, "data", 0).read_bytes() == before["data/cohort-00000.parquet"]
    assert not list(out.glob("*/.*.tmp"))


def test_an_unwritable_output_folder_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    cfg = tiny_config(tmp_path, pipeline={"output_dir": str(blocker / "out")})
    with pytest.raises(UserError, match="pipeline.output_dir"):
        run_data_gen(cfg, workers=1, log=lambda _: None, cohort_size=COHORT)


def test_a_run_writes_its_card_and_uploads_through_the_hub_client(tmp_path, monkeypatch):
    """Up to the network boundary: the Hub client is a recorder; the token appears in no file."""
    import weightzoo.output.hub as hub

    calls = []

    class Recorder:
        def __init__(self, *args, **kwargs):
            pass

        def __getattr__(self, name):
            return lambda *args, **kwargs: calls.append((name, kwargs.get("path_in_repo")))

    monkeypatch.setattr(hub, "HfApi", Recorder, raising=False)
    monkeypatch.setattr("huggingface_hub.HfApi", Recorder)
    token = "hf_" + "x" * 30
    cfg = tiny_config(tmp_path, hub={"dataset_name": "someone/zoo", "token": token})
    run_data_gen(cfg, workers=1, log=lambda _: None, cohort_size=COHORT)
    out = cfg.pipeline.output_dir
    card = (out / "README.md").read_text()
    assert "data/*.parquet" in card and cfg.config_hash[:12] in card
    uploaded = {path for name, path in calls if name == "upload_file"}
    assert {"README.md", "dataset_info.json", "data/cohort-00000.parquet"} <= uploaded
    for path in out.rglob("*"):
        if path.is_file():
            assert token.encode() not in path.read_bytes(), path


def test_a_failing_cohort_is_a_clear_error_and_the_run_resumes(one_worker, tmp_path, monkeypatch):
    """A worker that dies surfaces as one clear error; written shards stay, and a rerun completes."""
    import weightzoo.run.pipeline as pipeline

    cfg, _ = one_worker
    twin = tiny_config(tmp_path)
    real = pipeline.run_unit

    def dies_on_cohort_1(cfg, probe, identity, cohort, *args):
        if cohort == 1:
            raise BrokenProcessPool("worker process terminated abruptly")
        return real(cfg, probe, identity, cohort, *args)

    monkeypatch.setattr(pipeline, "run_unit", dies_on_cohort_1)
    with pytest.raises(UserError, match="cohort 1 failed .* run again to resume"):
        run_data_gen(twin, workers=1, log=lambda _: None, cohort_size=COHORT)
    assert cohort_path(twin.pipeline.output_dir, "data", 0).exists()
    monkeypatch.setattr(pipeline, "run_unit", real)
    run_data_gen(twin, workers=1, log=lambda _: None, cohort_size=COHORT)
    assert shard_bytes(twin.pipeline.output_dir) == shard_bytes(cfg.pipeline.output_dir)


# ---------------------------------------------------------------------------------------------------------
# The command, interrupted for real: a worker process killed, and Ctrl-C
# ---------------------------------------------------------------------------------------------------------

# About 37 cohorts of 2: once the first shard is on disk, the run has many cohorts to go.
MANY_COHORTS = {
    "dataset": {"output_dataset_length": 40},
    "pipeline": {"checkpoint_interval": 2, "max_threads": 2},
}
RESUME_HINT = "interrupted: finished shards are kept; run the same command again to resume"


@pytest.fixture(scope="module")
def many_cohorts(tmp_path_factory) -> dict[str, bytes]:
    """The shards of an uninterrupted run of the MANY_COHORTS config."""
    cfg = tiny_config(tmp_path_factory.mktemp("many"), **MANY_COHORTS)
    run_data_gen(cfg, workers=1, log=lambda _: None)
    return shard_bytes(cfg.pipeline.output_dir)


@contextlib.contextmanager
def data_gen_command(folder: Path):
    """`weightzoo run-data-gen` on folder/config.yaml in a process group of its own (as a shell's job)."""
    env = {**os.environ, "PYTHONPATH": SRC}
    argv = [sys.executable, "-m", "weightzoo.cli", "run-data-gen", "--config-path", folder / "config.yaml"]
    with open(folder / "stdout", "w") as stdout, open(folder / "stderr", "w") as stderr:
        child = subprocess.Popen(argv, env=env, stdout=stdout, stderr=stderr, start_new_session=True)
    try:
        yield child
    finally:
        if child.poll() is None:  # a failed assertion: leave nothing running
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()


def wait_for_a_shard(child: subprocess.Popen, out: Path) -> None:
    first = cohort_path(out, "data", 0)
    deadline = time.monotonic() + 120
    while not first.exists():
        assert child.poll() is None, "the run ended before writing a shard"
        assert time.monotonic() < deadline, "no shard written in 120 s"
        time.sleep(0.02)


def process_identity(pid: int) -> tuple[str, str] | None:
    """(state, start time) of a process from /proc, or None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return fields[0], fields[19]


def descendants(pid: int) -> dict[int, tuple[str, str]]:
    """The processes under `pid` (its pool workers and their resource tracker): pid → (cmdline, start)."""
    found: dict[int, tuple[str, str]] = {}
    todo = [pid]
    while todo:
        for task in Path(f"/proc/{todo.pop()}/task").glob("*"):
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
            for child in children:
                identity = process_identity(child)
                try:
                    cmdline = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                except OSError:
                    continue
                if identity is not None:
                    found[child] = (cmdline, identity[1])
                    todo.append(child)
    return found


def pool_workers(pid: int, processes: dict[int, tuple[str, str]]) -> list[int]:
    """The pool workers among `pid`'s descendants: the processes forked by its fork server."""
    servers = [p for p, (cmdline, _) in processes.items() if "forkserver" in cmdline and parent(p) == pid]
    return sorted(p for p in processes if parent(p) in servers)


def parent(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def assert_all_gone(processes: dict[int, tuple[str, str]]) -> None:
    """Every one of `processes` has exited (a zombie counts as gone; a reused pid is another process)."""
    deadline = time.monotonic() + 30
    while True:
        running = {
            pid: cmdline
            for pid, (cmdline, start) in processes.items()
            if (now := process_identity(pid)) is not None and now[1] == start and now[0] not in "ZX"
        }
        if not running:
            return
        assert time.monotonic() < deadline, f"still running after the run ended: {running}"
        time.sleep(0.05)


def assert_interrupted_cleanly(out: Path, complete: dict[str, bytes]) -> None:
    """What an interrupted run leaves: some shards, each whole and as an uninterrupted run writes it,
    each data shard with its rejected shard, and nothing else visible (temporary files are dot-files)."""
    shards = shard_bytes(out)
    assert shards and len(shards) < len(complete), sorted(shards)
    for name, data in shards.items():
        pq.read_table(out / name)  # a whole Parquet file
        assert data == complete[name], name
    for name in shards:
        assert name.replace("data/", "rejected/") in shards
    for path in [*out.glob("data/*"), *out.glob("rejected/*")]:
        assert path.name in {Path(n).name for n in shards} or (
            path.name.startswith(".") and path.name.endswith(".tmp")
        ), path
    assert not json.loads((out / "dataset_info.json").read_text())["complete"]


def assert_reruns_to(folder: Path, complete: dict[str, bytes], capsys) -> None:
    """The same command, run again, finishes the dataset: the bytes of an uninterrupted run."""
    capsys.readouterr()
    assert main(["run-data-gen", "--config-path", str(folder / "config.yaml")]) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    out = folder / "out"
    assert shard_bytes(out) == complete
    assert not list(out.glob("*/.*.tmp"))


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="a run starts one worker per core: needs two")
def test_a_killed_worker_process_is_one_clear_error_and_the_run_resumes(many_cohorts, tmp_path, capsys):
    cfg = tiny_config(tmp_path, **MANY_COHORTS)
    out = cfg.pipeline.output_dir
    with data_gen_command(tmp_path) as child:
        wait_for_a_shard(child, out)
        os.kill(child.pid, signal.SIGSTOP)  # held still: it can neither finish nor notice anything meanwhile
        processes = descendants(child.pid)
        workers = pool_workers(child.pid, processes)
        assert len(workers) == 2, processes
        os.kill(workers[0], signal.SIGKILL)
        os.kill(child.pid, signal.SIGCONT)
        assert child.wait(timeout=120) == 2
    stderr = (tmp_path / "stderr").read_text()
    assert "Traceback" not in stderr + (tmp_path / "stdout").read_text()
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert errors == stderr.splitlines()[-1:], stderr  # one error line, the last thing said
    failed = re.fullmatch(
        r"error: cohort (\d+) failed \(BrokenProcessPool: .+\); what is written is kept: "
        r"run again to resume \(.+\)",
        errors[0],
    )
    assert failed, errors[0]
    for cohort in range(int(failed.group(1))):  # cohorts before the failed one were all written
        assert cohort_path(out, "data", cohort).exists()
    assert_interrupted_cleanly(out, many_cohorts)
    assert_all_gone(processes)
    assert_reruns_to(tmp_path, many_cohorts, capsys)


def test_ctrl_c_stops_the_run_with_a_resume_hint_and_the_run_resumes(many_cohorts, tmp_path, capsys):
    cfg = tiny_config(tmp_path, **MANY_COHORTS)
    out = cfg.pipeline.output_dir
    with data_gen_command(tmp_path) as child:
        wait_for_a_shard(child, out)
        processes = descendants(child.pid)
        assert len(pool_workers(child.pid, processes)) == 2, processes
        os.killpg(child.pid, signal.SIGINT)  # a terminal's Ctrl-C: every process of the foreground job
        assert child.wait(timeout=120) == 130
    stderr = (tmp_path / "stderr").read_text()
    assert "Traceback" not in stderr + (tmp_path / "stdout").read_text()
    assert "KeyboardInterrupt" not in stderr
    assert stderr.splitlines()[-1] == RESUME_HINT, stderr
    assert_interrupted_cleanly(out, many_cohorts)
    assert_all_gone(processes)
    assert_reruns_to(tmp_path, many_cohorts, capsys)


@pytest.mark.parametrize("workers", [1, 2])
def test_the_watched_models_epochs_are_saved_under_metrics_dir(tmp_path, workers):
    """The first two models of each cohort, up to the run's last example: none of the examples that
    workers trained beyond it."""
    cfg = tiny_config(
        tmp_path, metrics={"checkpoint": {"save_every_epoch": True, "save_optimizer_state": True}}
    )
    summary = run_data_gen(cfg, workers=workers, log=lambda _: None, cohort_size=COHORT)
    saved = sorted(p.name for p in (cfg.metrics.dir / "checkpoints").iterdir())
    watched = [k * COHORT + i for k in range(summary.cohorts) for i in range(2)]
    assert saved == [f"example-{i:07d}" for i in watched if i < summary.attempted]
    files = list((cfg.metrics.dir / "checkpoints").rglob("*.safetensors"))
    assert files and all(f.name.startswith(("stage1-epoch-", "stage2-epoch-")) for f in files)


# ---------------------------------------------------------------------------------------------------------
# Work units: cohorts shared between workers, staged, and resumed unit by unit
# ---------------------------------------------------------------------------------------------------------

UNIT = 3  # cohorts of 8 in units of 2, 3 and 3


@given(cohort=st.integers(0, 50), size=st.integers(1, 3000), unit=st.integers(1, 400))
def test_units_cover_their_cohort_in_order_evenly(cohort, size, unit):
    bounds = unit_bounds(cohort, size, unit)
    assert [i for r in bounds for i in r] == list(range(cohort * size, (cohort + 1) * size))
    lengths = [len(r) for r in bounds]
    assert max(lengths) <= unit and max(lengths) - min(lengths) <= 1
    assert len(bounds) == -(-size // unit)  # no more units than needed


@pytest.fixture(scope="module")
def in_units(tmp_path_factory):
    cfg = tiny_config(tmp_path_factory.mktemp("units"))
    summary = run_data_gen(cfg, workers=1, log=lambda _: None, cohort_size=COHORT, unit_size=UNIT)
    return cfg, summary


def test_a_run_in_units_writes_whole_cohorts_and_leaves_nothing_staged(in_units, one_worker):
    cfg, summary = in_units
    out = cfg.pipeline.output_dir
    assert not (out / ".units").exists()
    table = pq.read_table(out / "data")
    assert table.num_rows == summary.accepted == cfg.dataset.output_dataset_length
    ids = table.column("example_id").to_pylist()
    rejected = pq.read_table(out / "rejected").column("example_id").to_pylist()
    # every example up to the last kept one is in exactly one table, and none after it
    assert sorted(ids + rejected) == list(range(max(ids) + 1)) == list(range(summary.attempted))
    assert json.loads((out / "dataset_info.json").read_text())["unit_size"] == UNIT


def test_two_workers_sharing_cohorts_write_the_same_bytes(in_units, tmp_path):
    cfg, _ = in_units
    twin = tiny_config(tmp_path)
    run_data_gen(twin, workers=2, log=lambda _: None, cohort_size=COHORT, unit_size=UNIT)
    assert shard_bytes(twin.pipeline.output_dir) == shard_bytes(cfg.pipeline.output_dir)


RUN_UNIT = run_unit  # the real one, whatever a test patches in


def recording_units(monkeypatch, fail=lambda cohort, piece, part: False) -> list[tuple]:
    """Record every part run_unit is asked to train; raise where `fail` says."""
    import weightzoo.run.pipeline as pipeline

    real, calls = RUN_UNIT, []

    def recorded(cfg, probe, identity, cohort, piece, part, *args):
        calls.append((cohort, piece, part))
        if fail(cohort, piece, part):
            raise BrokenProcessPool("killed")
        return real(cfg, probe, identity, cohort, piece, part, *args)

    monkeypatch.setattr(pipeline, "run_unit", recorded)
    return calls


def test_a_run_stopped_mid_cohort_keeps_its_finished_units_and_resumes(in_units, tmp_path, monkeypatch):
    cfg, _ = in_units
    twin = tiny_config(tmp_path)
    out = twin.pipeline.output_dir
    # cohort 1 is units 8-9, 10-12 and 13-15: the run dies in the last one's second part
    recording_units(monkeypatch, fail=lambda cohort, piece, part: (cohort, piece, part) == (1, (13, 16), 1))
    with pytest.raises(UserError, match="cohort 1 failed"):
        run_data_gen(twin, workers=1, log=lambda _: None, cohort_size=COHORT, unit_size=UNIT)
    staged = sorted(p.name for p in (out / ".units" / "data").glob("*.arrow"))
    assert staged == [
        "cohort-00001-from-000000008-to-000000010-part-0.arrow",
        "cohort-00001-from-000000008-to-000000010-part-1.arrow",
        "cohort-00001-from-000000010-to-000000013-part-0.arrow",
        "cohort-00001-from-000000010-to-000000013-part-1.arrow",
        "cohort-00001-from-000000013-to-000000016-part-0.arrow",
    ]
    assert cohort_path(out, "data", 0).exists() and not cohort_path(out, "data", 1).exists()
    calls = recording_units(monkeypatch)
    run_data_gen(twin, workers=1, log=lambda _: None, cohort_size=COHORT, unit_size=UNIT)
    assert calls[0] == (1, (13, 16), 1)  # the staged parts were not trained again
    assert shard_bytes(out) == shard_bytes(cfg.pipeline.output_dir)
    assert not (out / ".units").exists()


def test_any_unit_size_writes_the_same_bytes(in_units, one_worker, tmp_path):
    """An example's training does not depend on the examples trained beside it (fixed padding), so the
    work units, here of 3, of 8 (a whole cohort) and of 1 (every model alone), change no byte."""
    (cfg, _), (whole_cohorts, _) = in_units, one_worker
    alone = tiny_config(tmp_path)
    run_data_gen(alone, workers=1, log=lambda _: None, cohort_size=COHORT, unit_size=1)
    assert shard_bytes(cfg.pipeline.output_dir) == shard_bytes(whole_cohorts.pipeline.output_dir)
    assert shard_bytes(alone.pipeline.output_dir) == shard_bytes(cfg.pipeline.output_dir)


@pytest.fixture
def eager_cuts(monkeypatch):
    """Cut units on little history, with no slack: the tiny runs here then cut their last unit."""
    monkeypatch.setattr(scheduling, "SPLIT_AFTER", COHORT)
    monkeypatch.setattr(scheduling, "SPLIT_SLACK", 0)
    monkeypatch.setattr(scheduling, "SPLIT_LEAST_REST", 1)


def test_the_last_unit_is_trained_prefix_first_and_changes_no_byte(
    one_worker, tmp_path, monkeypatch, eager_cuts
):
    cfg, summary = one_worker
    twin = tiny_config(tmp_path)
    calls = recording_units(monkeypatch)
    run_data_gen(twin, workers=1, log=lambda _: None, cohort_size=COHORT)
    pieces = sorted({piece for _, piece, _ in calls})
    cut = [(a, b) for a, b in pieces if b - a < COHORT]
    assert (
        len(cut) == 1 and cut[0][0] == 16
    )  # the last unit's prefix: what the run likely needs, and a margin
    assert pieces[-1] == cut[0]  # ... and it held the last accepted example: the rest was never trained
    assert shard_bytes(twin.pipeline.output_dir) == shard_bytes(cfg.pipeline.output_dir)
    assert summary.cohorts * COHORT == 24  # without the cut the run trained three whole units


def test_two_workers_cutting_units_as_their_timing_allows_write_the_same_bytes(
    one_worker, tmp_path, eager_cuts
):
    cfg, _ = one_worker
    twin = tiny_config(tmp_path)
    run_data_gen(twin, workers=2, log=lambda _: None, cohort_size=COHORT)
    assert shard_bytes(twin.pipeline.output_dir) == shard_bytes(cfg.pipeline.output_dir)


def test_a_run_killed_in_a_cut_unit_resumes_with_its_cut(one_worker, tmp_path, monkeypatch, eager_cuts):
    """A resumed run takes the pieces an earlier run staged, even where it would cut otherwise."""

    cfg, _ = one_worker
    twin = tiny_config(tmp_path)
    out = twin.pipeline.output_dir
    recording_units(monkeypatch, fail=lambda cohort, piece, part: cohort == 2 and part == 1)
    with pytest.raises(UserError, match="cohort 2 failed"):
        run_data_gen(twin, workers=1, log=lambda _: None, cohort_size=COHORT)
    staged = sorted(p.name for p in (out / ".units" / "data").glob("*.arrow"))
    assert len(staged) == 1 and staged[0].startswith("cohort-00002-from-000000016-to-")
    cut = (16, int(staged[0].split("-to-")[1].split("-")[0]))
    assert cut[1] - cut[0] < COHORT  # a cut unit
    monkeypatch.setattr(scheduling, "SPLIT_AFTER", 10**9)  # left to itself, this run would not cut
    calls = recording_units(monkeypatch)
    run_data_gen(twin, workers=1, log=lambda _: None, cohort_size=COHORT)
    assert calls == [(2, cut, 1)]  # the staged part kept, the cut adopted, nothing else trained
    assert shard_bytes(out) == shard_bytes(cfg.pipeline.output_dir)
    assert not (out / ".units").exists()


@given(
    start=st.integers(0, 5000),
    size=st.integers(1, 300),
    accepted=st.integers(0, 3000),
    attempted=st.integers(0, 6000),
    in_flight=st.integers(0, 600),
    target=st.integers(1, 5000),
)
def test_a_unit_is_cut_only_to_a_prefix_that_likely_holds_what_the_run_needs(
    start, size, accepted, attempted, in_flight, target
):
    accepted = min(accepted, attempted)
    tally = Tally(accepted, attempted, max(0, start - in_flight))
    end = piece_end(start, start + size, tally, target)
    assert start < end <= start + size
    if end < start + size:  # cut: enough history, a run still short of its target, room left after
        rate = accepted / attempted
        expected = accepted + rate * (start - tally.through) + rate * (end - start)
        assert attempted >= SPLIT_AFTER and expected >= target  # the prefix likely holds the target
        assert start + size - end >= SPLIT_LEAST_REST


@pytest.mark.parametrize("parts", [1, 3])
def test_any_number_of_parts_writes_the_same_bytes(in_units, tmp_path, monkeypatch, parts):
    """A stack holds the same models whichever part trains it: parts change nothing in the output."""
    import weightzoo.run.pipeline as pipeline

    cfg, _ = in_units
    twin = tiny_config(tmp_path)
    monkeypatch.setattr(pipeline, "UNIT_PARTS", parts)
    run_data_gen(twin, workers=2, log=lambda _: None, cohort_size=COHORT, unit_size=UNIT)
    assert shard_bytes(twin.pipeline.output_dir) == shard_bytes(cfg.pipeline.output_dir)
    assert json.loads((twin.pipeline.output_dir / "dataset_info.json").read_text())["unit_parts"] == parts


@given(start=st.integers(0, 10_000), size=st.integers(0, 300), parts=st.integers(1, 4))
@settings(max_examples=25, deadline=None)
def test_unit_parts_split_a_unit_into_whole_stacks(start, size, parts):
    indices = range(start, start + size)
    split = unit_parts(SEED_CFG, indices, parts)
    assert len(split) == parts
    assert sorted(i for part in split for i in part) == list(indices)
    assert all(part == sorted(part) for part in split)
    owner = {}  # each stack (models that train together) lies in one part
    for p, part in enumerate(split):
        for i in part:
            assert owner.setdefault(stack_key(example_spec(SEED_CFG, i)), p) == p
    assert split == unit_parts(SEED_CFG, indices, parts)


def test_unit_parts_share_the_work_evenly():
    split = unit_parts(SEED_CFG, range(256), 2)
    sizes = sorted(len(part) for part in split)
    assert sizes[0] >= 0.8 * sizes[1], sizes


def test_another_unit_size_in_the_same_folder_is_a_clear_error(in_units):
    cfg, _ = in_units
    with pytest.raises(UserError, match="another config"):
        run_data_gen(cfg, workers=1, log=lambda _: None, cohort_size=COHORT, unit_size=UNIT + 1)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc")
def test_a_run_killed_by_sigkill_leaves_no_worker_or_server_behind(tmp_path):
    """The fork server and both workers die with the command, and the resource tracker after them."""
    tiny_config(tmp_path, dataset={"output_dataset_length": 10_000})
    child = run_until_first_shard(tmp_path, workers=2)
    below = descendants(child.pid)
    assert child.poll() is None and len(below) >= 3  # the server, two workers (and the tracker)
    child.send_signal(signal.SIGKILL)
    child.wait()

    def left() -> list[int]:
        """The processes seen before the kill that still run (the same start time, not a zombie)."""
        running = {p: process_identity(p) for p in below}
        return [
            p for p, now in running.items() if now is not None and now[0] != "Z" and now[1] == below[p][1]
        ]

    deadline = time.time() + 10
    while left() and time.time() < deadline:
        time.sleep(0.1)
    assert not left()
