"""judge: keep a (degraded, improved) pair only if stage 2 repaired the target and broke nothing else."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from weightzoo.judge.validation import REASONS, Thresholds, detected_patterns, judge

T = Thresholds(
    pattern_specific=True,
    min_pattern_improvement=0.05,
    max_other_degradation=0.02,
    min_overall_gain=0.05,
    max_negative_degradation=0.02,
)
DEFAULT = dataclasses.replace(T, max_negative_degradation=None)  # negatives held to the others' limit
GATED = dataclasses.replace(T, min_pattern_accuracy=0.85, min_negative_accuracy=0.85)
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
    verdict = judge(TARGET, degraded, improved, GATED, finite=False, stage1_learned=False)
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


def test_by_default_negatives_are_held_to_the_other_patterns_limit():
    """A repair must be specific to the target: saying "yes" more often is not a repair."""
    degraded, improved = good_pair()
    improved["negative"] = 0.93  # lost 0.02: exactly the other patterns' limit
    assert judge(TARGET, degraded, improved, DEFAULT).accepted
    improved["negative"] = 0.92  # lost 0.03
    assert judge(TARGET, degraded, improved, DEFAULT).failures == ["negatives_degraded"]
    loose = dataclasses.replace(DEFAULT, max_other_degradation=0.05)
    assert judge(TARGET, degraded, improved, loose).accepted  # the same limit moves with it


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"sorted_ascending": 0.84}, "pattern_below_min_accuracy"),  # a selected pattern not detected
        ({"palindrome": 0.849, "negative": 0.95}, "pattern_below_min_accuracy"),  # the target too
        ({"negative": 0.84}, "negatives_below_min_accuracy"),  # says "yes" to too many others
    ],
)
def test_the_quality_gate_rejects_an_improved_model_that_does_not_detect_its_patterns(change, reason):
    degraded = {"palindrome": 0.30, "sorted_ascending": 0.90, "negative": 0.90, "overall": 0.60}
    improved = {"palindrome": 0.95, "sorted_ascending": 0.90, "negative": 0.90, "overall": 0.92}
    lenient = dataclasses.replace(GATED, max_other_degradation=1.0, max_negative_degradation=1.0)
    assert judge(TARGET, degraded, improved, lenient).accepted
    improved.update(change)
    verdict = judge(TARGET, degraded, improved, lenient)
    assert verdict.failures == [reason]
    # A threshold of 0 turns the check off; pattern_specific does not (the gate is about the labels).
    off = dataclasses.replace(lenient, min_pattern_accuracy=0.0, min_negative_accuracy=0.0)
    assert judge(TARGET, degraded, improved, off).accepted
    assert judge(
        TARGET, degraded, improved, dataclasses.replace(lenient, pattern_specific=False)
    ).failures == [reason]


@settings(max_examples=300, deadline=None)
@given(
    recall=st.lists(st.floats(0, 1), min_size=1, max_size=5),
    specificity=st.floats(0, 1),
    bar=st.floats(0, 1),
)
def test_the_gate_passes_exactly_when_every_selected_pattern_and_the_negatives_reach_the_bar(
    recall, specificity, bar
):
    names = ["palindrome", "sorted_ascending", "contains_abc", "starts_with", "ends_with"][: len(recall)]
    improved = dict(zip(names, recall, strict=False)) | {"negative": specificity, "overall": 1.0}
    degraded = dict.fromkeys(names, 0.0) | {"negative": 1.0, "overall": 0.0}
    gate = Thresholds(True, 0.0, 1.0, 0.0, 1.0, min_pattern_accuracy=bar, min_negative_accuracy=bar)
    failures = judge(names[0], degraded, improved, gate).failures
    assert ("pattern_below_min_accuracy" in failures) == (min(recall) < bar - 1e-9)
    assert ("negatives_below_min_accuracy" in failures) == (specificity < bar - 1e-9)


def test_detected_patterns_name_what_the_model_detects_in_canonical_order():
    enabled = ("all_same", "palindrome", "sorted_ascending", "has_majority")
    recall = {"all_same": 1.0, "palindrome": 0.9, "sorted_ascending": 0.86, "has_majority": 0.2}
    selected = ("sorted_ascending", "palindrome")
    # all_same is not selected, but every all_same sequence is a palindrome: the model detects it
    assert detected_patterns(recall, selected, enabled, 0.85) == [
        "all_same",
        "palindrome",
        "sorted_ascending",
    ]
    assert detected_patterns(recall, selected, enabled, 0.87) == ["all_same", "palindrome"]
    # the gate off: nothing is verified, the completion names the selected patterns
    assert detected_patterns(recall, selected, enabled, 0.0) == ["palindrome", "sorted_ascending"]
    # a pattern without held-out rows is never named
    assert detected_patterns({"palindrome": 1.0}, ("palindrome",), enabled, 0.85) == ["palindrome"]


@pytest.mark.parametrize("limit, accepted", [(0.0, False), (0.1, True), (0.2, True), (0.09, False)])
def test_a_limit_on_negatives_is_its_own_threshold(limit, accepted):
    degraded, improved = good_pair()
    improved["negative"] = 0.85  # lost 0.10: other patterns' limit (0.02) does not apply to negatives
    thresholds = dataclasses.replace(T, max_negative_degradation=limit)
    assert judge(TARGET, degraded, improved, thresholds).accepted is accepted
