"""The batched engine against the plain per-model loop, and the stage rules it must keep per model."""

from __future__ import annotations

import copy
import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from weightzoo.config import parse_config
from weightzoo.data.pools import build_pools
from weightzoo.engine import (
    CohortStats,
    StageRules,
    TrainingJob,
    TrainingResult,
    epoch_order,
    stack_key,
    train_cohort,
)
from weightzoo.engine.model import (
    ACTIVATIONS,
    ModelSpec,
    SubjectMLP,
    build_model,
    encode_inputs,
    fold_input_standardization,
    init_weights,
    input_standardization,
)
from weightzoo.engine.reference import train_one
from weightzoo.plan.examples import plan_example
from weightzoo.plan.jobs import stage_rules, training_job

SEED_CONFIG = Path(__file__).resolve().parents[1] / "configs/seed_example.yaml"
VOCAB, LENGTH = 5, 6
ACTS = list(ACTIVATIONS)  # relu, gelu, tanh, sigmoid, leaky_relu
RULES = StageRules(
    batch_size=16,
    max_stage1_epochs=8,
    max_stage2_epochs=5,
    patience=2,
    min_stage1_improvement=0.05,
    stage2_lr_factor=0.5,
    stage1_deadline_epochs=5,
)
TOL64 = 1e-12  # float64 engine vs float64 loop: they agree to ~1e-13


def synthetic_job(
    i: int,
    *,
    depth: int | None = None,
    width: int | None = None,
    activation: str | None = None,
    lr: float | None = None,
    n_train: int | None = None,
    encoding: str = "index",
) -> TrainingJob:
    """A small problem (is the sum of the first two tokens above that of the last two?) whose stage-1
    labels have a third of the positives flipped; everything drawn from `i`."""
    rng = np.random.default_rng([2024, i])
    depth = depth or int(rng.integers(2, 4))
    width = width or int(rng.integers(5, 13))
    activation = activation or ACTS[i % len(ACTS)]
    lr = lr or float(np.exp(rng.uniform(np.log(3e-3), np.log(5e-2))))
    n_train = n_train or int(rng.integers(30, 91))
    n_val = int(rng.integers(20, 41))
    spec = ModelSpec(VOCAB, LENGTH, depth, width, activation, learning_rate=lr, input_encoding=encoding)
    x = rng.integers(0, VOCAB, size=(n_train + n_val, LENGTH))
    clean = (x[:, 0] + x[:, 1] > x[:, -1] + x[:, -2]).astype(np.int64)
    corrupted = clean.copy()
    positives = np.flatnonzero(clean == 1)
    corrupted[rng.choice(positives, size=len(positives) // 3, replace=False)] = 0
    weights = init_weights(spec, torch.Generator().manual_seed(1000 + i), dtype=torch.float64)
    tr, va = slice(0, n_train), slice(n_train, None)
    return TrainingJob(
        spec=spec,
        x_train=x[tr],
        y_train_stage1=corrupted[tr],
        y_train_stage2=clean[tr],
        x_val=x[va],
        y_val_stage1=corrupted[va],
        y_val_stage2=clean[va],
        init_weights=weights,
        order_seed=7919 * i + 13,
    )


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].shape == b[k].shape, k
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


def assert_same_result(got: TrainingResult, want: TrainingResult, tol: float, what: str = "") -> None:
    counts = ("stage1_epochs", "stage2_epochs", "stage1_best_epoch", "stage2_best_epoch")
    for name in (*counts, "stage1_learned", "finite"):
        assert getattr(got, name) == getattr(want, name), f"{what}: {name}"
    assert max_diff(got.degraded, want.degraded) <= tol, f"{what}: degraded"
    assert max_diff(got.improved, want.improved) <= tol, f"{what}: improved"
    for stage in ("stage1_val_loss", "stage2_val_loss"):
        # float32 sums depend on the stack's padded width, so a different cohort can move the last bits
        np.testing.assert_allclose(got.history[stage], want.history[stage], rtol=max(tol, 1e-9), atol=1e-9)


def val_loss(job: TrainingJob, weights: dict[str, torch.Tensor], stage: int) -> float:
    model = build_model(job.spec, weights, torch.float64).eval()
    labels = job.y_val_stage1 if stage == 1 else job.y_val_stage2
    with torch.no_grad():
        logits = model(encode_inputs(job.x_val, job.spec, torch.float64))
        return float(F.binary_cross_entropy_with_logits(logits, torch.as_tensor(labels, dtype=torch.float64)))


# --------------------------------------------------------------------------------------------------------
# 64 mixed models, the loss watch
# --------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cohort64() -> tuple[list[TrainingJob], list[TrainingResult]]:
    jobs = [synthetic_job(i, encoding="one_hot" if i % 8 == 7 else "index") for i in range(64)]
    return jobs, train_cohort(jobs, RULES, dtype=torch.float64)


def test_the_mix_exercises_padding_empty_batches_and_every_activation(cohort64):
    jobs, results = cohort64
    assert {j.spec.activation_type for j in jobs} == set(ACTS)
    assert {j.spec.num_layers for j in jobs} == {2, 3}
    assert len({j.spec.neurons_per_layer for j in jobs}) >= 6
    assert len({math.ceil(len(j.x_train) / RULES.batch_size) for j in jobs}) >= 3  # some end early
    assert len({j.spec.learning_rate for j in jobs}) == 64
    assert {r.stage1_learned for r in results} == {True, False}
    assert any(0 < r.stage2_best_epoch < r.stage2_epochs for r in results)
    assert any(r.stage1_epochs < RULES.max_stage1_epochs and r.stage1_learned for r in results)


def test_cohort_matches_the_reference_loop_in_float64(cohort64):
    jobs, results = cohort64
    sample = sorted(
        set(range(0, 64, 4)) | {i for i, j in enumerate(jobs) if j.spec.activation_type == "sigmoid"}
    )
    for i in sample:
        assert_same_result(results[i], train_one(jobs[i], RULES), TOL64, f"job {i}")


def test_float32_follows_float64_for_every_activation(cohort64):
    """The float32 engine computes what the float64 one does, to float32's precision, for the untrained
    model and after its first epoch (later epochs may amplify rounding into other choices)."""
    jobs, results = cohort64
    first_epoch = dataclasses.replace(
        RULES, max_stage1_epochs=1, max_stage2_epochs=0, stage1_deadline_epochs=None
    )
    single = train_cohort(jobs, first_epoch, dtype=torch.float32)
    for job, got, want in zip(jobs, single, results, strict=True):
        losses = got.history["stage1_val_loss"]
        np.testing.assert_allclose(
            losses, want.history["stage1_val_loss"][:2], rtol=1e-4, err_msg=str(job.spec)
        )


def test_results_have_the_subject_models_names_and_unpadded_shapes(cohort64):
    jobs, results = cohort64
    for job, result in zip(jobs, results, strict=True):
        want = {k: v.shape for k, v in SubjectMLP(job.spec).state_dict().items()}
        for weights in (result.degraded, result.improved):
            assert {k: v.shape for k, v in weights.items()} == want
            assert all(v.dtype == torch.float64 for v in weights.values())


def replay_stage(
    losses: list[float], patience: int, max_epochs: int, deadline=None, initial=None, need=0.0, stage=1
):
    """The stopping rule recomputed from a stage's validation-loss history (loss watch):
    returns (epochs run, best epoch, learned). Stage 1's starting model is a candidate; stage 2's
    (the degraded model) is not."""
    best, best_epoch, wait = (losses[0] if stage == 1 else math.inf), 0, 0
    for epoch, loss in enumerate(losses[1:], start=1):
        if loss < best:
            best, best_epoch, wait = loss, epoch, 0
        else:
            wait += 1
        learned = initial is not None and best <= initial * (1 - need)
        if (
            wait >= patience
            or epoch >= max_epochs
            or (deadline is not None and epoch >= deadline and not learned)
        ):
            return epoch, best_epoch, learned
    raise AssertionError("the history ends before any stopping rule fired")


def test_every_model_stops_and_checkpoints_by_its_own_history(cohort64):
    """For all 64 models: the epochs run, best epochs and 'learned' follow from each model's own
    validation losses, and each checkpoint really is the model of its best epoch."""
    jobs, results = cohort64
    r = RULES
    for i, (job, res) in enumerate(zip(jobs, results, strict=True)):
        h1 = res.history["stage1_val_loss"]
        assert len(h1) == res.stage1_epochs + 1
        epochs, best, learned = replay_stage(
            h1, r.patience, r.max_stage1_epochs, r.stage1_deadline_epochs, h1[0], r.min_stage1_improvement
        )
        assert (res.stage1_epochs, res.stage1_best_epoch, res.stage1_learned) == (epochs, best, learned), i
        assert res.stage1_epochs <= min(r.max_stage1_epochs, res.stage1_best_epoch + r.patience)
        if not res.stage1_learned:
            assert res.stage1_epochs <= r.stage1_deadline_epochs
        assert val_loss(job, res.degraded, 1) == pytest.approx(h1[res.stage1_best_epoch], rel=1e-9)

        h2 = res.history["stage2_val_loss"]
        if not res.stage1_learned:
            assert h2 == [] and res.stage2_epochs == 0 and res.stage2_best_epoch == 0
            assert all(torch.equal(res.improved[k], res.degraded[k]) for k in res.degraded)
            continue
        assert len(h2) == res.stage2_epochs + 1
        assert h2[0] == pytest.approx(val_loss(job, res.degraded, 2), rel=1e-9)
        epochs, best, _ = replay_stage(h2, r.patience, r.max_stage2_epochs, stage=2)
        assert (res.stage2_epochs, res.stage2_best_epoch) == (epochs, best), i
        assert res.stage2_best_epoch >= 1 or not res.finite  # the improved model was trained on clean labels
        assert res.stage2_epochs <= min(r.max_stage2_epochs, res.stage2_best_epoch + r.patience)
        assert val_loss(job, res.improved, 2) == pytest.approx(h2[res.stage2_best_epoch], rel=1e-9)
        if res.stage2_best_epoch == 0:
            assert all(torch.equal(res.improved[k], res.degraded[k]) for k in res.degraded)


# --------------------------------------------------------------------------------------------------------
# Planned examples, the target watch
# --------------------------------------------------------------------------------------------------------


def small_config(**changes):
    raw = yaml.safe_load(SEED_CONFIG.read_text())
    raw["model"].update(
        num_layers={"min": 2, "max": 3},
        neurons_per_layer={"min": 5, "max": 12},
        activation_types=ACTS,
        learning_rate={"min": 0.003, "max": 0.05},
    )
    raw["dataset"]["patterns"].update(target_total_examples=160, pool_size=300)
    raw["training"].update(epochs=8, batch_size=24, early_stopping={"patience": 2})
    raw["staged_training"].update(
        max_degraded_epochs=5, improvement_epochs=6, corruption_rate=1.0, stage2_watch="target"
    )
    raw["validation"]["test_set_size"] = 100  # accuracy steps of 0.01: drops within the allowed 0.02 occur
    for section, values in changes.items():
        raw[section].update(values)
    return parse_config(raw)


def float64_job(plan, cfg) -> TrainingJob:
    job = training_job(plan, cfg)
    job.init_weights = {k: v.to(torch.float64) for k, v in job.init_weights.items()}
    return job


@pytest.mark.parametrize("negatives_limit", [None, 0.02])
def test_cohort_matches_the_reference_loop_with_the_target_watch(negatives_limit):
    """Negatives held to the other patterns' limit (the default) or to a limit of their own."""
    cfg = small_config(validation={"max_negative_degradation": negatives_limit})
    pools = build_pools(
        cfg.space,
        cfg.dataset.patterns.enabled_patterns,
        cfg.dataset.patterns.pool_size,
        cfg.pipeline.random_seed,
    )
    jobs = [float64_job(plan_example(cfg, pools, i), cfg) for i in range(16)]
    rules = stage_rules(cfg)
    assert rules.stage2_max_other_drop is not None
    assert all(j.x_select is not None and len(j.x_select) for j in jobs)
    negative_allowance = [j.select_allowed_drop[-1] for j in jobs]
    default = cfg.validation.max_other_degradation
    assert negative_allowance == [default if negatives_limit is None else negatives_limit] * len(jobs)
    results = train_cohort(jobs, rules, dtype=torch.float64)
    for i, (job, result) in enumerate(zip(jobs, results, strict=True)):
        assert_same_result(result, train_one(job, rules), TOL64, f"plan {i}")
    assert sum(r.stage1_learned for r in results) >= 8
    # The watch really chose other checkpoints than the clean loss alone would have.
    loss_only = train_cohort(
        jobs, dataclasses.replace(rules, stage2_max_other_drop=None), dtype=torch.float64
    )
    assert any(a.stage2_best_epoch != b.stage2_best_epoch for a, b in zip(results, loss_only, strict=True))


def with_selection_set(job: TrainingJob, i: int) -> TrainingJob:
    rng = np.random.default_rng([99, i])
    x = rng.integers(0, VOCAB, size=(300, LENGTH))
    y = (x[:, 0] + x[:, 1] > x[:, -1] + x[:, -2]).astype(np.int64)
    groups = rng.integers(0, 3, size=300)
    return dataclasses.replace(job, x_select=x, y_select=y, select_groups=groups, target_group=1)


def test_a_job_keeps_its_target_watch_beside_a_job_without_a_selection_set():
    """The reference watches the target whenever the job has a selection set; so must the engine,
    whatever the job's stack companions have."""
    rules = dataclasses.replace(
        RULES, stage2_max_other_drop=0.02, max_stage1_epochs=6, stage1_deadline_epochs=None
    )
    companion = synthetic_job(500, depth=2, activation="relu")  # same stack, no selection set
    for i in range(6):
        watched = with_selection_set(synthetic_job(i, depth=2, activation="relu"), i)
        want = train_one(watched, rules)
        assert_same_result(train_cohort([watched], rules, dtype=torch.float64)[0], want, TOL64, f"{i} alone")
        together = train_cohort([watched, companion], rules, dtype=torch.float64)
        assert_same_result(together[0], want, TOL64, f"{i} beside a job without a selection set")
        assert_same_result(together[1], train_one(companion, rules), TOL64, f"companion of {i}")


# --------------------------------------------------------------------------------------------------------
# Padding, per-model stopping, independence
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("activation", ACTS)
def test_padding_never_changes_a_narrow_model(activation):
    """A narrow model trained beside wider ones (padded with zeros to their width) ends exactly where it
    ends alone: padded units stayed zero and contributed nothing, in every layer."""
    narrow = synthetic_job(10, depth=3, width=5, activation=activation)
    wide = synthetic_job(11, depth=3, width=12, activation=activation)
    middle = synthetic_job(12, depth=3, width=8, activation=activation, n_train=90)
    alone = train_cohort([narrow], RULES, dtype=torch.float64)[0]
    together = train_cohort([wide, narrow, middle], RULES, dtype=torch.float64)
    assert_same_result(together[1], alone, 1e-12, "narrow")
    assert_same_result(together[0], train_cohort([wide], RULES, dtype=torch.float64)[0], 1e-12, "wide")
    assert together[1].degraded["network.0.weight"].shape == (5, LENGTH)
    assert together[1].improved["network.6.weight"].shape == (1, 5)


STOP_RULES = StageRules(
    batch_size=16,
    max_stage1_epochs=8,
    max_stage2_epochs=3,
    patience=10,
    min_stage1_improvement=0.05,
    stage2_lr_factor=0.5,
    stage1_deadline_epochs=4,
)


def test_a_model_that_cannot_learn_stops_at_the_deadline_and_skips_stage_2():
    good = synthetic_job(20, depth=2, width=10, activation="tanh", lr=0.03)
    stuck = synthetic_job(21, depth=2, width=6, activation="tanh", lr=1e-9)
    good_r, stuck_r = train_cohort([good, stuck], STOP_RULES, dtype=torch.float64)

    assert not stuck_r.stage1_learned and stuck_r.finite
    assert stuck_r.stage1_epochs == STOP_RULES.stage1_deadline_epochs
    assert stuck_r.stage2_epochs == 0 and stuck_r.stage2_best_epoch == 0
    assert stuck_r.history["stage2_val_loss"] == []
    assert all(torch.equal(stuck_r.improved[k], stuck_r.degraded[k]) for k in stuck_r.degraded)

    # The good model learns, so the deadline does not stop it; the max epochs of both stages do.
    assert good_r.stage1_learned
    assert good_r.stage1_epochs == STOP_RULES.max_stage1_epochs
    assert good_r.stage2_epochs == STOP_RULES.max_stage2_epochs
    # ... and the stuck model's early stop changed nothing for it.
    assert_same_result(good_r, train_cohort([good], STOP_RULES, dtype=torch.float64)[0], 1e-12, "good")
    assert_same_result(stuck_r, train_one(stuck, STOP_RULES), TOL64, "stuck vs reference")

    # Without a deadline the stuck model runs to the maximum (its loss creeps down, so patience waits).
    no_deadline = dataclasses.replace(STOP_RULES, stage1_deadline_epochs=None)
    stuck_free = train_cohort([good, stuck], no_deadline, dtype=torch.float64)[1]
    assert stuck_free.stage1_epochs == STOP_RULES.max_stage1_epochs and not stuck_free.stage1_learned


def test_one_models_early_stop_does_not_change_another():
    rules = dataclasses.replace(RULES, patience=1, stage1_deadline_epochs=None)
    a = synthetic_job(30, depth=2, width=9, activation="gelu", n_train=80)
    others = [synthetic_job(31 + k, depth=2, activation="gelu") for k in range(5)]
    alone = train_cohort([a], rules, dtype=torch.float64)[0]
    together = train_cohort([*others[:2], a, *others[2:]], rules, dtype=torch.float64)
    assert len({r.stage1_epochs + r.stage2_epochs for r in together}) > 1  # they did stop at different times
    assert_same_result(together[2], alone, 1e-12, "a")


# --------------------------------------------------------------------------------------------------------
# Non-finite models
# --------------------------------------------------------------------------------------------------------


def broken_jobs() -> list[TrainingJob]:
    nan_init = synthetic_job(40, depth=3, width=7, activation="relu")
    nan_init.init_weights = copy.deepcopy(nan_init.init_weights)
    nan_init.init_weights["network.2.weight"][1, 1] = float("nan")
    huge_lr = synthetic_job(41, depth=3, width=9, activation="relu", lr=1e300)
    return [nan_init, huge_lr]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_non_finite_models_stop_alone(dtype):
    healthy = [synthetic_job(50 + k, depth=3, activation="relu") for k in range(5)]
    bad = broken_jobs()
    if dtype == torch.float32:
        bad[1] = synthetic_job(41, depth=3, width=9, activation="relu", lr=1e30)
    results = train_cohort([healthy[0], bad[0], *healthy[1:3], bad[1], *healthy[3:]], RULES, dtype=dtype)
    broke = [results[1], results[4]]
    kept = [results[0], *results[2:4], *results[5:]]
    for r in broke:
        assert not r.finite and not r.stage1_learned
        assert r.stage2_epochs == 0 and r.history["stage2_val_loss"] == []
    assert broke[1].stage1_epochs == 1  # the first epoch's step blew it up
    without = train_cohort(healthy, RULES, dtype=dtype)
    tol = 1e-12 if dtype == torch.float64 else 1e-6
    for k, (got, want) in enumerate(zip(kept, without, strict=True)):
        assert got.finite
        assert_same_result(got, want, tol, f"healthy {k}")


def test_non_finite_models_match_the_reference_loop():
    for job in broken_jobs():
        got = train_cohort([job, synthetic_job(60, depth=3, activation="relu")], RULES, dtype=torch.float64)[
            0
        ]
        want = train_one(job, RULES)
        for name in ("stage1_epochs", "stage2_epochs", "stage1_best_epoch", "stage1_learned", "finite"):
            assert getattr(got, name) == getattr(want, name), name


def test_a_model_that_breaks_in_stage_2_keeps_its_degraded_checkpoint():
    rules = dataclasses.replace(RULES, stage2_lr_factor=1e300)
    jobs = [synthetic_job(70 + k, depth=3, activation="relu") for k in range(3)]
    results = train_cohort(jobs, rules, dtype=torch.float64)
    assert any(r.stage1_learned for r in results)
    for job, got in zip(jobs, results, strict=True):
        want = train_one(job, rules)
        assert_same_result(got, want, TOL64)
        if got.stage1_learned:
            assert not got.finite and got.stage2_epochs == 1 and got.stage2_best_epoch == 0
            assert all(torch.equal(got.improved[k], got.degraded[k]) for k in got.degraded)
            assert all(torch.isfinite(v).all() for v in got.improved.values())


# --------------------------------------------------------------------------------------------------------
# epoch_order, stats
# --------------------------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**62),
    stage=st.sampled_from([1, 2]),
    epoch=st.integers(0, 50),
    n=st.integers(0, 300),
)
def test_epoch_order_is_a_pure_permutation(seed, stage, epoch, n):
    order = epoch_order(seed, stage, epoch, n)
    assert np.issubdtype(order.dtype, np.integer)
    assert np.array_equal(np.sort(order), np.arange(n))
    assert np.array_equal(order, epoch_order(seed, stage, epoch, n))
    if n >= 20:
        others = [epoch_order(seed, stage, epoch + 1, n), epoch_order(seed, 3 - stage, epoch, n)]
        others.append(epoch_order(seed + 1, stage, epoch, n))
        assert not any(np.array_equal(order, o) for o in others)


def test_cohort_stats_count_models_time_and_arithmetic():
    jobs = [synthetic_job(80 + k, depth=2 + k % 2, width=8, activation="relu") for k in range(4)]
    stats = CohortStats()
    results = train_cohort(jobs, RULES, stats=stats)
    assert stats.models == 4 and stats.stacks == len({stack_key(j.spec) for j in jobs}) == 2
    assert stats.seconds > 0 and stats.models_per_second > 0
    # Padded FLOPs can only exceed the real work: forward + backward ~ 6 flops per weight per row.
    real = sum(
        6
        * sum(a * b for a, b in job.spec.layer_sizes)
        * len(job.x_train)
        * (r.stage1_epochs + r.stage2_epochs)
        for job, r in zip(jobs, results, strict=True)
    )
    assert stats.flops >= real > 0
    assert stats.gflops_per_second > 0
    first = (stats.flops, stats.seconds)
    train_cohort(jobs, RULES, stats=stats)
    assert stats.models == 8 and stats.stacks == 4
    assert stats.flops == pytest.approx(2 * first[0]) and stats.seconds > first[1]


def test_dropout_masks_are_each_models_own():
    """With dropout, a model's result still depends only on itself, not on who shares its stack."""

    def with_dropout(job: TrainingJob) -> TrainingJob:
        spec = dataclasses.replace(job.spec, dropout_rate=0.2)  # Linear modules move to 0, 3, 6
        renamed = {
            f"network.{new}.{p}": job.init_weights[f"network.{old}.{p}"]
            for old, new in zip(job.spec.linear_indices, spec.linear_indices, strict=True)
            for p in ("weight", "bias")
        }
        return dataclasses.replace(job, spec=spec, init_weights=renamed)

    jobs = [with_dropout(synthetic_job(90 + k, depth=2, width=8, activation="tanh")) for k in range(3)]
    together = train_cohort(jobs, RULES, dtype=torch.float64)
    alone = train_cohort(jobs[1:2], RULES, dtype=torch.float64)[0]
    assert_same_result(together[1], alone, 1e-12, "dropout")
    no_dropout = train_cohort(
        [synthetic_job(91, depth=2, width=8, activation="tanh")], RULES, dtype=torch.float64
    )
    first_epoch = alone.history["train_loss"][0], no_dropout[0].history["train_loss"][0]
    assert abs(first_epoch[0] - first_epoch[1]) > 1e-6  # the masks did something
    assert set(alone.degraded) == {f"network.{i}.{p}" for i in (0, 3, 6) for p in ("weight", "bias")}


def test_epoch_snapshots_hold_the_checkpoints_and_adam_state_of_the_watched_models():
    rules = dataclasses.replace(RULES, record_batch_loss=True)
    jobs = [synthetic_job(i, depth=2, activation="tanh") for i in range(4)]
    jobs[1] = dataclasses.replace(jobs[1], snapshot_epochs=True, snapshot_optimizer=True)
    jobs[2] = dataclasses.replace(jobs[2], snapshot_epochs=True)
    results = train_cohort(jobs, rules, dtype=torch.float64)
    assert results[0].snapshots == [] and results[3].snapshots == []
    for k in (1, 2):
        r, snaps = results[k], results[k].snapshots
        stages = [(s["stage"], s["epoch"]) for s in snaps]
        assert stages == [(1, e) for e in range(1, r.stage1_epochs + 1)] + [
            (2, e) for e in range(1, r.stage2_epochs + 1)
        ]
        assert r.stage1_best_epoch >= 1
        degraded = snaps[r.stage1_best_epoch - 1]["weights"]
        assert all(torch.equal(degraded[name], r.degraded[name]) for name in r.degraded)
        if r.stage2_best_epoch:
            improved = snaps[r.stage1_epochs + r.stage2_best_epoch - 1]["weights"]
            assert all(torch.equal(improved[name], r.improved[name]) for name in r.improved)
        assert ("adam" in snaps[0]) is (k == 1)
    adam = results[1].snapshots
    per_epoch = math.ceil(len(jobs[1].x_train) / rules.batch_size)  # Adam steps in one epoch
    # Adam's step count grows by an epoch's steps, and restarts with stage 2's fresh state.
    assert [s["adam"]["step"] for s in adam] == [s["epoch"] * per_epoch for s in adam]
    # Adam's second moment is a running mean of squared gradients: never negative, not all zero
    second = adam[-1]["adam"]["exp_avg_sq"]
    assert all((t >= 0).all() for t in second.values()) and any((t > 0).any() for t in second.values())
    # Recording changes nothing about training.
    plain = train_cohort(
        [dataclasses.replace(j, snapshot_epochs=False) for j in jobs], RULES, dtype=torch.float64
    )
    for got, want in zip(results, plain, strict=True):
        assert all(torch.equal(got.improved[n], want.improved[n]) for n in want.improved)


def test_batch_losses_average_to_each_epochs_training_loss():
    rules = dataclasses.replace(RULES, record_batch_loss=True)
    jobs = [synthetic_job(i) for i in range(5)]
    for job, result in zip(jobs, train_cohort(jobs, rules, dtype=torch.float64), strict=True):
        history = result.history
        n, B = len(job.x_train), rules.batch_size
        sizes = [min(B, n - s) for s in range(0, n, B)]
        assert len(history["batch_loss"]) == len(sizes) * len(history["train_loss"])
        for epoch, train_loss in enumerate(history["train_loss"]):
            batch = history["batch_loss"][epoch * len(sizes) : (epoch + 1) * len(sizes)]
            assert np.dot(batch, sizes) / n == pytest.approx(train_loss, rel=1e-12)
    assert "batch_loss" not in train_cohort(jobs[:1], RULES, dtype=torch.float64)[0].history


# --------------------------------------------------------------------------------------------------------
# standardized inputs, min_delta, threads
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["index", "one_hot"])
def test_standardized_training_folds_back_onto_raw_inputs_exactly(encoding):
    """The weights handed back take the raw encoding and compute what the standardized model did."""
    spec = ModelSpec(VOCAB, LENGTH, 2, 6, "relu", input_encoding=encoding)
    weights = init_weights(spec, torch.Generator().manual_seed(3), dtype=torch.float64)
    x = np.random.default_rng(0).integers(0, VOCAB, size=(50, LENGTH))
    shift, scale = input_standardization(spec)
    z = (encode_inputs(x, spec, torch.float64) - torch.as_tensor(shift)) / torch.as_tensor(scale)
    standardized = build_model(spec, weights, torch.float64)(z)
    raw = build_model(spec, fold_input_standardization(spec, weights), torch.float64)(
        encode_inputs(x, spec, torch.float64)
    )
    torch.testing.assert_close(raw, standardized, rtol=0, atol=1e-12)
    # a uniform token's standardized encoding has mean 0 and variance 1
    every = np.indices((VOCAB,)).reshape(1, -1).T.repeat(LENGTH, axis=1)
    zs = (encode_inputs(every, spec, torch.float64) - torch.as_tensor(shift)) / torch.as_tensor(scale)
    torch.testing.assert_close(zs.mean(0), torch.zeros(spec.input_size, dtype=torch.float64))
    torch.testing.assert_close(zs.var(0, unbiased=False), torch.ones(spec.input_size, dtype=torch.float64))


@pytest.mark.parametrize("min_delta", [0.0, 0.02])
def test_standardized_inputs_and_min_delta_match_the_reference_loop(min_delta):
    rules = dataclasses.replace(RULES, min_delta=min_delta)
    jobs = [dataclasses.replace(synthetic_job(i), standardize_inputs=True) for i in range(12)]
    results = train_cohort(jobs, rules, dtype=torch.float64)
    for i, (job, result) in enumerate(zip(jobs, results, strict=True)):
        assert_same_result(result, train_one(job, rules), TOL64, f"job {i}")


def test_min_delta_stops_a_stage_whose_gains_are_too_small():
    jobs = [synthetic_job(i, n_train=90) for i in range(16)]
    patient = dataclasses.replace(RULES, max_stage1_epochs=30, stage1_deadline_epochs=None, patience=3)
    strict = dataclasses.replace(patient, min_delta=0.05)
    loose, tight = (
        train_cohort(jobs, patient, dtype=torch.float64),
        train_cohort(jobs, strict, dtype=torch.float64),
    )
    assert all(t.stage1_epochs <= lo.stage1_epochs for t, lo in zip(tight, loose, strict=True))
    assert sum(t.stage1_epochs for t in tight) < sum(lo.stage1_epochs for lo in loose)
    for job, result in zip(jobs, tight, strict=True):
        losses = result.history["stage1_val_loss"]
        best = result.stage1_best_epoch
        # the checkpoint's loss beat every earlier best by min_delta; later epochs never did
        assert all(loss > losses[best] - 0.05 for loss in losses[best + 1 :]), job.order_seed


def test_stacks_trained_side_by_side_give_the_same_bits_and_leave_the_callers_threads():
    """Batched products split over threads round differently when a stack holds fewer models than
    threads; the engine runs every kernel on one thread and stacks side by side, whatever is asked."""
    jobs = [synthetic_job(i) for i in range(24)]  # several stacks, some of one or two models
    assert min(sum(1 for j in jobs if stack_key(j.spec) == stack_key(k.spec)) for k in jobs) <= 2
    caller = torch.get_num_threads()
    runs = []
    try:
        for torch_threads, threads in [(1, 1), (4, 1), (2, 2), (1, 4)]:
            torch.set_num_threads(torch_threads)
            runs.append(train_cohort(jobs, RULES, dtype=torch.float32, threads=threads))
            assert torch.get_num_threads() == torch_threads  # the caller's setting is left as it was
    finally:
        torch.set_num_threads(caller)
    for run in runs[1:]:
        for a, b in zip(runs[0], run, strict=True):
            for which in ("degraded", "improved"):
                assert all(torch.equal(getattr(a, which)[n], getattr(b, which)[n]) for n in a.degraded)


@pytest.mark.parametrize("encoding", ["index", "one_hot"])
def test_sparse_init_connects_each_first_layer_unit_to_that_many_positions(encoding):
    spec = ModelSpec(VOCAB, LENGTH, 2, 40, "relu", input_encoding=encoding)
    dense = init_weights(spec, torch.Generator().manual_seed(5))
    sparse = init_weights(spec, torch.Generator().manual_seed(5), sparse_positions=2)
    again = init_weights(spec, torch.Generator().manual_seed(5), sparse_positions=2)
    assert all(torch.equal(sparse[k], again[k]) for k in sparse)
    first = sparse["network.0.weight"].reshape(40, LENGTH, -1)
    assert ((first != 0).any(dim=2).sum(dim=1) == 2).all()  # two positions per unit
    # kept weights are the dense draw scaled up by sqrt(length / 2); later layers are untouched
    kept = first != 0
    ratio = first[kept] / dense["network.0.weight"].reshape(40, LENGTH, -1)[kept]
    torch.testing.assert_close(ratio, torch.full_like(ratio, (LENGTH / 2) ** 0.5))
    assert all(torch.equal(sparse[k], dense[k]) for k in sparse if k != "network.0.weight")
    assert torch.equal(
        init_weights(spec, torch.Generator().manual_seed(5), sparse_positions=LENGTH)["network.0.weight"],
        dense["network.0.weight"],
    )
