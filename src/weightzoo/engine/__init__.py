"""The batched two-stage training engine: many subject models trained as one tensor program.

The package, along the data flow: `model.py` (the subject model: spec, encoding, initial weights),
`jobs.py` (a model's training problem in, its result out; stacks and row orders), `rows.py` (a
stack's rows as padded tensors), `layout.py` (a stack's parameters packed in one flat buffer, and
unpacked), `mlp.py` (the stacked MLP's forward and backward, with the activations of
`weightzoo.activations`), `adam.py` (Adam with each model's own learning rate), `step_kernel.py` (the
same step compiled, what trains on the CPU where a C++ compiler is found), `schedule.py` (the two
stages as plain data and pure functions), `stack.py` (the loop that runs one stack) and `cohort.py`
(`train_cohort`: jobs grouped into stacks, stacks side by side on threads). `reference.py` is the
plain loop the engine is tested against; `devices.py` resolves `pipeline.device`.

Models that share depth, activation, input size, dropout and a band of widths are stacked: each layer's
weights become one tensor with a leading model dimension, and every step is a handful of batched
matmuls (`baddbmm`) for all of them at once. Narrower models are padded with exact zeros to the widest;
a padded unit's weights and bias are zero, so it outputs act(0) (zero for every activation but sigmoid,
whose output is masked), gets exactly zero gradient and stays zero under Adam. Padding never changes a
model's math.

A step is written out in full: forward and backpropagation with PyTorch's own fused activation-gradient
kernels (`mlp.py`), then Adam through PyTorch's fused kernel, scaled by each model's learning rate
(`adam.py`). On the CPU the same step runs compiled (`step_kernel.py`): one call per step for the whole
stack, model by model, which removes the ~100 operations' dispatch and passes over memory. All
parameters of a stack live in one flat buffer (`layout.py`), so Adam, checkpoints and
finite checks are a few whole-buffer operations; models that finish are dropped from the stack so they
cost nothing more.
`CohortStats` reports models/s and the achieved GFLOP/s.

Each model keeps its own data, batch order, learning rate, Adam state, early stopping and stage. The
rules, for every model independently (they are the same as `reference.py`, the plain loop the engine
is tested against):

Stage 1 trains on the corrupted labels (train split), evaluating the corrupted validation loss after
each epoch. The lowest loss so far is checkpointed; the stage stops after `patience` epochs without a
new lowest, after `max_stage1_epochs`, or when the loss is not finite. The checkpoint is the degraded
model. It counts as having learned only if its loss is at least `min_stage1_improvement` (relative)
below the untrained model's, and it must get there within `stage1_deadline_epochs` epochs (else stage 1
stops then). A model that did not learn skips stage 2 (its example is rejected): a degraded model must
have learned the other patterns, not merely be untrained.

Stage 2 starts from the degraded checkpoint with fresh Adam state and learning rate × `stage2_lr_factor`
and trains on the clean labels. After each epoch it scores the model on the validation split and
checkpoints a new best score. Only stage 2's own epochs are candidates: the improved model has always
been trained on clean labels, never the degraded model handed back unchanged. (With the degraded model
as a candidate, a third of the seed config's examples kept it, since a noisy validation loss picked at
its stage-1 minimum is hard to beat within the patience, and every one of them was then rejected as
`target_not_improved`: 33% of 512 examples were accepted, against 45% now.)
With a target watch (`stage2_max_other_drop` set) the score is measured on a held-out selection set (never
trained on): the gain in accuracy on the target pattern's rows over the degraded model, minus
`stage2_penalty` times the accuracy each other group (each other selected pattern, the negatives) lost
beyond its allowance (the job's `select_allowed_drop`, else `stage2_max_other_drop`). Equal scores are
broken by the lower clean validation loss. Without a watch the score is the clean validation loss alone. (A
hard rule, "no other group may lose more", found an admissible epoch for almost no model; penalties of 0.3,
1 and 3 accepted 8, 11 and 14 of 128 examples of the seed's config, the clean loss alone 12.) Stage 2 stops
after `patience` epochs without a new best, or after `max_stage2_epochs`. The best checkpoint is the
improved model.
"""

from weightzoo.engine.cohort import train_cohort
from weightzoo.engine.jobs import (
    WIDTH_BAND,
    CohortStats,
    Padding,
    TrainingJob,
    TrainingResult,
    epoch_order,
    epoch_orders,
    stack_key,
)
from weightzoo.engine.schedule import StageRules, Stages

__all__ = [
    "WIDTH_BAND",
    "CohortStats",
    "Padding",
    "StageRules",
    "Stages",
    "TrainingJob",
    "TrainingResult",
    "epoch_order",
    "epoch_orders",
    "stack_key",
    "train_cohort",
]
