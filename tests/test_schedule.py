"""The two-stage schedule, without tensors: scripted validation losses in, stages and actions out."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from weightzoo.engine.schedule import DONE, StageRules, Stages, begin_epoch, begin_stage2, judge_epoch

RULES = StageRules(
    batch_size=8,
    max_stage1_epochs=6,
    max_stage2_epochs=4,
    patience=2,
    min_stage1_improvement=0.1,
    stage2_lr_factor=1.0,
    stage1_deadline_epochs=3,
)


def run(losses: list[float], rules: StageRules = RULES, initial: float = 1.0):
    """One model through the schedule on a script of validation losses; returns what happened."""
    state, log = Stages.start(np.array([initial])), []
    for loss in losses:
        if not state.training[0]:
            break
        stage = int(state.stage[0])
        state = begin_epoch(state)
        state, act = judge_epoch(state, np.array([loss]), np.zeros(1), np.array([np.isfinite(loss)]), rules)
        log.append((stage, bool(act.save_degraded[0] or act.save_improved[0]), bool(act.start_stage2[0])))
        if act.start_stage2.any():
            state = begin_stage2(state, act.start_stage2, rules)
    return state, log


def test_a_model_that_learns_goes_on_to_stage_2_and_stops_by_patience():
    state, log = run([0.8, 0.7, 0.75, 0.72, 0.6, 0.65, 0.66, 0.9])
    # stage 1: new bests at 0.8 and 0.7, then two epochs without one: patience ends it, learned
    assert [entry[0] for entry in log] == [1, 1, 1, 1, 2, 2, 2]
    assert log[3][2]  # the fourth epoch hands over to stage 2
    assert log[4][1] and not log[5][1] and not log[6][1]  # stage 2: its first epoch is its first best
    assert state.stage[0] == DONE and state.stage1_learned[0] and state.finite[0]
    assert state.best_epoch1[0] == 2 and state.best_epoch2[0] == 1


def test_a_model_that_has_not_learned_by_the_deadline_skips_stage_2():
    state, log = run([0.99, 0.98, 0.97, 0.5])  # never 10% below the untrained model's 1.0 by epoch 3
    assert len(log) == 3 and not any(entry[2] for entry in log)
    assert state.stage[0] == DONE and not state.stage1_learned[0]


def test_a_non_finite_loss_ends_the_model_as_not_finite():
    state, log = run([0.5, float("nan"), 0.4])
    assert len(log) == 2 and state.stage[0] == DONE and not state.finite[0] and not state.stage1_learned[0]


def test_gains_below_min_delta_are_not_new_bests():
    rules = StageRules(**{**RULES.__dict__, "min_delta": 0.05, "stage1_deadline_epochs": None})
    state, log = run([0.8, 0.79, 0.78, 0.5], rules)
    assert [entry[1] for entry in log[:3]] == [True, False, False]  # 0.79, 0.78: gains below 0.05
    assert log[2][2] and log[3][0] == 2  # patience (2) over after the third epoch: on to stage 2
    assert state.stage[0] == 2 and state.best_epoch1[0] == 1


@settings(max_examples=200, deadline=None)
@given(
    losses=st.lists(
        st.lists(st.floats(0.0, 2.0) | st.just(float("nan")), min_size=5, max_size=5), min_size=1, max_size=6
    ),
    epochs=st.integers(1, 12),
)
def test_each_models_schedule_is_its_own(losses, epochs):
    """Judged together or alone, every model goes through exactly the same schedule."""
    n = len(losses)
    together = Stages.start(np.ones(n))
    alone = [Stages.start(np.ones(1)) for _ in range(n)]
    for epoch in range(epochs):
        loss = np.array([row[epoch % 5] for row in losses])
        score = np.zeros(n)
        together = begin_epoch(together)
        together, act = judge_epoch(together, loss, score, np.isfinite(loss), RULES)
        together = begin_stage2(together, act.start_stage2, RULES)
        for i in range(n):
            one = begin_epoch(alone[i])
            one, own = judge_epoch(one, loss[i : i + 1], score[:1], np.isfinite(loss[i : i + 1]), RULES)
            alone[i] = begin_stage2(one, own.start_stage2, RULES)
            for field in ("save_degraded", "save_improved", "broke", "ended_stage1", "start_stage2"):
                assert getattr(own, field)[0] == getattr(act, field)[i]
    for i in range(n):
        mine = together.select([i])
        for field in ("stage", "epoch_in_stage", "wait", "finite", "stage1_learned", "best_epoch1"):
            assert np.array_equal(getattr(mine, field), getattr(alone[i], field)), field
