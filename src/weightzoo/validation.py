"""Keep or discard an example: does stage 2 repair the target pattern without breaking the rest?

Judged on the example's held-out test set (never trained on), with the stored (rounded, quantized)
models. A group's accuracy is the fraction of its rows classified correctly: positives as positive
for a pattern, negatives as negative. The rules, in the order they are checked (the first that fails
is the recorded reason; all failures are kept in `failures`):

1. `non_finite`: training produced NaN or inf.
2. `stage1_did_not_learn`: stage 1's validation loss never fell `min_improvement_threshold` below the
   untrained model's: the degraded model would be merely untrained.
3. `target_not_improved`: improved − degraded accuracy on the target pattern < `min_pattern_improvement`.
4. `other_pattern_degraded`: some other selected pattern lost more than `max_other_degradation`.
5. `negatives_degraded`: accuracy on negatives fell more than `max_negative_degradation`; checked
   only when that is set (it is not by default).
6. `overall_gain_too_small`: overall accuracy gained less than `min_degradation_threshold`.

With `validation.pattern_specific: false`, rules 3-5 are skipped.

Why negatives are not an "other pattern" by default: the seed's rule protects the other *patterns*,
and negatives match none. Stage 1's corruption relabels target members as negative, so the degraded
model learns to answer "no" more often, and its accuracy on negatives is inflated by exactly the
damage stage 2 is meant to repair; undoing it costs some negatives every time. Holding negatives to
`max_other_degradation` (0.02: two of 100 held-out sequences) rejected 31% of the seed config's
examples, most of them real repairs, and cut acceptance from 32% to 9%. A repair that buys the
target by answering "yes" to everything still fails rule 6: the overall accuracy, negatives
included, must rise by `min_degradation_threshold`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

NEGATIVE = "negative"
_TOL = 1e-9  # accuracies are ratios of counts: compare them without float noise
REASONS = (
    "non_finite",
    "stage1_did_not_learn",
    "target_not_improved",
    "other_pattern_degraded",
    "negatives_degraded",
    "overall_gain_too_small",
)


@dataclass(frozen=True)
class Thresholds:
    pattern_specific: bool
    min_pattern_improvement: float
    max_other_degradation: float
    min_overall_gain: float
    max_negative_degradation: float | None = None  # None: negatives count only through the overall gain


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
        limit = thresholds.max_negative_degradation
        if limit is not None and not lost_on_negatives <= limit + _TOL:
            failures.append("negatives_degraded")
    if not overall_gain >= thresholds.min_overall_gain - _TOL:
        failures.append("overall_gain_too_small")
    return Verdict(not failures, failures[0] if failures else None, failures, target_gain, overall_gain)
