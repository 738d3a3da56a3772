"""What a row says of its models is true of them: held-out recall of every enabled pattern, specificity,
the held-out sizes behind them, and a classification completion that names what the model detects."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from weightzoo.config import parse_config
from weightzoo.data.patterns import PATTERN_NAMES, PATTERNS
from weightzoo.data.pools import build_pools, row_keys
from weightzoo.data.probe_sets import make_signature_set
from weightzoo.engine.model import ModelSpec, SubjectMLP, encode_inputs
from weightzoo.judge.audit import Bars, audit_row, fresh_members, fresh_negatives, rebuild
from weightzoo.judge.pairs import held_out_sizes, train_examples
from weightzoo.judge.validation import detected_patterns
from weightzoo.output.rows import accepted_row, model_config, weights_json
from weightzoo.plan.examples import NEGATIVE
from weightzoo.signatures import layer_activations, signature

SEED_CONFIG = Path(__file__).resolve().parents[1] / "configs/seed_example.yaml"


def small_cfg(**validation):
    raw = yaml.safe_load(SEED_CONFIG.read_text())
    raw["model"].update(num_layers={"min": 2, "max": 2}, neurons_per_layer={"min": 16, "max": 16})
    raw["dataset"]["patterns"].update(target_total_examples=400, pool_size=400)
    raw["training"].update(epochs=8, batch_size=64, standardize_inputs=True)
    raw["staged_training"].update(max_degraded_epochs=8, improvement_epochs=6, corruption_rate=0.7)
    raw["validation"].update(test_set_size=30, **validation)
    raw["task_generation"]["include_classification"] = True
    return parse_config(raw)


@cache
def trained(gate: float = 0.85):
    cfg = small_cfg(min_pattern_accuracy=gate, min_negative_accuracy=gate)
    p = cfg.dataset.patterns
    pools = build_pools(cfg.space, p.enabled_patterns, p.pool_size, cfg.pipeline.random_seed)
    return cfg, pools, train_examples(cfg, pools, list(range(12)))


def yes(spec: ModelSpec, weights: dict, rows: np.ndarray) -> np.ndarray:
    model = SubjectMLP(spec)
    model.load_state_dict(weights)
    with torch.no_grad():
        return (model.eval()(encode_inputs(rows, spec)) > 0).numpy()


def test_the_profile_set_holds_unseen_members_of_every_pattern_not_selected():
    cfg, pools, examples = trained()
    enabled = tuple(cfg.dataset.patterns.enabled_patterns)
    for e in examples:
        plan = e.plan
        groups = set(plan.profile.groups)
        assert groups == {p for p in enabled if p not in plan.selected and len(pools[p])}
        seen = set(row_keys(np.concatenate([plan.data.sequences, plan.test.sequences])))
        for name in groups:
            rows = plan.profile.sequences[np.array(plan.profile.groups) == name]
            assert PATTERNS[name].holds(rows, cfg.space).all()
            unseen = [k not in seen for k in row_keys(rows)]
            assert len(rows) == min(30, len(pools[name]))
            if sum(k not in seen for k in row_keys(pools[name])) >= 30:
                assert all(unseen), name  # a pool with enough unseen members gives only those


def test_recall_of_every_enabled_pattern_is_what_the_stored_model_answers_on_held_out_rows():
    cfg, _, examples = trained()
    for e in examples:
        plan = e.plan
        groups = np.array(plan.test.groups + plan.profile.groups)
        rows = np.concatenate([plan.test.sequences, plan.profile.sequences])
        for which in ("degraded", "improved"):
            answers = yes(plan.spec, getattr(e, which), rows)
            expected = {g: float(answers[groups == g].mean()) for g in set(groups) if g != NEGATIVE}
            assert e.recall[which] == pytest.approx(expected, abs=1e-12)
            negatives = groups[: len(plan.test.groups)] == NEGATIVE
            assert e.accuracy[which][NEGATIVE] == pytest.approx(
                1 - answers[: len(negatives)][negatives].mean()
            )
        assert set(e.recall["improved"]) == set(cfg.dataset.patterns.enabled_patterns)
        sizes = held_out_sizes(plan)
        assert sizes[NEGATIVE] == plan.test.groups.count(NEGATIVE)
        assert all(
            sizes[p] == (plan.test.groups + plan.profile.groups).count(p) for p in e.recall["improved"]
        )


def signatures_of(cfg, e) -> dict:
    probe = make_signature_set(cfg.space, tuple(cfg.dataset.patterns.enabled_patterns), 40, 0)
    sequences = np.array([[ord(c) - 65 for c in x["sequence"]] for x in probe["examples"]])
    groups = tuple(x["pattern"] for x in probe["examples"])
    out = {}
    for which in ("degraded", "improved"):
        (acts,) = layer_activations([e.plan.spec], [getattr(e, which)], sequences)
        out[which] = signature(acts, cfg.signature.neuron_profile_methods, groups, model_config(cfg, e))
    return out


@pytest.mark.parametrize("gate", [0.85, 0.0])
def test_the_row_records_the_measurements_and_the_completion_names_what_the_model_detects(gate):
    cfg, _, examples = trained(gate)
    enabled = tuple(cfg.dataset.patterns.enabled_patterns)
    for e in examples[:6]:
        row = accepted_row(cfg, e, signatures_of(cfg, e))
        meta = json.loads(row["metadata"])
        held = meta["held_out"]
        assert held["recall"] == json.loads(json.dumps(e.recall))
        assert held["specificity"] == {w: e.accuracy[w][NEGATIVE] for w in ("degraded", "improved")}
        assert held["sizes"] == held_out_sizes(e.plan)
        named = meta["detected_patterns"]
        assert row["classification_completion"] == ", ".join(named)
        assert named == [p for p in PATTERN_NAMES if p in named]  # canonical order
        if gate:
            assert named == detected_patterns(e.recall["improved"], e.plan.selected, enabled, gate)
            assert all(e.recall["improved"][p] >= gate for p in named)
            assert all(e.recall["improved"][p] < gate for p in enabled if p not in named)
            if e.verdict.accepted:  # the gate checked every selected pattern
                assert set(e.plan.selected) <= set(named)
        else:
            assert named == [p for p in PATTERN_NAMES if p in e.plan.selected]


# --- the audit: a check that shares no code with training ----------------------------------------------
def starts_with_a_detector(spec: ModelSpec) -> dict[str, torch.Tensor]:
    """By hand: 'yes' exactly when the first token is A (index 0): logit = 0.5 - x0 (one ReLU unit)."""
    first = torch.zeros(1, spec.input_size)
    first[0, 0] = 1.0
    return {
        "network.0.weight": first,
        "network.0.bias": torch.zeros(1),
        "network.2.weight": torch.tensor([[-1.0]]),
        "network.2.bias": torch.tensor([0.5]),
    }


def test_the_audit_scores_a_hand_built_model_by_the_patterns_definitions():
    cfg = small_cfg()
    space = cfg.space
    spec = ModelSpec(space.vocab_size, space.length, 1, 1, "relu")
    config = spec.to_config()
    blind = {k: torch.zeros_like(v) for k, v in starts_with_a_detector(spec).items()}  # logit 0: "no"
    row = {
        "example_id": 3,
        "metadata": json.dumps({"selected_patterns": ["starts_with"], "target_pattern": "starts_with"}),
        "degraded_model_weights": weights_json(config, blind, {}),
        "improved_model_weights": weights_json(config, starts_with_a_detector(spec), {}),
    }
    rng = np.random.default_rng(0)
    enabled = ("starts_with", "palindrome", "ends_with")
    fresh = fresh_members(space, enabled, 300, rng)
    negatives = fresh_negatives(space, ("starts_with",), 600, rng)
    assert not PATTERNS["starts_with"].holds(negatives, space).any() and len(set(row_keys(negatives))) == 600
    score = audit_row(row, space, fresh, negatives, Bars())
    improved, degraded = score["recall"]["improved"], score["recall"]["degraded"]
    assert improved["starts_with"] == 1.0 and degraded["starts_with"] == 0.0
    assert score["specificity"] == 1.0 and score["target_gain"] == 1.0 and score["negatives_change"] == 0.0
    # palindromes starting with A: about one in seven
    assert abs(improved["palindrome"] - 1 / 7) < 0.06
    assert score["verified"] and score["completion_true"]
    spec_back, model = rebuild(row["improved_model_weights"])
    assert spec_back == spec and isinstance(model, torch.nn.Module)
    # a completion that names a pattern the model does not detect is not true
    row["metadata"] = json.dumps(
        {
            "selected_patterns": ["starts_with"],
            "target_pattern": "starts_with",
            "detected_patterns": ["ends_with"],
        }
    )
    assert not audit_row(row, space, fresh, negatives, Bars())["completion_true"]


def test_fresh_members_avoid_the_pools_wherever_the_pattern_has_members_to_spare():
    cfg = small_cfg()
    space = cfg.space
    pools = build_pools(space, ("starts_with", "all_same", "palindrome"), 400, 0)
    fresh = fresh_members(
        space, ("starts_with", "all_same", "palindrome"), 200, np.random.default_rng(1), pools
    )
    assert fresh.disjoint == {"starts_with": True, "all_same": False, "palindrome": True}
    for name in ("starts_with", "palindrome"):
        assert not set(row_keys(fresh.members[name])) & set(row_keys(pools[name]))
    assert len(fresh.members["all_same"]) == 7  # all of them
