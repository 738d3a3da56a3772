"""Keep or discard an example: does stage 2 repair the target without breaking the rest, and does the
improved model really detect what its labels say?

Judged on the example's held-out test set (never trained on), with the stored (rounded, quantized)
models. A group's accuracy is the fraction of its rows classified correctly: positives as positive
for a pattern (its recall), negatives as negative (specificity). The rules, in the order they are
checked (the first that fails is the recorded reason; all failures are kept in `failures`):

1. `non_finite`: training produced NaN or inf.
2. `stage1_did_not_learn`: stage 1's validation loss never fell `min_improvement_threshold` below the
   untrained model's: the degraded model would be merely untrained.
3. `target_not_improved`: improved − degraded accuracy on the target pattern < `min_pattern_improvement`.
4. `other_pattern_degraded`: some other selected pattern lost more than `max_other_degradation`.
5. `negatives_degraded`: accuracy on negatives fell more than `max_negative_degradation` (by default
   the same limit as the other patterns): a repair must be specific to the target, not a model that
   says "yes" more often.
6. `pattern_below_min_accuracy`: the improved model's recall of some selected pattern is below
   `min_pattern_accuracy`: the example's labels would claim a pattern it does not detect.
7. `negatives_below_min_accuracy`: the improved model's specificity is below `min_negative_accuracy`:
   it answers "yes" to too many sequences matching none of its patterns.
8. `overall_gain_too_small`: overall accuracy gained less than `min_degradation_threshold`.

With `validation.pattern_specific: false`, rules 3-5 are skipped; rules 6-7 (the quality gate) apply
whatever the repair rules are, and a threshold of 0 turns each off.

How large the held-out set must be for the gate: with n rows of a pattern whose true recall is p, the
measured recall has standard error sqrt(p(1-p)/n). At n = 100 a model with true recall 0.80 passes a
0.85 gate one time in nine (z = 1.25); at n = 300, one time in seventy (z = 2.2). The bundled
recommended config holds out 300 per pattern; the seed's config keeps its own `test_set_size: 100`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from weightzoo.data.patterns import PATTERN_NAMES

NEGATIVE = "negative"
_TOL = 1e-9  # accuracies are ratios of counts: compare them without float noise
REASONS = (
    "non_finite",
    "stage1_did_not_learn",
    "target_not_improved",
    "other_pattern_degraded",
    "negatives_degraded",
    "pattern_below_min_accuracy",
    "negatives_below_min_accuracy",
    "overall_gain_too_small",
)


@dataclass(frozen=True)
class Thresholds:
    pattern_specific: bool
    min_pattern_improvement: float
    max_other_degradation: float
    min_overall_gain: float
    max_negative_degradation: float | None = None  # None: the same limit as the other patterns
    min_pattern_accuracy: float = 0.0  # the improved model's recall of every selected pattern
    min_negative_accuracy: float = 0.0  # the improved model's specificity

    @property
    def negative_limit(self) -> float:
        if self.max_negative_degradation is None:
            return self.max_other_degradation
        return self.max_negative_degradation


@dataclass
class Verdict:
    accepted: bool
    reason: str | None
    failures: list[str] = field(default_factory=list)
    target_gain: float = float("nan")
    overall_gain: float = float("nan")


def judge(
    target: str,
    degraded: dict[str, float],
    improved: dict[str, float],
    thresholds: Thresholds,
    finite: bool = True,
    stage1_learned: bool = True,
) -> Verdict:
    """`degraded`/`improved` map each group (selected patterns, "negative", and "overall") to accuracy."""
    failures: list[str] = []
    if not finite:
        failures.append("non_finite")
    if not stage1_learned:
        failures.append("stage1_did_not_learn")
    target_gain = improved[target] - degraded[target]
    overall_gain = improved["overall"] - degraded["overall"]
    if thresholds.pattern_specific:
        if not target_gain >= thresholds.min_pattern_improvement - _TOL:
            failures.append("target_not_improved")
        others = [g for g in degraded if g not in (target, NEGATIVE, "overall")]
        if any(not degraded[g] - improved[g] <= thresholds.max_other_degradation + _TOL for g in others):
            failures.append("other_pattern_degraded")
        lost_on_negatives = degraded.get(NEGATIVE, 0.0) - improved.get(NEGATIVE, 0.0)
        if not lost_on_negatives <= thresholds.negative_limit + _TOL:
            failures.append("negatives_degraded")
    patterns = [g for g in improved if g not in (NEGATIVE, "overall")]
    if any(not improved[g] >= thresholds.min_pattern_accuracy - _TOL for g in patterns):
        failures.append("pattern_below_min_accuracy")
    if NEGATIVE in improved and not improved[NEGATIVE] >= thresholds.min_negative_accuracy - _TOL:
        failures.append("negatives_below_min_accuracy")
    if not overall_gain >= thresholds.min_overall_gain - _TOL:
        failures.append("overall_gain_too_small")
    return Verdict(not failures, failures[0] if failures else None, failures, target_gain, overall_gain)


def detected_patterns(
    recall: dict[str, float], selected: tuple[str, ...], enabled: tuple[str, ...], min_accuracy: float
) -> list[str]:
    """The patterns a classification completion names: what is true of the improved model.

    With the gate on (`min_accuracy` > 0): every enabled pattern whose held-out recall is at least
    `min_accuracy`. An accepted example's selected patterns are all among them (the gate checked
    them); another pattern is named too when the model detects it as well, which happens when its
    members mostly match a selected pattern (every all_same sequence is a palindrome). With the gate
    off, nothing is verified and the completion names the selected patterns, as the seed's did.
    Canonical pattern order either way."""
    if min_accuracy <= 0:
        named = set(selected)
    else:
        named = {p for p in enabled if recall.get(p, -1.0) >= min_accuracy - _TOL}
    return [p for p in PATTERN_NAMES if p in named]
