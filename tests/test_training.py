"""Planning examples (a pure function of config, seed and index) and training them into judged pairs."""

from __future__ import annotations

import dataclasses
import time
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from weightzoo.config import parse_config
from weightzoo.data.patterns import PATTERN_NAMES, PATTERNS
from weightzoo.data.pools import build_pools, row_key
from weightzoo.data.space import SequenceSpace
from weightzoo.engine.model import SubjectMLP, encode_inputs
from weightzoo.judge.pairs import group_accuracy, thresholds, train_examples
from weightzoo.judge.quantize import apply_precision_and_quantization
from weightzoo.judge.validation import judge
from weightzoo.plan.examples import NEGATIVE, ExamplePlan, _hold_out, held_out_is_unseen, plan_example
from weightzoo.plan.jobs import stack_padding, stage_rules, training_job

SEED_CONFIG = Path(__file__).resolve().parents[1] / "configs/seed_example.yaml"
ACTS = ["relu", "gelu", "tanh", "sigmoid", "leaky_relu"]


def small_raw(**changes) -> dict:
    raw = yaml.safe_load(SEED_CONFIG.read_text())
    raw["model"].update(
        num_layers={"min": 2, "max": 3},
        neurons_per_layer={"min": 8, "max": 12},
        activation_types=ACTS,
        learning_rate={"min": 0.002, "max": 0.02},
    )
    raw["dataset"]["patterns"].update(target_total_examples=200, pool_size=300)
    raw["training"].update(epochs=6, batch_size=32, early_stopping={"patience": 3})
    raw["staged_training"].update(
        max_degraded_epochs=4, improvement_epochs=4, corruption_rate=0.6, stage2_watch="target"
    )
    raw["validation"]["test_set_size"] = 20
    for section, values in changes.items():
        raw[section].update(values)
    return raw


@cache
def setup(key: str = "default"):
    raw = small_raw(**CONFIGS[key])
    cfg = parse_config(raw)
    p = cfg.dataset.patterns
    return cfg, build_pools(cfg.space, p.enabled_patterns, p.pool_size, cfg.pipeline.random_seed)


CONFIGS = {
    "default": {},
    "full_corruption": {"staged_training": {"corruption_rate": 1.0}},
    "quantized": {"model": {"precision": "bfloat16", "quantization": "int4"}},
}


def assert_same_plan(a: ExamplePlan, b: ExamplePlan) -> None:
    assert (a.index, a.selected, a.target, a.spec, a.order_seed) == (
        b.index,
        b.selected,
        b.target,
        b.spec,
        b.order_seed,
    )
    for f in dataclasses.fields(a.data):
        x, y = getattr(a.data, f.name), getattr(b.data, f.name)
        assert np.array_equal(x, y) if isinstance(x, np.ndarray) else x == y, f.name
    assert np.array_equal(a.is_val, b.is_val) and np.array_equal(a.corrupted, b.corrupted)
    for which in ("test", "selection"):
        sa, sb = getattr(a, which), getattr(b, which)
        assert np.array_equal(sa.sequences, sb.sequences) and sa.groups == sb.groups
    assert a.init_weights.keys() == b.init_weights.keys()
    assert all(torch.equal(a.init_weights[k], b.init_weights[k]) for k in a.init_weights)


def plans_differ(a: ExamplePlan, b: ExamplePlan) -> bool:
    try:
        assert_same_plan(dataclasses.replace(a, index=b.index), b)
    except AssertionError:
        return True
    return False


# --------------------------------------------------------------------------------------------------------
# plan_example
# --------------------------------------------------------------------------------------------------------


def test_a_plan_is_a_pure_function_of_config_seed_and_index():
    cfg, pools = setup()
    fresh_cfg = parse_config(small_raw())
    p = fresh_cfg.dataset.patterns
    fresh_pools = build_pools(
        fresh_cfg.space, p.enabled_patterns, p.pool_size, fresh_cfg.pipeline.random_seed
    )
    alone = plan_example(fresh_cfg, fresh_pools, 5)
    earlier = [plan_example(cfg, pools, i) for i in range(5)]
    after_others = plan_example(cfg, pools, 5)
    assert_same_plan(after_others, alone)
    assert_same_plan(plan_example(cfg, pools, 5), alone)
    # Planning did not disturb the pools: the earlier plans come out the same again.
    for i, plan in enumerate(earlier):
        assert_same_plan(plan_example(fresh_cfg, fresh_pools, i), plan)
    assert all(plans_differ(alone, other) for other in earlier)


def test_a_different_seed_gives_different_plans():
    cfg, pools = setup()
    other_cfg = parse_config(small_raw(pipeline={"random_seed": 43}))
    assert all(plans_differ(plan_example(cfg, pools, i), plan_example(other_cfg, pools, i)) for i in range(4))


@pytest.mark.parametrize("key", ["default", "full_corruption"])
def test_plans_keep_to_the_config_and_corrupt_only_eligible_target_rows(key):
    cfg, pools = setup(key)
    m, pat = cfg.model, cfg.dataset.patterns
    rate = cfg.staged_training.corruption_rate
    seen = {"activations": set(), "depths": set(), "widths": set(), "counts": set(), "corrupting": 0}
    for index in range(30):
        plan = plan_example(cfg, pools, index)
        spec = plan.spec
        assert m.learning_rate.min <= spec.learning_rate <= m.learning_rate.max
        assert m.num_layers.min <= spec.num_layers <= m.num_layers.max
        assert m.neurons_per_layer.min <= spec.neurons_per_layer <= m.neurons_per_layer.max
        assert spec.activation_type in m.activation_types
        assert pat.min_patterns_per_batch <= len(plan.selected) <= pat.max_patterns_per_batch
        assert set(plan.selected) <= set(pat.enabled_patterns) and len(set(plan.selected)) == len(
            plan.selected
        )
        assert plan.target in plan.selected
        seen["activations"].add(spec.activation_type)
        seen["depths"].add(spec.num_layers)
        seen["widths"].add(spec.neurons_per_layer)
        seen["counts"].add(len(plan.selected))

        data, enabled = plan.data, plan.data.enabled
        assert plan.is_val.sum() == round(len(data) * cfg.training.validation_split)

        # Corrupted rows: drawn for the target, satisfying it and none of the other selected patterns.
        target_col = enabled.index(plan.target)
        other_cols = [enabled.index(s) for s in plan.selected if s != plan.target]
        eligible = (data.source == plan.selected.index(plan.target)) & data.matches[:, target_col]
        if other_cols:
            eligible &= ~data.matches[:, other_cols].any(axis=1)
        assert not (plan.corrupted & ~eligible).any()
        assert plan.corrupted.sum() == round(rate * eligible.sum())
        seen["corrupting"] += bool(plan.corrupted.any())
        stats = plan.corruption_stats()
        assert stats["corrupted_rows"] == plan.corrupted.sum()
        assert stats["corrupted_train_rows"] + stats["corrupted_val_rows"] == stats["corrupted_rows"]

        # Stage 1's labels differ from the clean ones exactly on the corrupted rows (positives made negative).
        differs = plan.stage1_labels != data.labels
        assert np.array_equal(differs, plan.corrupted)
        assert (data.labels[plan.corrupted] == 1).all() and (plan.stage1_labels[plan.corrupted] == 0).all()

        # Held-out groups: members of their pattern; negatives satisfy no selected pattern.
        for which in (plan.test, plan.selection):
            groups = np.array(which.groups)
            for name in plan.selected:
                rows = which.sequences[groups == name]
                assert len(rows) and PATTERNS[name].holds(rows, cfg.space).all()
            negatives = which.sequences[groups == NEGATIVE]
            assert len(negatives) == cfg.validation.test_set_size
            assert not any(PATTERNS[name].holds(negatives, cfg.space).any() for name in plan.selected)
            assert np.array_equal(which.labels, (groups != NEGATIVE).astype(np.int64))
    # Thirty plans cover the configured choices.
    assert seen["activations"] == set(ACTS)
    assert seen["depths"] == {2, 3}
    assert len(seen["widths"]) >= 4
    assert len(seen["counts"]) >= 3
    # A target whose rows all satisfy another selected pattern (all_same beside palindrome) has none.
    assert seen["corrupting"] >= 20


def test_held_out_rows_are_never_trained_on():
    """No test or selection sequence may be a training row, and the two held-out sets share none.
    Pools of different patterns overlap (an alternating sequence of odd length is a palindrome), so
    setting a row aside from its own pattern's pool is not enough. Checked on the seed's own config."""
    raw = yaml.safe_load(SEED_CONFIG.read_text())
    raw["staged_training"]["stage2_watch"] = "target"  # draws the selection set too
    cfg = parse_config(raw)
    p = cfg.dataset.patterns
    pools = build_pools(cfg.space, p.enabled_patterns, p.pool_size, cfg.pipeline.random_seed)
    leaks = []
    for index in range(40):
        plan = plan_example(cfg, pools, index)
        if not held_out_is_unseen(plan):
            train = {row_key(r) for r in plan.data.sequences}
            test = {row_key(r) for r in plan.test.sequences}
            selection = {row_key(r) for r in plan.selection.sequences}
            leaks.append((index, len(test & train), len(selection & train), len(test & selection)))
    assert leaks == [], "(index, test rows trained on, selection rows trained on, rows in both sets)"


def test_stage_rules_and_thresholds_come_from_the_config():
    cfg, _ = setup()
    rules = stage_rules(cfg)
    assert rules.batch_size == cfg.training.batch_size
    assert rules.max_stage1_epochs == cfg.training.epochs
    assert rules.stage1_deadline_epochs == cfg.staged_training.max_degraded_epochs
    assert rules.max_stage2_epochs == cfg.staged_training.improvement_epochs
    assert rules.patience == cfg.training.early_stopping.patience
    assert rules.stage2_lr_factor == cfg.staged_training.improvement_lr_factor
    assert rules.stage2_max_other_drop == cfg.validation.max_other_degradation
    unwatched = parse_config(small_raw(validation={"pattern_specific": False}))
    assert stage_rules(unwatched).stage2_max_other_drop is None
    t = thresholds(cfg)
    assert t.min_overall_gain == cfg.training.min_degradation_threshold
    assert t.min_pattern_improvement == cfg.validation.min_pattern_improvement


# --------------------------------------------------------------------------------------------------------
# train_examples
# --------------------------------------------------------------------------------------------------------


@cache
def trained(key: str, indices: tuple[int, ...]):
    cfg, pools = setup(key)
    return train_examples(cfg, pools, list(indices))


def test_training_the_same_examples_twice_gives_identical_results():
    cfg, pools = setup()
    first = trained("default", tuple(range(8)))
    second = train_examples(cfg, pools, list(range(8)))
    for a, b in zip(first, second, strict=True):
        for which in ("degraded", "improved"):
            wa, wb = getattr(a, which), getattr(b, which)
            assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
        assert a.scales == b.scales
        assert a.accuracy == b.accuracy
        assert a.verdict == b.verdict
        assert (a.result.stage1_epochs, a.result.stage2_epochs) == (
            b.result.stage1_epochs,
            b.result.stage2_epochs,
        )
    assert len({e.plan.index for e in first}) == 8


@pytest.mark.parametrize("key", ["default", "quantized"])
def test_an_example_trains_the_same_alone_or_beside_others(key):
    """Stacks are padded to the config's largest sizes, so a model's every bit is the same whichever
    models share its stack (here with the target watch's selection sets too)."""
    cfg, pools = setup(key)
    together = trained(key, tuple(range(8)))
    for example in together[:4]:
        alone = train_examples(cfg, pools, [example.plan.index])[0]
        for which in ("degraded", "improved"):
            a, b = getattr(alone, which), getattr(example, which)
            assert all(torch.equal(a[name], b[name]) for name in a), (example.plan.index, which)
        assert alone.accuracy == example.accuracy and alone.verdict == example.verdict


def test_the_padding_holds_every_example_of_the_config():
    for key in CONFIGS:
        cfg, pools = setup(key)
        padding = stack_padding(cfg)
        for index in range(40):
            job = training_job(plan_example(cfg, pools, index), cfg)
            assert job.spec.neurons_per_layer <= padding.max_width
            assert len(job.x_train) <= padding.train_rows and len(job.x_val) <= padding.val_rows
            assert job.x_select is None or len(job.x_select) <= padding.select_rows
    # and it is the largest: some example of the seed's config fills the training rows exactly
    cfg = parse_config(yaml.safe_load(SEED_CONFIG.read_text()))
    pools = build_pools(cfg.space, cfg.dataset.patterns.enabled_patterns, 300, 0)
    rows = {len(training_job(plan_example(cfg, pools, i), cfg).x_train) for i in range(40)}
    assert max(rows) == stack_padding(cfg).train_rows


def test_train_examples_splits_its_time_into_planning_training_and_validating():
    cfg, pools = setup()
    seconds = {"plan": 1.0}  # added to, not replaced
    start = time.perf_counter()
    train_examples(cfg, pools, [0, 1], seconds=seconds)
    elapsed = time.perf_counter() - start
    assert list(seconds) == ["plan", "train", "validate"]
    assert seconds["plan"] > 1.0 and seconds["train"] > 0 and seconds["validate"] > 0
    assert sum(seconds.values()) - 1.0 <= elapsed


@pytest.mark.parametrize("key", ["default", "quantized"])
def test_stored_weights_accuracies_and_verdicts_follow_from_the_training_result(key):
    cfg, _ = setup(key)
    examples = trained(key, tuple(range(8)))
    assert {e.verdict.accepted for e in examples} <= {True, False}
    for e in examples:
        for which in ("degraded", "improved"):
            want, scales = apply_precision_and_quantization(
                getattr(e.result, which), cfg.model.precision, cfg.model.quantization
            )
            stored = getattr(e, which)
            assert all(torch.equal(stored[k], want[k]) for k in want) and e.scales[which] == scales
            assert e.accuracy[which] == group_accuracy(e.plan, stored)
            if key == "quantized":
                for w in stored.values():
                    assert len(torch.unique(w)) <= 15
                    assert torch.equal(w.to(torch.bfloat16).to(torch.float32), w)
        assert set(e.accuracy["degraded"]) == {*e.plan.selected, NEGATIVE, "overall"}
        want = judge(
            e.plan.target,
            e.accuracy["degraded"],
            e.accuracy["improved"],
            thresholds(cfg),
            e.result.finite,
            e.result.stage1_learned,
        )
        assert e.verdict == want


def test_group_accuracy_matches_a_direct_computation():
    examples = trained("default", tuple(range(8)))
    for e in examples:
        plan = e.plan
        for weights in (e.degraded, e.improved, plan.init_weights):
            model = SubjectMLP(plan.spec)
            model.load_state_dict(weights)
            model.eval()
            with torch.no_grad():
                logits = model(encode_inputs(plan.test.sequences, plan.spec))
            predicted = (torch.sigmoid(logits) > 0.5).numpy()
            truth = np.array([g != NEGATIVE for g in plan.test.groups])
            got = group_accuracy(plan, weights)
            for group in (*plan.selected, NEGATIVE):
                rows = np.array([g == group for g in plan.test.groups])
                assert got[group] == pytest.approx(np.mean(predicted[rows] == truth[rows]), abs=1e-12)
            assert got["overall"] == pytest.approx(np.mean(predicted == truth), abs=1e-12)


def test_the_loss_watch_draws_no_selection_set_and_trains_without_one():
    cfg = parse_config(small_raw(staged_training={"stage2_watch": "loss"}))
    p = cfg.dataset.patterns
    pools = build_pools(cfg.space, p.enabled_patterns, p.pool_size, cfg.pipeline.random_seed)
    plan = plan_example(cfg, pools, 3)
    assert plan.selection is None and held_out_is_unseen(plan)
    assert stage_rules(cfg).stage2_max_other_drop is None
    assert training_job(plan, cfg).x_select is None


@given(
    seed=st.integers(0, 2**32 - 1),
    chosen=st.lists(st.sampled_from(PATTERN_NAMES), min_size=1, max_size=5, unique=True),
    size=st.integers(0, 60),
    count=st.integers(1, 2),
    pool_size=st.integers(5, 400),
)
@settings(max_examples=40, deadline=None)
def test_held_out_rows_are_the_same_with_or_without_the_fast_path(seed, chosen, size, count, pool_size):
    """The fast path (no pool can reach its floor) takes exactly the rows the careful loop takes."""
    space = SequenceSpace(vocab_size=5, length=5)
    selected = tuple(name for name in PATTERN_NAMES if name in chosen)
    pools = build_pools(space, selected, pool_size, seed)
    fast = _hold_out(space, pools, selected, size, np.random.default_rng(seed), count)
    careful = _hold_out(space, pools, selected, size, np.random.default_rng(seed), count, careful_only=True)
    for got, want in zip(fast[0], careful[0], strict=True):
        assert np.array_equal(got.sequences, want.sequences) and got.groups == want.groups
    assert all(np.array_equal(fast[1][name], careful[1][name]) for name in selected)
    assert np.array_equal(fast[2], careful[2])


@pytest.mark.parametrize("threads", [2, 4])
def test_the_seeds_config_trains_to_the_same_bits_with_any_thread_count(threads):
    """Where it showed: with torch's threads, 14 of 16 of the seed config's examples trained to other
    bits on 2 workers than on 1. Any caller thread count and any engine threads give one answer."""
    cfg = parse_config(yaml.safe_load(SEED_CONFIG.read_text()))
    pools = build_pools(cfg.space, cfg.dataset.patterns.enabled_patterns, 300, 0)
    indices = list(range(16))
    caller = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = train_examples(cfg, pools, indices, threads=1)
        torch.set_num_threads(threads)
        many = train_examples(cfg, pools, indices, threads=threads)
    finally:
        torch.set_num_threads(caller)
    for a, b in zip(one, many, strict=True):
        for which in ("degraded", "improved"):
            w, v = getattr(a, which), getattr(b, which)
            assert all(torch.equal(w[n], v[n]) for n in w), (a.plan.index, which)
        assert a.accuracy == b.accuracy and a.recall == b.recall


def test_a_dataset_factor_multiplies_the_rows_of_models_that_select_the_pattern_and_trains_them_apart():
    raw = small_raw()
    raw["dataset"]["patterns"]["pattern_dataset_factor"] = {"palindrome": 3}
    cfg = parse_config(raw)
    p = cfg.dataset.patterns
    pools = build_pools(cfg.space, p.enabled_patterns, p.pool_size, cfg.pipeline.random_seed)
    plans = [plan_example(cfg, pools, i) for i in range(24)]
    big = [plan for plan in plans if "palindrome" in plan.selected]
    assert big and len(big) < len(plans)
    for plan in plans:
        factor = 3 if "palindrome" in plan.selected else 1
        assert abs(len(plan.data) - factor * p.target_total_examples) <= 2 * len(plan.selected) + 1
        padding = stack_padding(cfg, factor)
        assert len(training_job(plan, cfg).x_train) <= padding.train_rows
    assert stack_padding(cfg, 3).train_rows > 2 * stack_padding(cfg, 1).train_rows
    # an example of either size trains to the same bits alone as beside the others
    together = train_examples(cfg, pools, list(range(24)))
    for example in (
        together[plans.index(big[0])],
        together[plans.index(next(q for q in plans if q not in big))],
    ):
        alone = train_examples(cfg, pools, [example.plan.index])[0]
        for which in ("degraded", "improved"):
            a, b = getattr(alone, which), getattr(example, which)
            assert all(torch.equal(a[n], b[n]) for n in a)
