"""Signature and benchmark files: even splits, labels from predicates, disjointness, strict reading back."""

from __future__ import annotations

import copy
import json
import os
from collections import Counter
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from weightzoo.data.patterns import PATTERN_NAMES, PATTERNS, PATTERNS_VERSION, match_matrix
from weightzoo.data.probe_sets import (
    NEGATIVE,
    allocate,
    content_hash,
    make_benchmark_set,
    make_signature_set,
    read_probe_file,
)
from weightzoo.data.space import SequenceSpace
from weightzoo.errors import UserError
from weightzoo.output.files import write_json_atomic

SPACE = SequenceSpace(7, 7)
ALL = tuple(PATTERN_NAMES)
NO_HYPOTHESIS_DB = settings(database=None, deadline=None)


# ---------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------


def rows_of(doc: dict, space: SequenceSpace) -> np.ndarray:
    return np.stack([space.from_letters(e["sequence"]) for e in doc["examples"]])


def texts(rows: np.ndarray) -> list[str]:
    return ["".join(chr(65 + int(t)) for t in r) for r in rows]


def cap_of(name: str, space: SequenceSpace) -> int:
    return max(1, PATTERNS[name].count(space) // 2)


@lru_cache(maxsize=8)
def signature(seed: int = 5, size: int = 200, vocab: int = 7, length: int = 7, enabled=ALL) -> str:
    """A signature document (as JSON text, so each test gets its own copy)."""
    return json.dumps(make_signature_set(SequenceSpace(vocab, length), enabled, size, seed))


def sig_doc(**kw) -> dict:
    return json.loads(signature(**kw))


def written(tmp_path: Path, doc: dict, name: str = "probe.json") -> Path:
    path = tmp_path / name
    write_json_atomic(path, doc)
    return path


def check_examples(doc: dict, space: SequenceSpace, enabled: tuple[str, ...], negatives_avoid) -> np.ndarray:
    """Each row's group holds for it (negatives: none of `negatives_avoid`) and `patterns` is exact."""
    rows = rows_of(doc, space)
    matches = match_matrix(rows, enabled, space)
    for row, example, m in zip(rows, doc["examples"], matches, strict=True):
        assert all(isinstance(ch, str) and len(ch) == 1 for ch in example["sequence"])
        group = example["pattern"]
        if group == NEGATIVE:
            hits = [n for n in negatives_avoid if PATTERNS[n].matches(row, space)[0]]
            assert hits == [], f"negative {example['sequence']} satisfies {hits}"
        else:
            assert PATTERNS[group].matches(row, space)[0], f"{example['sequence']} is not {group}"
        assert example["patterns"] == [n for n, hit in zip(enabled, m, strict=True) if hit]
    return rows


# ---------------------------------------------------------------------------------------------------------
# allocate
# ---------------------------------------------------------------------------------------------------------


@NO_HYPOTHESIS_DB
@given(st.integers(0, 400), st.lists(st.integers(0, 60), min_size=1, max_size=16))
def test_allocate_sum_and_caps(total, caps):
    quota = allocate(total, caps)
    assert len(quota) == len(caps)
    assert sum(quota) == min(total, sum(caps))
    assert all(0 <= q <= c for q, c in zip(quota, caps, strict=True))


@NO_HYPOTHESIS_DB
@given(st.integers(0, 400), st.lists(st.integers(0, 60), min_size=1, max_size=16))
def test_allocate_is_as_even_as_possible(total, caps):
    quota = allocate(total, caps)
    uncapped = [q for q, c in zip(quota, caps, strict=True) if q < c]
    if uncapped:
        assert max(uncapped) - min(uncapped) <= 1, (total, caps, quota)
        # a group that hit its cap never holds more than an uncapped group could have had instead
        capped = [q for q, c in zip(quota, caps, strict=True) if q == c]
        assert all(q <= min(uncapped) + 1 for q in capped), (total, caps, quota)


def test_allocate_examples():
    assert allocate(10, [100, 100, 2]) == [4, 4, 2]  # extras must not go to the same group twice
    assert allocate(7, [3, 3, 3]) in ([3, 2, 2], [2, 3, 2], [2, 2, 3])
    assert allocate(100, [1, 2, 3]) == [1, 2, 3]
    assert allocate(0, [5, 5]) == [0, 0]
    assert allocate(5, [0, 9]) == [0, 5]


# ---------------------------------------------------------------------------------------------------------
# make_signature_set
# ---------------------------------------------------------------------------------------------------------


def test_signature_layout():
    doc = sig_doc()
    assert doc["vocab_size"] == 7
    assert doc["sequence_length"] == 7
    assert doc["patterns_version"] == PATTERNS_VERSION
    assert doc["starts_with_token"] == "A" and doc["ends_with_token"] == "B"
    assert doc["seed"] == 5
    assert isinstance(doc["content_hash"], str) and len(doc["content_hash"]) == 64
    for example in doc["examples"]:
        assert isinstance(example["sequence"], list) and len(example["sequence"]) == 7
        assert all(ch in "ABCDEFG" and len(ch) == 1 for ch in example["sequence"])
        assert example["pattern"] in ALL or example["pattern"] == NEGATIVE
    rows = rows_of(doc, SPACE)
    groups = [e["pattern"] for e in doc["examples"]]
    assert doc["content_hash"] == content_hash(SPACE, rows, groups)


def test_signature_size_distinct_and_labels():
    doc = sig_doc()
    assert len(doc["examples"]) == 200
    rows = check_examples(doc, SPACE, ALL, ALL)
    assert len(set(texts(rows))) == 200


def test_signature_takes_at_most_half_of_a_pattern():
    counts = Counter(e["pattern"] for e in sig_doc()["examples"])
    assert counts["all_same"] == 3  # 7 members -> 3
    for name in ALL:
        assert 1 <= counts[name] <= cap_of(name, SPACE)
    assert counts[NEGATIVE] >= 1
    # a bigger request reaches the caps: alternating (42 members) stops at 21
    big = Counter(e["pattern"] for e in sig_doc(size=600)["examples"])
    assert big["all_same"] == 3
    assert big["alternating"] == 21
    assert sum(big.values()) == 600


def test_signature_split_is_even():
    """The size is split evenly over the enabled patterns and negatives (README: 'splits its size evenly')."""
    for size in (200, 600):
        counts = Counter(e["pattern"] for e in sig_doc(size=size)["examples"])
        uncapped = [counts[g] for g in (*ALL, NEGATIVE) if g == NEGATIVE or counts[g] < cap_of(g, SPACE)]
        assert max(uncapped) - min(uncapped) <= 1, dict(counts)


def test_signature_seed():
    assert sig_doc(seed=5) == sig_doc(seed=5)
    assert make_signature_set(SPACE, ALL, 200, 5) == sig_doc(seed=5)  # not just the cache
    other = sig_doc(seed=6)
    assert other["content_hash"] != sig_doc(seed=5)["content_hash"]
    assert [e["sequence"] for e in other["examples"]] != [e["sequence"] for e in sig_doc()["examples"]]


@NO_HYPOTHESIS_DB
@given(
    vocab=st.integers(5, 9),
    length=st.integers(4, 8),
    enabled=st.lists(st.sampled_from(ALL), min_size=1, max_size=6, unique=True),
    size=st.integers(1, 60),
    seed=st.integers(0, 2**32),
)
def test_signature_properties(vocab, length, enabled, size, seed):
    space = SequenceSpace(vocab, length)
    enabled = tuple(n for n in ALL if n in enabled and PATTERNS[n].count(space) > 0)
    if not enabled:
        return
    doc = make_signature_set(space, enabled, size, seed)
    assert len(doc["examples"]) <= size
    rows = check_examples(doc, space, enabled, enabled)
    assert len(set(texts(rows))) == len(rows)
    counts = Counter(e["pattern"] for e in doc["examples"])
    for name in enabled:
        assert counts[name] <= cap_of(name, space)


# ---------------------------------------------------------------------------------------------------------
# read_probe_file
# ---------------------------------------------------------------------------------------------------------


def test_round_trip(tmp_path):
    doc = sig_doc()
    path = written(tmp_path, doc)
    probe = read_probe_file(path, SPACE, ALL)
    assert np.array_equal(probe.sequences, rows_of(doc, SPACE))
    assert list(probe.groups) == [e["pattern"] for e in doc["examples"]]
    assert probe.content_hash == doc["content_hash"]
    assert probe.meta["format_version"] == 1
    assert probe.matches.shape == (200, len(ALL))


SMALL_ENABLED = ("palindrome", "sorted_ascending", "first_last_match")


@pytest.mark.parametrize(
    "made, key",
    [(SequenceSpace(5, 7), "vocab_size"), (SequenceSpace(7, 6), "sequence_length")],
)
def test_space_mismatch_is_an_error(tmp_path, made, key):
    path = written(tmp_path, make_signature_set(made, SMALL_ENABLED, 40, 1))
    with pytest.raises(UserError) as info:
        read_probe_file(path, SPACE, SMALL_ENABLED)
    message = str(info.value)
    assert str(path) in message
    assert key in message


def test_token_mismatch_is_an_error(tmp_path):
    made = SequenceSpace(7, 7, starts_with_token=2)
    path = written(tmp_path, make_signature_set(made, ("starts_with",), 20, 1))
    with pytest.raises(UserError, match="starts_with_token"):
        read_probe_file(path, SPACE, ("starts_with",))


def test_patterns_version_mismatch_is_an_error(tmp_path):
    doc = sig_doc()
    doc["patterns_version"] = PATTERNS_VERSION + "-old"
    with pytest.raises(UserError, match="version"):
        read_probe_file(written(tmp_path, doc), SPACE, ALL)


def test_edited_file_fails_hash_check(tmp_path):
    doc = sig_doc()
    letters = doc["examples"][3]["sequence"]
    letters[0] = "A" if letters[0] != "A" else "B"
    path = written(tmp_path, doc)
    with pytest.raises(UserError) as info:
        read_probe_file(path, SPACE, ALL)
    assert "content_hash" in str(info.value)
    assert str(path) in str(info.value)


def test_edited_group_fails_hash_check(tmp_path):
    doc = sig_doc()
    doc["examples"][0]["pattern"] = "palindrome" if doc["examples"][0]["pattern"] != "palindrome" else "x"
    with pytest.raises(UserError, match="content_hash"):
        read_probe_file(written(tmp_path, doc), SPACE, ALL)


LEGACY = {
    "examples": [
        {"sequence": list("ABCDCBA"), "pattern": "palindrome"},
        {"sequence": list("AABCEEG"), "pattern": "sorted_ascending"},
        {"sequence": list("GFADCBE"), "pattern": "negative"},
    ]
}


def test_legacy_file_is_read(tmp_path):
    path = tmp_path / "legacy.json"
    path.write_text(json.dumps(LEGACY))
    probe = read_probe_file(path, SPACE, ALL)
    assert texts(probe.sequences) == ["ABCDCBA", "AABCEEG", "GFADCBE"]
    assert probe.groups == ("palindrome", "sorted_ascending", "negative")
    assert probe.meta["format_version"] == 0
    assert probe.content_hash == content_hash(SPACE, probe.sequences, probe.groups)


@pytest.mark.parametrize(
    "index, bad",
    [(1, list("AABCEEH")), (2, list("GFADCB")), (0, ["AB", "C", "D", "E", "F", "G", "A"])],
)
def test_legacy_bad_example_names_its_index(tmp_path, index, bad):
    doc = copy.deepcopy(LEGACY)
    doc["examples"][index]["sequence"] = bad
    path = tmp_path / "legacy.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(UserError) as info:
        read_probe_file(path, SPACE, ALL)
    assert f"examples[{index}]" in str(info.value)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path):
    path = tmp_path / "nope" / "sig.json"
    with pytest.raises(UserError) as info:
        read_probe_file(path, SPACE, ALL)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("text", ["not json {", "", '["a list"]', '{"examples": []}'])
def test_unreadable_file(tmp_path, text):
    path = tmp_path / "sig.json"
    path.write_text(text)
    with pytest.raises(UserError) as info:
        read_probe_file(path, SPACE, ALL)
    assert str(path) in str(info.value)


# ---------------------------------------------------------------------------------------------------------
# make_benchmark_set
# ---------------------------------------------------------------------------------------------------------


def signature_probe(tmp_path: Path, **kw):
    return read_probe_file(written(tmp_path, sig_doc(**kw), "sig.json"), SPACE, ALL)


def test_benchmark_disjoint_distinct_and_labelled(tmp_path):
    sig = signature_probe(tmp_path)
    doc, shortfall = make_benchmark_set(SPACE, ALL, ALL, 20, 9, sig)
    rows = check_examples(doc, SPACE, ALL, ALL)
    bench_texts = texts(rows)
    assert len(set(bench_texts)) == len(bench_texts)
    assert not set(bench_texts) & set(texts(sig.sequences))
    for example in doc["examples"]:
        assert example["label"] == (0 if example["pattern"] == NEGATIVE else 1)
    counts = Counter(e["pattern"] for e in doc["examples"])
    assert counts[NEGATIVE] == 20
    assert counts["all_same"] == 7 - int(PATTERNS["all_same"].matches(sig.sequences, SPACE).sum())
    assert shortfall["all_same"] == 20 - counts["all_same"]
    for name in ALL:
        if name not in shortfall:
            assert counts[name] == 20
    assert doc["signature_hash"] == sig.content_hash
    assert doc["benchmark_patterns"] == list(ALL)


def test_benchmark_restricted_patterns(tmp_path):
    sig = signature_probe(tmp_path)
    chosen = ("palindrome", "no_repeats")
    doc, shortfall = make_benchmark_set(SPACE, ALL, chosen, 15, 2, sig)
    assert shortfall == {}
    assert Counter(e["pattern"] for e in doc["examples"]) == {
        "palindrome": 15,
        "no_repeats": 15,
        NEGATIVE: 15,
    }
    rows = check_examples(doc, SPACE, ALL, chosen)
    assert not set(texts(rows)) & set(texts(sig.sequences))


def test_benchmark_shortfall_when_pattern_runs_out(tmp_path):
    sig = signature_probe(tmp_path)
    used = int(PATTERNS["alternating"].matches(sig.sequences, SPACE).sum())
    assert 1 <= used <= 21
    doc, shortfall = make_benchmark_set(SPACE, ALL, ("alternating",), 40, 4, sig)
    got = sum(e["pattern"] == "alternating" for e in doc["examples"])
    assert got == 42 - used
    assert shortfall == {"alternating": 40 - got}
    assert doc["shortfall"] == shortfall
    # signature and benchmark together hold every alternating sequence exactly once
    together = np.concatenate([sig.sequences, rows_of(doc, SPACE)])
    alternating = together[PATTERNS["alternating"].matches(together, SPACE)]
    assert len(set(texts(alternating))) == len(alternating) == 42


def test_benchmark_seed(tmp_path):
    sig = signature_probe(tmp_path)
    a, _ = make_benchmark_set(SPACE, ALL, ("palindrome",), 10, 1, sig)
    b, _ = make_benchmark_set(SPACE, ALL, ("palindrome",), 10, 1, sig)
    c, _ = make_benchmark_set(SPACE, ALL, ("palindrome",), 10, 2, sig)
    assert a == b
    assert a["content_hash"] != c["content_hash"]


# ---------------------------------------------------------------------------------------------------------
# write_json_atomic
# ---------------------------------------------------------------------------------------------------------


def test_write_json_atomic(tmp_path):
    doc = {"examples": [{"sequence": ["A", "B"], "pattern": "x"}], "n": 1}
    path = tmp_path / "deeper" / "out.json"
    write_json_atomic(path, doc)
    assert json.loads(path.read_text()) == doc
    write_json_atomic(path, {"n": 2})  # overwrite
    assert json.loads(path.read_text()) == {"n": 2}
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.json"]


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_write_json_atomic_follows_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        path = tmp_path / "out.json"
        write_json_atomic(path, {"a": 1})
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == mode


def test_write_json_atomic_unwritable(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(UserError) as info:
        write_json_atomic(blocker / "out.json", {"a": 1})
    assert str(blocker / "out.json") in str(info.value)
    # the target is an existing folder: the rename fails, and the temporary file is removed
    folder = tmp_path / "folder"
    folder.mkdir()
    with pytest.raises(UserError):
        write_json_atomic(folder, {"a": 1})
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
