"""judge: keep a (degraded, improved) pair only if stage 2 repaired the target and broke nothing else."""

from __future__ import annotations

import dataclasses

import pytest

from weightzoo.validation import REASONS, Thresholds, judge

T = Thresholds(
    pattern_specific=True,
    min_pattern_improvement=0.05,
    max_other_degradation=0.02,
    min_overall_gain=0.05,
    max_negative_degradation=0.02,
)
DEFAULT = dataclasses.replace(T, max_negative_degradation=None)  # negatives count only through overall
TARGET = "palindrome"


def good_pair() -> tuple[dict[str, float], dict[str, float]]:
    degraded = {
        "palindrome": 0.40,
        "sorted_ascending": 0.90,
        "contains_abc": 0.85,
        "negative": 0.95,
        "overall": 0.70,
    }
    improved = {
        "palindrome": 0.90,
        "sorted_ascending": 0.90,
        "contains_abc": 0.86,
        "negative": 0.94,
        "overall": 0.82,
    }
    return degraded, improved


def test_a_good_pair_is_accepted():
    degraded, improved = good_pair()
    verdict = judge(TARGET, degraded, improved, T)
    assert verdict.accepted and verdict.reason is None and verdict.failures == []
    assert verdict.target_gain == pytest.approx(0.50)
    assert verdict.overall_gain == pytest.approx(0.12)


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"finite": False}, "non_finite"),
        ({"stage1_learned": False}, "stage1_did_not_learn"),
        ({"improved": {"palindrome": 0.44}}, "target_not_improved"),  # gain 0.04 < 0.05
        ({"improved": {"sorted_ascending": 0.87}}, "other_pattern_degraded"),  # drop 0.03 > 0.02
        ({"improved": {"contains_abc": 0.82}}, "other_pattern_degraded"),  # drop 0.03
        ({"improved": {"negative": 0.92}}, "negatives_degraded"),  # drop 0.03
        ({"improved": {"overall": 0.74}}, "overall_gain_too_small"),  # gain 0.04 < 0.05
    ],
)
def test_each_kind_of_bad_pair_is_rejected_for_its_reason(change, reason):
    degraded, improved = good_pair()
    improved.update(change.get("improved", {}))
    verdict = judge(
        TARGET,
        degraded,
        improved,
        T,
        finite=change.get("finite", True),
        stage1_learned=change.get("stage1_learned", True),
    )
    assert not verdict.accepted
    assert verdict.reason == reason and verdict.failures == [reason]


def test_just_beyond_the_thresholds_is_rejected():
    degraded, improved = good_pair()
    improved.update(palindrome=0.449, sorted_ascending=0.879, negative=0.929, overall=0.749)
    verdict = judge(TARGET, degraded, improved, T)
    assert verdict.failures == [
        "target_not_improved",
        "other_pattern_degraded",
        "negatives_degraded",
        "overall_gain_too_small",
    ]


def test_every_failure_is_listed_in_rule_order_and_the_first_is_the_reason():
    degraded, improved = good_pair()
    improved.update(palindrome=0.41, contains_abc=0.50, negative=0.50, overall=0.60)
    verdict = judge(TARGET, degraded, improved, T, finite=False, stage1_learned=False)
    assert verdict.failures == list(REASONS)
    assert verdict.reason == "non_finite" and not verdict.accepted
    assert verdict.target_gain == pytest.approx(0.01) and verdict.overall_gain == pytest.approx(-0.10)


@pytest.mark.parametrize(
    "before, after",
    # Differences of exactly the threshold, though none of these decimals is exact in binary floating point
    # (0.96 - 0.94 == 0.020000000000000018, 0.35 - 0.30 == 0.04999999999999999).
    [(0.96, 0.94), (0.30, 0.28), (0.57, 0.55), (0.13, 0.11), (0.87, 0.85)],
)
def test_exactly_at_the_thresholds_is_accepted(before, after):
    degraded = {"palindrome": 0.30, "sorted_ascending": before, "negative": before, "overall": 0.60}
    improved = {"palindrome": 0.35, "sorted_ascending": after, "negative": after, "overall": 0.65}
    assert 0.35 - 0.30 < 0.05  # the target and overall gains are exactly 0.05 only on paper
    verdict = judge(TARGET, degraded, improved, T)
    assert verdict.accepted, verdict.failures


def test_without_pattern_specific_only_the_overall_rules_apply():
    loose = dataclasses.replace(T, pattern_specific=False)
    degraded, improved = good_pair()
    improved.update(palindrome=0.40, sorted_ascending=0.10, negative=0.10)
    assert judge(TARGET, degraded, improved, T).failures == [
        "target_not_improved",
        "other_pattern_degraded",
        "negatives_degraded",
    ]
    assert judge(TARGET, degraded, improved, loose).accepted
    improved["overall"] = 0.71
    assert judge(TARGET, degraded, improved, loose).failures == ["overall_gain_too_small"]
    assert judge(TARGET, degraded, improved, loose, stage1_learned=False).failures == [
        "stage1_did_not_learn",
        "overall_gain_too_small",
    ]


def test_a_gain_on_other_patterns_or_negatives_is_never_a_failure():
    degraded, improved = good_pair()
    improved.update(sorted_ascending=1.0, contains_abc=1.0, negative=1.0)
    assert judge(TARGET, degraded, improved, T).accepted


def test_a_single_pattern_without_negatives_is_judged_on_target_and_overall():
    degraded = {"palindrome": 0.5, "overall": 0.5}
    improved = {"palindrome": 0.9, "overall": 0.9}
    assert judge(TARGET, degraded, improved, T).accepted
    improved = {"palindrome": 0.52, "overall": 0.9}
    assert judge(TARGET, degraded, improved, T).failures == ["target_not_improved"]


def test_by_default_negatives_count_only_through_the_overall_gain():
    """Undoing the corruption costs negatives: the degraded model said "no" too often."""
    degraded, improved = good_pair()
    improved["negative"] = 0.80  # a real loss of 0.15 on negatives
    assert judge(TARGET, degraded, improved, T).failures == ["negatives_degraded"]
    assert judge(TARGET, degraded, improved, DEFAULT).accepted
    # Answering "yes" to everything repairs the target but not the whole: the overall rule rejects it.
    improved.update(palindrome=1.0, negative=0.0, overall=0.72)
    assert judge(TARGET, degraded, improved, DEFAULT).failures == ["overall_gain_too_small"]


@pytest.mark.parametrize("limit, accepted", [(0.0, False), (0.1, True), (0.2, True), (0.09, False)])
def test_a_limit_on_negatives_is_its_own_threshold(limit, accepted):
    degraded, improved = good_pair()
    improved["negative"] = 0.85  # lost 0.10: other patterns' limit (0.02) does not apply to negatives
    thresholds = dataclasses.replace(T, max_negative_degradation=limit)
    assert judge(TARGET, degraded, improved, thresholds).accepted is accepted
