"""Every key docs/config.md documents is read, and changes what it says it changes.

Each documented key gets one change from a small base config, and the test checks that something the
key is documented to affect comes out different. Keys that shape examples are observed through the
stage function (`run_stages`: rows, rejections, training histories and epoch snapshots of two
watched examples); keys that shape the run (where files go, how many processes, TensorBoard, the
Hub, the executor) through the `run-data-gen` command itself, with the executor, TensorBoard and the
Hub client replaced by recorders. Trivial differences are left out of what is compared: the config's
copy, its hash, and the shards' stamps, so a key that is merely echoed never passes for one that acts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path

import fsspec
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from pydantic import BaseModel
from test_pipeline import tiny_raw

from weightzoo.config import parse_config
from weightzoo.data.probe_sets import make_signature_set, read_probe_file
from weightzoo.run.stages import run_stages

DOCS = Path(__file__).resolve().parents[1] / "docs" / "config.md"
SECTIONS = ("signature", "model", "dataset", "training", "staged_training", "validation", "pipeline")
SECTIONS += ("metrics", "task_generation", "hub")

# Documented as having no effect, and why (the key is the seed's; a config that sets it still loads).
NO_EFFECT = {
    "pipeline.pin_memory": "the engine moves each unit's data to the device once: nothing to pin",
}


def documented_keys() -> list[str]:
    """The keys in docs/config.md's tables, as dotted paths: "`num_layers.min`, `.max`" is two."""
    keys, section, in_key_table = [], None, False
    for line in DOCS.read_text().splitlines():
        heading = re.match(r"^## `([a-z_]+)`", line)
        if heading:
            section, in_key_table = heading.group(1), False
            continue
        if line.startswith("| key |"):
            in_key_table = True
            continue
        if not line.startswith("|"):
            in_key_table = False
            continue
        if not (in_key_table and section) or line.startswith("|---"):
            continue
        names = re.findall(r"`([^`]+)`", line.split("|")[1])
        first = names[0]
        keys.append(f"{section}.{first}")
        parent = first.rsplit(".", 1)[0] + "." if "." in first else ""
        for name in names[1:]:
            keys.append(
                f"{section}.{first.rsplit('.', 1)[0]}{name}"
                if name.startswith(".")
                else f"{section}.{parent}{name}"
            )
    return keys


def _set(raw: dict, key: str, value) -> None:
    *path, last = key.split(".")
    node = raw
    for part in path:
        node = node.setdefault(part, {})
    node[last] = value


# ---------------------------------------------------------------------------------------------------------
# keys that shape examples: observed through the stage function
# ---------------------------------------------------------------------------------------------------------

# key -> (the new value, other keys set in both the base and the changed config so the change can act)
STAGE_CHANGES: dict[str, tuple] = {
    "signature.dataset_path": ("other_sig.json", {}),
    "signature.neuron_profile_methods": ({"max": {}}, {}),
    "signature.prompt_format.style": ("interwoven", {}),
    "signature.prompt_format.decimals": (2, {}),
    "signature.prompt_format.compact_numbers": (False, {}),
    "signature.prompt_format.numbers": ("grid", {}),
    "model.num_layers.min": (2, {}),
    "model.num_layers.max": (1, {}),
    "model.neurons_per_layer.min": (8, {}),
    "model.neurons_per_layer.max": (4, {}),
    "model.activation_types": (["tanh"], {}),
    "model.dropout_rate": (0.3, {}),
    "model.vocab_size": (6, {}),
    "model.sequence_length": (5, {}),
    "model.precision": ("float16", {}),
    "model.quantization": ("int4", {}),
    "model.learning_rate.min": (0.015, {}),
    "model.learning_rate.max": (0.006, {}),
    "model.input_encoding": ("one_hot", {}),
    "model.sparse_init": (1, {}),
    "dataset.patterns.enabled_patterns": (["palindrome", "sorted_ascending", "first_last_match"], {}),
    "dataset.patterns.min_patterns_per_batch": (3, {"dataset.patterns.max_patterns_per_batch": 3}),
    "dataset.patterns.max_patterns_per_batch": (3, {}),
    "dataset.patterns.samples_per_pattern.min": (50, {}),
    "dataset.patterns.negative_ratio": (2.0, {}),
    "dataset.patterns.target_total_examples": (200, {}),
    "dataset.patterns.max_total_examples": (
        150,
        {"dataset.patterns.pattern_dataset_factor": dict.fromkeys(["palindrome", "sorted_ascending"], 3)},
    ),
    "dataset.patterns.pattern_rows": ({"palindrome": 5}, {}),
    "dataset.patterns.starts_with_token": (
        "C",
        {"dataset.patterns.enabled_patterns": ["starts_with", "palindrome"]},
    ),
    "dataset.patterns.ends_with_token": (
        "C",
        {"dataset.patterns.enabled_patterns": ["ends_with", "palindrome"]},
    ),
    "dataset.patterns.pattern_dataset_factor": ({"palindrome": 2}, {}),
    "dataset.patterns.pool_size": (20, {}),
    "training.epochs": (2, {}),
    "training.batch_size": (16, {}),
    "training.early_stopping.patience": (1, {"training.epochs": 40}),
    "training.early_stopping.min_delta": (0.05, {}),
    "training.min_degradation_threshold": (0.5, {}),
    "training.validation_split": (0.3, {}),
    "training.standardize_inputs": (False, {}),
    "staged_training.max_degraded_epochs": (1, {}),
    "staged_training.min_improvement_threshold": (0.5, {}),
    "staged_training.improvement_epochs": (1, {}),
    "staged_training.improvement_lr_factor": (0.1, {}),
    "staged_training.corruption_rate": (0.5, {}),
    "staged_training.stage2_watch": ("target", {}),
    "validation.pattern_specific": (False, {"validation.min_pattern_improvement": 0.3}),
    "validation.min_pattern_improvement": (0.5, {}),
    "validation.max_other_degradation": (0.0, {}),
    "validation.max_negative_degradation": (0.0, {"validation.max_other_degradation": 1.0}),
    "validation.test_set_size": (30, {}),
    "validation.min_pattern_accuracy": (0.9, {}),
    "validation.min_negative_accuracy": (0.9, {}),
    "metrics.tensorboard.update_freq": ("batch", {}),
    "metrics.checkpoint.save_every_epoch": (False, {}),
    "metrics.checkpoint.save_optimizer_state": (True, {"metrics.checkpoint.save_every_epoch": True}),
    "task_generation.include_modification": (False, {"task_generation.include_classification": True}),
    "task_generation.include_classification": (False, {}),
    "pipeline.random_seed": (7, {}),
}


def _digest(value) -> str:
    """A hash of rows, histories and snapshots: tensors by their bytes, everything else as JSON."""

    def plain(v):
        if isinstance(v, torch.Tensor):
            return hashlib.sha256(v.detach().cpu().numpy().tobytes()).hexdigest()
        if isinstance(v, np.ndarray):
            return hashlib.sha256(v.tobytes()).hexdigest()
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return plain(vars(v))
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [plain(x) for x in v]
        if isinstance(v, bytes):
            return hashlib.sha256(v).hexdigest()
        return v if isinstance(v, str | int | float | bool | type(None)) else repr(v)

    return hashlib.sha256(json.dumps(plain(value), sort_keys=True, default=str).encode()).hexdigest()


def _signature_file(cfg) -> Path:
    """The config's signature file, made for it (another seed for the other file)."""
    path = cfg.signature.dataset_path
    seed = 1 if path.name == "other_sig.json" else 0
    enabled = tuple(cfg.dataset.patterns.enabled_patterns)
    path.write_text(json.dumps(make_signature_set(cfg.space, enabled, 30, seed)))
    return path


def _get(cfg, key: str):
    value = cfg
    for part in key.split("."):
        value = value[part] if isinstance(value, dict) else getattr(value, part)
    return value


def _config(folder: Path, changes: dict):
    raw = tiny_raw(folder)
    for key, value in changes.items():
        _set(raw, key, value)
    return raw, parse_config(raw, source=str(folder / "config.yaml"), base_dir=folder)


def _is_a_change(folder: Path, base: dict, key: str, value) -> bool:
    """The new value differs from the base config's (paths compared by name)."""
    _, cfg = _config(folder, base)
    old = _get(cfg, key)
    return (old.name if isinstance(old, Path) else old) != value


TEXT_COLUMNS = ("modification_prompt", "modification_completion", "classification_prompt")
TEXT_COLUMNS += ("classification_completion",)


def _without_model_config(signature_json: str | None):
    """A signature with its echo of the config left out: only what the model computes."""
    if signature_json is None:
        return None
    signature = json.loads(signature_json)
    signature.pop("model_config", None)
    return signature


def _stage_outcome(folder: Path, changes: dict) -> str:
    """What the examples are, never what the config says of them: each plan's patterns, architecture
    and rows, both stored models, the verdict, the held-out scores, the training histories and
    snapshots, the prompt and completion texts, and the signatures (without their config echo)."""
    _, cfg = _config(folder, changes)
    probe = read_probe_file(_signature_file(cfg), cfg.space, tuple(cfg.dataset.patterns.enabled_patterns))
    out = run_stages(cfg, probe, [0, 1, 2, 3], watched=[0, 1])
    examples = [
        [
            e.plan,
            e.degraded,
            e.improved,
            e.verdict.accepted,
            e.verdict.reason,
            e.accuracy,
            e.recall,
            e.result.history,
            e.result.snapshots,
        ]
        for e in out.examples
    ]
    texts = [
        [row.get(c) for c in TEXT_COLUMNS]
        + [_without_model_config(row.get(c)) for c in ("degraded_signature", "improved_signature")]
        for row in out.rows
    ]
    return _digest([examples, texts])


@pytest.mark.parametrize("key", sorted(STAGE_CHANGES))
def test_a_key_that_shapes_examples_changes_them(key, tmp_path):
    value, base = STAGE_CHANGES[key]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert _is_a_change(tmp_path / "a", base, key, value)
    before = _stage_outcome(tmp_path / "a", dict(base))
    after = _stage_outcome(tmp_path / "b", {**base, key: value})
    assert before != after, f"setting {key} to {value!r} changed no row, history or snapshot"


# ---------------------------------------------------------------------------------------------------------
# keys that shape the run: observed through run-data-gen, with recorders at the boundaries
# ---------------------------------------------------------------------------------------------------------

RUN_CHANGES: dict[str, tuple] = {
    "signature.prompt_format.tokenizer": ("tokenizer.json", {}),
    "dataset.output_dataset_length": (5, {}),
    "pipeline.output_dir": ("elsewhere", {}),
    "pipeline.output_url": ("memory://weightzoo-keys", {}),
    "pipeline.device": ("cuda", {}),  # none here: the run refuses, naming the key
    "pipeline.checkpoint_interval": (4, {"dataset.output_dataset_length": 8}),
    "pipeline.max_threads": (2, {}),
    "pipeline.num_workers": (2, {"pipeline.max_threads": 1}),
    "pipeline.backend": ("ray", {}),
    "pipeline.ray_address": ("10.0.0.1:6379", {"pipeline.backend": "ray"}),
    "pipeline.ray_cpus_per_task": (2, {"pipeline.backend": "ray"}),
    "pipeline.ray_gpus_per_task": (1, {"pipeline.backend": "ray"}),
    "metrics.dir": ("other_runs", {"metrics.tensorboard.enabled": True}),
    "metrics.tensorboard.enabled": (False, {}),
    "metrics.tensorboard.auto_launch": (True, {"metrics.tensorboard.enabled": True}),
    "metrics.tensorboard.port": (
        7007,
        {"metrics.tensorboard.enabled": True, "metrics.tensorboard.auto_launch": True},
    ),
    "hub.dataset_name": ("someone/zoo", {}),
    "hub.token": ("hf_" + "y" * 30, {"hub.dataset_name": "someone/zoo"}),
    "hub.private": (True, {"hub.dataset_name": "someone/zoo"}),
}


@pytest.fixture
def recorders(monkeypatch):
    """The run's boundaries replaced by recorders: the executor (always this process), TensorBoard's
    launcher, and the Hub client."""
    import weightzoo.output.hub as hub
    import weightzoo.run.executors as executors
    import weightzoo.run.monitoring as monitoring
    import weightzoo.run.pipeline as pipeline

    calls: list = []

    def executor_for(cfg, workers):
        made = real_executor_for(cfg, workers)
        fields = dataclasses.asdict(made) if dataclasses.is_dataclass(made) else {}
        calls.append(("executor", type(made).__name__, workers, sorted(fields.items())))
        if isinstance(made, executors.LocalPool):
            made.pool.shutdown()
        return executors.InProcess()

    def submit(pool, fn, *args):
        calls.append(("threads", args[-2]))
        return real_submit(pool, fn, *args)

    def launch(log_dir, port):
        calls.append(("tensorboard", str(log_dir), port))
        raise monitoring.TensorBoardError("not here")

    class Hub:
        def __init__(self, *args, **kwargs):
            calls.append(("hub", tuple(sorted(kwargs.items()))))

        def __getattr__(self, name):
            return lambda *args, **kwargs: calls.append(
                ("hub." + name, repr(args), repr(sorted(kwargs.items())))
            )

    real_executor_for, real_submit = executors.executor_for, pipeline.submit
    monkeypatch.setattr(executors, "executor_for", executor_for)
    monkeypatch.setattr(pipeline, "submit", submit)
    monkeypatch.setattr(monitoring, "launch_tensorboard", launch)
    monkeypatch.setattr(hub, "HfApi", Hub, raising=False)
    monkeypatch.setattr("huggingface_hub.HfApi", Hub)
    return calls


def _tokenizer(folder: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.save(str(folder / "tokenizer.json"))


def _token_section(card: str) -> list[str]:
    """The card's token statistics: from their heading to the next."""
    lines = card.splitlines()
    start = lines.index("## Token statistics") + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("#")), len(lines))
    return lines[start:end]


def _run_outcome(folder: Path, changes: dict, calls: list, capsys) -> str:
    from weightzoo.cli import main

    raw = tiny_raw(folder)
    raw["dataset"]["output_dataset_length"] = 3
    raw["pipeline"]["checkpoint_interval"] = 8
    for key, value in changes.items():
        _set(raw, key, value)
    (folder / "config.yaml").write_text(yaml.safe_dump(raw))
    _signature_file(parse_config(raw, source=str(folder / "config.yaml"), base_dir=folder))
    _tokenizer(folder)
    calls.clear()
    memory = fsspec.filesystem("memory")
    if memory.exists("/weightzoo-keys"):
        memory.rm("/weightzoo-keys", recursive=True)
    code = main(["run-data-gen", "--config-path", str(folder / "config.yaml")])
    printed = capsys.readouterr()
    files = sorted(
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if p.is_file() and "events.out" not in p.name and ".weightzoo-lock" not in p.name
    )
    events = sorted(str(p.parent.relative_to(folder)) for p in folder.rglob("events.out*"))
    rows = {}
    for shard in folder.rglob("cohort-*.parquet"):
        rows[str(shard.relative_to(folder))] = _digest(pq.read_table(shard).to_pylist())
    card = folder.joinpath(raw["pipeline"]["output_dir"], "README.md")
    tokens = _token_section(card.read_text()) if card.exists() else []
    errors = printed.err.strip().splitlines()[-1:] if code else []
    # Paths inside the folder are named relative to it: two folders alike otherwise compare equal.
    mirrored = sorted(memory.find("/weightzoo-keys"))
    seen = json.dumps([code, errors, files, events, rows, tokens, calls, mirrored], default=repr)
    return _digest(seen.replace(str(folder), "<folder>"))


@pytest.mark.parametrize("key", sorted(RUN_CHANGES))
def test_a_key_that_shapes_the_run_changes_it(key, tmp_path, recorders, capsys):
    value, base = RUN_CHANGES[key]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert _is_a_change(tmp_path / "a", base, key, value)
    before = _run_outcome(tmp_path / "a", dict(base), recorders, capsys)
    after = _run_outcome(tmp_path / "b", {**base, key: value}, recorders, capsys)
    assert before != after, f"setting {key} to {value!r} changed nothing the run did"


def test_every_documented_key_has_a_change_that_shows_its_effect():
    keys = documented_keys()
    assert len(keys) > 60 and len(set(keys)) == len(keys)
    covered = set(STAGE_CHANGES) | set(RUN_CHANGES) | set(NO_EFFECT)
    assert set(keys) - covered == set(), "documented, but no test shows what it changes"
    assert covered - set(keys) == set(), "tested, but not documented in docs/config.md"


def test_every_key_of_the_config_is_documented():
    """The other way round: the config model has no key docs/config.md leaves out."""
    from weightzoo.config import Config

    def leaves(model, prefix=""):
        for name in type(model).model_fields:
            value = getattr(model, name)
            if isinstance(value, BaseModel):
                yield from leaves(value, f"{prefix}{name}.")
            else:
                yield f"{prefix}{name}"

    config_keys = set(leaves(Config()))
    documented = set(documented_keys())
    assert config_keys - documented == set()
