"""metrics.checkpoint: every epoch of the watched models, as safetensors files a model loads from."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml
from safetensors import safe_open
from safetensors.torch import load_file

from weightzoo.config import parse_config
from weightzoo.data.pools import build_pools
from weightzoo.engine.model import SubjectMLP
from weightzoo.judge.pairs import train_examples
from weightzoo.output.checkpoints import remove_snapshots_after, snapshot_path, write_snapshots
from weightzoo.plan.jobs import CURVE_SAMPLE, stage_rules

SEED_CONFIG = Path(__file__).resolve().parents[1] / "configs/seed_example.yaml"


def small_raw(**changes) -> dict:
    """The seed's config with small, quick subject models."""
    raw = yaml.safe_load(SEED_CONFIG.read_text())
    raw["model"].update(num_layers={"min": 2, "max": 3}, neurons_per_layer={"min": 8, "max": 12})
    raw["dataset"]["patterns"].update(target_total_examples=200, pool_size=300)
    raw["training"].update(epochs=6, batch_size=32, early_stopping={"patience": 3})
    raw["staged_training"].update(max_degraded_epochs=4, improvement_epochs=4, corruption_rate=0.6)
    raw["validation"]["test_set_size"] = 20
    for section, values in changes.items():
        raw[section].update(values)
    return raw


def train(tmp_path, save_every_epoch=True, save_optimizer_state=True, update_freq="epoch", indices=(5, 6, 7)):
    raw = small_raw(
        metrics={
            "dir": str(tmp_path / "runs"),
            "checkpoint": {
                "save_every_epoch": save_every_epoch,
                "save_optimizer_state": save_optimizer_state,
            },
            "tensorboard": {"enabled": False, "update_freq": update_freq},
        }
    )
    cfg = parse_config(raw)
    p = cfg.dataset.patterns
    pools = build_pools(cfg.space, p.enabled_patterns, p.pool_size, cfg.pipeline.random_seed)
    return cfg, train_examples(cfg, pools, list(indices))


def test_every_epoch_of_the_watched_models_is_saved_and_loads_into_the_model(tmp_path):
    cfg, examples = train(tmp_path)
    written = write_snapshots(cfg.metrics.dir, examples)
    watched, others = examples[:CURVE_SAMPLE], examples[CURVE_SAMPLE:]
    assert all(e.result.snapshots == [] for e in others)
    assert len(written) == sum(e.result.stage1_epochs + e.result.stage2_epochs for e in watched) > 0
    files = sorted((cfg.metrics.dir / "checkpoints").rglob("*.safetensors"))
    assert files == sorted(written)
    assert not list((cfg.metrics.dir / "checkpoints").rglob("*.tmp"))
    for e in watched:
        r = e.result
        best = snapshot_path(cfg.metrics.dir, e.plan.index, 1, r.stage1_best_epoch)
        tensors = load_file(best)
        weights = {k: v for k, v in tensors.items() if not k.startswith("adam.")}
        assert weights.keys() == r.degraded.keys()
        assert all(torch.equal(weights[k], r.degraded[k]) for k in weights)  # the degraded checkpoint
        model = SubjectMLP(e.plan.spec)
        model.load_state_dict(weights)  # strict: exactly the model's parameters
        assert {
            f"adam.{m}.{k}" for m in ("exp_avg", "exp_avg_sq") for k in weights
        } == tensors.keys() - weights.keys()
        with safe_open(best, "pt") as f:
            about = json.loads(f.metadata()["snapshot"])
        assert (about["example_index"], about["stage"], about["epoch"]) == (
            e.plan.index,
            1,
            r.stage1_best_epoch,
        )
        assert about["adam_step"] > 0
        last = snapshot_path(
            cfg.metrics.dir, e.plan.index, r.stage2_epochs and 2 or 1, r.stage2_epochs or r.stage1_epochs
        )
        assert last.exists()


def test_writing_again_gives_the_same_bytes(tmp_path):
    cfg, examples = train(tmp_path)
    first = {p: p.read_bytes() for p in write_snapshots(cfg.metrics.dir, examples)}
    _, again = train(tmp_path)
    second = {p: p.read_bytes() for p in write_snapshots(cfg.metrics.dir, again)}
    assert first == second


def test_without_optimizer_state_only_weights_are_saved(tmp_path):
    cfg, examples = train(tmp_path, save_optimizer_state=False, indices=(5,))
    (path, *_) = write_snapshots(cfg.metrics.dir, examples)
    assert not any(k.startswith("adam.") for k in load_file(path))


def test_off_by_default_nothing_is_kept(tmp_path):
    cfg, examples = train(tmp_path, save_every_epoch=False)
    assert all(e.result.snapshots == [] for e in examples)
    assert write_snapshots(cfg.metrics.dir, examples) == []
    assert not (cfg.metrics.dir / "checkpoints").exists()


def test_update_freq_batch_records_each_steps_loss(tmp_path):
    cfg, examples = train(tmp_path, save_every_epoch=False, update_freq="batch")
    assert stage_rules(cfg).record_batch_loss
    for e in examples:
        batches, epochs = e.result.history["batch_loss"], e.result.history["train_loss"]
        assert len(batches) >= len(epochs) > 0 and len(batches) % len(epochs) == 0
    cfg, examples = train(tmp_path, save_every_epoch=False)
    assert not stage_rules(cfg).record_batch_loss
    assert all("batch_loss" not in e.result.history for e in examples)


def test_snapshots_past_a_runs_last_example_are_removed(tmp_path):
    for index in (3, 9, 10, 250):
        folder = snapshot_path(tmp_path, index, 1, 1).parent
        folder.mkdir(parents=True)
        (folder / "stage1-epoch-001.safetensors").write_bytes(b"x")
    remove_snapshots_after(tmp_path, 9)
    left = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert left == ["example-0000003", "example-0000009"]
