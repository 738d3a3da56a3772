"""run-data-gen end to end on a tiny config: shards, determinism across workers, resume, mismatch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
import yaml

from weightzoo.config import parse_config
from weightzoo.errors import UserError
from weightzoo.files import write_json_atomic
from weightzoo.formatting import parse_weights
from weightzoo.model import ModelSpec, build_model
from weightzoo.pipeline import cohort_path, run_data_gen
from weightzoo.probe_sets import make_signature_set
from weightzoo.rows import SCHEMA

SEED_CONFIG = Path(__file__).resolve().parents[1] / "configs/seed_example.yaml"
COHORT = 8
SRC = str(Path(__file__).resolve().parents[1] / "src")


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
    raw["dataset"]["output_dataset_length"] = 12
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
    raw["validation"].update(min_pattern_improvement=0.0, max_other_degradation=1.0, test_set_size=10)
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


def test_a_killed_run_resumes_to_the_same_bytes(one_worker, tmp_path):
    cfg, _ = one_worker
    twin = tiny_config(tmp_path)
    script = (
        "import sys; from pathlib import Path; from weightzoo.config import load_config; "
        "from weightzoo.pipeline import run_data_gen; "
        f"run_data_gen(load_config(Path(sys.argv[1])), workers=1, log=lambda _: None, cohort_size={COHORT})"
    )
    env = {**os.environ, "PYTHONPATH": SRC}
    child = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "config.yaml")], env=env)
    first = cohort_path(twin.pipeline.output_dir, "data", 0)
    deadline = time.time() + 120
    while not first.exists() and child.poll() is None and time.time() < deadline:
        time.sleep(0.05)
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


def test_a_missing_signature_file_is_a_clear_error(tmp_path):
    cfg = tiny_config(tmp_path)
    cfg.signature.dataset_path.unlink()
    with pytest.raises(UserError, match="sig.json does not exist"):
        run_data_gen(cfg, workers=1, log=lambda _: None, cohort_size=COHORT)


def test_a_full_disk_is_a_clear_error_and_leaves_written_shards_intact(tmp_path, monkeypatch):
    import errno

    import weightzoo.pipeline as pipeline

    cfg = tiny_config(tmp_path)
    run_data_gen(cfg, workers=1, log=lambda _: None, cohort_size=COHORT)
    out = cfg.pipeline.output_dir
    before = shard_bytes(out)
    (out / "dataset_info.json").unlink()  # start over in the same folder, with the disk now full
    for path in out.glob("data/cohort-*.parquet"):
        if path.name != "cohort-00000.parquet":
            path.unlink()

    def full(table, path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pipeline.pq, "write_table", full)
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
    import weightzoo.hub as hub

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
    import weightzoo.pipeline as pipeline

    cfg, _ = one_worker
    twin = tiny_config(tmp_path)
    real = pipeline.run_cohort

    def dies_on_cohort_1(cfg, cohort, *args):
        if cohort == 1:
            raise RuntimeError("worker process terminated abruptly")
        return real(cfg, cohort, *args)

    monkeypatch.setattr(pipeline, "run_cohort", dies_on_cohort_1)
    with pytest.raises(UserError, match="cohort 1 failed .* run again to resume"):
        run_data_gen(twin, workers=1, log=lambda _: None, cohort_size=COHORT)
    assert cohort_path(twin.pipeline.output_dir, "data", 0).exists()
    monkeypatch.setattr(pipeline, "run_cohort", real)
    run_data_gen(twin, workers=1, log=lambda _: None, cohort_size=COHORT)
    assert shard_bytes(twin.pipeline.output_dir) == shard_bytes(cfg.pipeline.output_dir)
