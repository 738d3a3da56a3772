"""The two-stage schedule of every model in a stack, as plain data and pure functions (no tensors).

`Stages` holds, per model, where it is: its stage (1: corrupted labels, 2: clean labels, 3: done),
its epoch within the stage, its best validation loss and stage-2 score so far, how long it has waited
for a new best, and what it has shown (finite, learned). After each epoch the engine measures each
model's validation loss, stage-2 score and whether its parameters are finite, and `judge_epoch` turns
those into the next `Stages` and the `Actions` the engine then carries out on the tensors (checkpoint
these, zero those, start stage 2 for these). The rules are those of `engine/__init__.py` (and of
`reference.py`, the plain loop they are tested against); every model's transition depends only on its
own numbers, so a model's schedule never depends on which models share its stack.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np

DONE = 3
SCORE_TIE = 1e-12  # stage-2 scores this close are equal; the lower validation loss then wins


@dataclass(frozen=True)
class StageRules:
    batch_size: int
    max_stage1_epochs: int
    max_stage2_epochs: int
    patience: int
    min_stage1_improvement: float
    stage2_lr_factor: float
    stage1_deadline_epochs: int | None = None  # stage 1 must have learned by then (None: no deadline)
    # Stage 2 watches the target: None = clean validation loss only; a number = the most any other
    # validation group may lose (see `engine/__init__.py`).
    stage2_max_other_drop: float | None = None
    stage2_penalty: float = 3.0  # weight of other groups' excess loss against the target's gain
    record_batch_loss: bool = False  # also keep each step's mean training loss (history["batch_loss"])
    # A validation loss counts as a new best only when it is at least this much below the best so far
    # (as Keras' EarlyStopping reads `min_delta`): converged models stop after `patience` epochs of
    # smaller gains instead of training on for the last thousandths.
    min_delta: float = 0.0


@dataclass(frozen=True)
class Stages:
    """Each model's place in the schedule: one entry per model in every array."""

    stage: np.ndarray  # 1, 2 or DONE
    epoch_in_stage: np.ndarray
    wait: np.ndarray  # epochs since the stage's last new best
    finite: np.ndarray  # no non-finite loss or parameter seen
    stage1_learned: np.ndarray
    best_epoch1: np.ndarray
    best_epoch2: np.ndarray
    initial: np.ndarray  # the untrained model's stage-1 validation loss
    best: np.ndarray  # the current stage's best validation loss
    best_score: np.ndarray  # stage 2's score of its best checkpoint (stage 1: always 0)

    @classmethod
    def start(cls, initial_loss: np.ndarray) -> Stages:
        n = len(initial_loss)
        initial = np.asarray(initial_loss, dtype=float)
        return cls(
            stage=np.ones(n, dtype=np.int64),
            epoch_in_stage=np.zeros(n, dtype=np.int64),
            wait=np.zeros(n, dtype=np.int64),
            finite=np.ones(n, dtype=bool),
            stage1_learned=np.zeros(n, dtype=bool),
            best_epoch1=np.zeros(n, dtype=np.int64),
            best_epoch2=np.zeros(n, dtype=np.int64),
            initial=initial.copy(),
            best=initial.copy(),
            best_score=np.zeros(n),
        )

    @property
    def training(self) -> np.ndarray:
        return self.stage < DONE

    def select(self, keep: np.ndarray) -> Stages:
        """The models in `keep` only (a boolean mask or indices)."""
        return Stages(**{f.name: getattr(self, f.name)[keep] for f in fields(self)})


@dataclass(frozen=True)
class Actions:
    """What the engine does to the tensors after an epoch, each a per-model mask."""

    save_degraded: np.ndarray  # checkpoint as the degraded model (a new stage-1 best)
    save_improved: np.ndarray  # checkpoint as the improved model (a new stage-2 best)
    broke: np.ndarray  # non-finite: zero its parameters and moments, it stops here
    ended_stage1: np.ndarray  # the degraded checkpoint becomes the improved one, until stage 2 beats it
    start_stage2: np.ndarray  # restart from the degraded checkpoint, fresh Adam state, clean labels


def begin_epoch(state: Stages) -> Stages:
    """Every model still training starts one more epoch of its stage."""
    return replace(state, epoch_in_stage=state.epoch_in_stage + state.training)


def judge_epoch(
    state: Stages, loss: np.ndarray, score: np.ndarray, finite_now: np.ndarray, rules: StageRules
) -> tuple[Stages, Actions]:
    """The schedule after an epoch whose validation loss, stage-2 score and finiteness (per model) are
    given: new bests are checkpointed, patience and deadlines end stages, stage 1 hands over to stage
    2 only if it learned. `begin_epoch` has counted the epoch already."""
    stage, epoch, training = state.stage, state.epoch_in_stage, state.training
    now_finite = np.isfinite(loss) & finite_now
    better = (score > state.best_score + SCORE_TIE) | (
        (np.abs(score - state.best_score) <= SCORE_TIE) & (loss < state.best - rules.min_delta)
    )
    improved = training & now_finite & better
    best = np.where(improved, loss, state.best)
    best_score = np.where(improved, score, state.best_score)
    best_epoch1 = np.where(improved & (stage == 1), epoch, state.best_epoch1)
    best_epoch2 = np.where(improved & (stage == 2), epoch, state.best_epoch2)
    wait = np.where(improved, 0, state.wait + training)
    broke = training & ~now_finite
    finite = state.finite & ~broke

    learned = best <= state.initial * (1 - rules.min_stage1_improvement)
    out_of_epochs1 = epoch >= rules.max_stage1_epochs
    if rules.stage1_deadline_epochs is not None:
        out_of_epochs1 |= (epoch >= rules.stage1_deadline_epochs) & ~learned
    patience_over = wait >= rules.patience
    end1 = (stage == 1) & (broke | patience_over | out_of_epochs1)
    end2 = (stage == 2) & (broke | patience_over | (epoch >= rules.max_stage2_epochs))
    stage1_learned = np.where(end1, finite & learned, state.stage1_learned)
    go_on = end1 & stage1_learned
    next_stage = stage.copy()
    next_stage[end2 | (end1 & ~go_on)] = DONE
    after = Stages(
        stage=next_stage,
        epoch_in_stage=epoch,
        wait=wait,
        finite=finite,
        stage1_learned=stage1_learned,
        best_epoch1=best_epoch1,
        best_epoch2=best_epoch2,
        initial=state.initial,
        best=best,
        best_score=best_score,
    )
    actions = Actions(improved & (stage == 1), improved & (stage == 2), broke, end1, go_on)
    return after, actions


def begin_stage2(state: Stages, go_on: np.ndarray, rules: StageRules) -> Stages:
    """The models in `go_on` start stage 2: its first epoch is its first best."""
    stage = state.stage.copy()
    stage[go_on] = 2 if rules.max_stage2_epochs > 0 else DONE
    return replace(
        state,
        stage=stage,
        best=np.where(go_on, np.inf, state.best),
        best_score=np.where(go_on, -np.inf, state.best_score),
        wait=np.where(go_on, 0, state.wait),
        epoch_in_stage=np.where(go_on, 0, state.epoch_in_stage),
    )
