"""Signature (probe) and benchmark files: fixed, labelled sequence sets stored as JSON.

The signature set is run through every subject model to fingerprint it, so every example of a
dataset must use the same one: the file records its vocabulary, length, the patterns' version and a
content hash, and reading it against a config of another vocabulary or length is an error.

Layout (the seed's, with additions): `examples[]` holds `sequence` (a list of letters) and `pattern`
(the group it was drawn for: a pattern name or "negative"), plus `patterns` (every enabled pattern it
satisfies). Files written by the seed's original tool, with `examples` alone, are read too.

The signature set takes at most half of any pattern's members (rounded down, at least one), so a
benchmark set disjoint from it always has members of every pattern left to draw from.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from weightzoo.data.patterns import PATTERNS, PATTERNS_VERSION, match_matrix
from weightzoo.data.pools import sample_members, sample_negatives
from weightzoo.data.space import SequenceSpace
from weightzoo.errors import UserError, shorten
from weightzoo.seeding import Stream, rng_for

FORMAT_VERSION = 1
NEGATIVE = "negative"


@dataclass(frozen=True)
class ProbeSet:
    """A labelled set of sequences; `groups[i]` is the pattern row i was drawn for, or "negative"."""

    space: SequenceSpace
    sequences: np.ndarray  # int64 [n, length]
    groups: tuple[str, ...]
    enabled: tuple[str, ...]
    content_hash: str
    meta: dict

    @property
    def matches(self) -> np.ndarray:
        return match_matrix(self.sequences, self.enabled, self.space)


def allocate(total: int, caps: list[int]) -> list[int]:
    """Split `total` as evenly as possible over groups, none above its cap (water-filling)."""
    quota = [0] * len(caps)
    open_groups = [i for i, c in enumerate(caps) if c > 0]
    remaining = total
    while remaining > 0 and open_groups:
        open_groups.sort(key=lambda i: quota[i])  # leftover units go to the groups that have least
        share, extra = divmod(remaining, len(open_groups))
        for rank, i in enumerate(open_groups):
            give = min(caps[i] - quota[i], share + (rank < extra))
            quota[i] += give
            remaining -= give
        open_groups = [i for i in open_groups if quota[i] < caps[i]]
    return quota


def _examples_json(space: SequenceSpace, sequences, groups, enabled) -> list[dict]:
    matches = match_matrix(sequences, enabled, space)
    return [
        {
            "sequence": space.to_letters(row),
            "pattern": group,
            "patterns": [name for name, hit in zip(enabled, m, strict=True) if hit],
        }
        for row, group, m in zip(sequences, groups, matches, strict=True)
    ]


def content_hash(space: SequenceSpace, sequences: np.ndarray, groups) -> str:
    """sha256 of what the set means: its space and its sequences with their groups, in order."""
    canonical = {
        "vocab_size": space.vocab_size,
        "sequence_length": space.length,
        "starts_with_token": space.starts_with_token,
        "ends_with_token": space.ends_with_token,
        "examples": [[space.to_text(row), group] for row, group in zip(sequences, groups, strict=True)],
    }
    return hashlib.sha256(json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _draw_groups(space, quotas: dict[str, int], avoid_for_negatives, rng, exclude_rows):
    """Distinct sequences for each group in order, none repeated across groups or in `exclude_rows`."""
    taken = np.empty((0, space.length), dtype=np.int64) if exclude_rows is None else exclude_rows
    sequences, groups = [], []
    for group, n in quotas.items():
        if n == 0:
            continue
        if group == NEGATIVE:
            rows = sample_negatives(space, avoid_for_negatives, n, rng, exclude_rows=taken)
        else:
            rows = sample_members(group, space, n, rng, exclude_rows=taken)
        sequences.append(rows)
        groups += [group] * len(rows)
        taken = np.concatenate([taken, rows])
    stacked = np.concatenate(sequences) if sequences else np.empty((0, space.length), dtype=np.int64)
    return stacked, groups


def make_signature_set(space: SequenceSpace, enabled: tuple[str, ...], size: int, seed: int) -> dict:
    """A probe set of `size` distinct sequences split evenly over the enabled patterns and negatives."""
    names = list(enabled) + [NEGATIVE]
    caps = [max(1, PATTERNS[n].count(space) // 2) if n != NEGATIVE else size for n in names]
    quotas = dict(zip(names, allocate(size, caps), strict=True))
    rng = rng_for(seed, Stream.SIGNATURE)
    sequences, groups = _draw_groups(space, quotas, enabled, rng, None)
    return _document("signature", space, enabled, seed, sequences, groups)


def make_benchmark_set(
    space: SequenceSpace,
    enabled: tuple[str, ...],
    patterns: tuple[str, ...],
    samples_per_pattern: int,
    seed: int,
    signature: ProbeSet,
) -> tuple[dict, dict[str, int]]:
    """Labelled examples per pattern plus as many negatives, disjoint from the signature set.

    Returns the document and the shortfall per pattern (patterns with fewer unused members than asked).
    """
    quotas = {name: samples_per_pattern for name in patterns}
    quotas[NEGATIVE] = samples_per_pattern
    rng = rng_for(seed, Stream.BENCHMARK)
    sequences, groups = _draw_groups(space, quotas, patterns, rng, signature.sequences)
    got = {g: groups.count(g) for g in quotas}
    shortfall = {g: samples_per_pattern - got[g] for g in quotas if got[g] < samples_per_pattern}
    doc = _document("benchmark", space, enabled, seed, sequences, groups)
    for example in doc["examples"]:
        example["label"] = int(example["pattern"] != NEGATIVE)
    doc["benchmark_patterns"] = list(patterns)
    doc["signature_hash"] = signature.content_hash
    doc["shortfall"] = shortfall
    return doc, shortfall


def _document(kind: str, space: SequenceSpace, enabled, seed: int, sequences, groups) -> dict:
    return {
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "vocab_size": space.vocab_size,
        "sequence_length": space.length,
        "starts_with_token": space.letter(space.starts_with_token),
        "ends_with_token": space.letter(space.ends_with_token),
        "patterns_version": PATTERNS_VERSION,
        "enabled_patterns": list(enabled),
        "seed": seed,
        "content_hash": content_hash(space, sequences, groups),
        "examples": _examples_json(space, sequences, groups, enabled),
    }


def read_probe_file(
    path: Path, space: SequenceSpace, enabled: tuple[str, ...], role: str = "signature"
) -> ProbeSet:
    """Read a signature or benchmark file and check it fits this config."""
    return parse_probe_file(read_probe_bytes(path, role), path, space, enabled, role)


def read_probe_bytes(path: Path, role: str = "signature") -> bytes:
    """The bytes of a signature or benchmark file (read once: the run pins exactly these)."""
    path = Path(path)
    if not path.is_file():
        made_by = "create-sig-dataset" if role == "signature" else "create-benchmark-dataset"
        raise UserError(f"{role} file {path} does not exist (create it with {made_by})")
    try:
        return path.read_bytes()
    except OSError as e:
        raise UserError(f"{role} file {path} cannot be read: {e.strerror or e}") from None


def file_kind(path: Path) -> str | None:
    """The `kind` an existing file says it is ("signature", "benchmark"), or None (no such file, not a
    weightzoo file, or a file of the seed's original tool, which does not say)."""
    try:
        doc = json.loads(Path(path).read_bytes())
    except (OSError, ValueError):
        return None
    kind = doc.get("kind") if isinstance(doc, dict) else None
    return kind if kind in KINDS else None


KINDS = ("signature", "benchmark")
MAX_EXAMPLES = 100_000  # sequences of one file (every subject model of a dataset runs the signature set)


def parse_probe_file(
    raw: bytes, path: Path, space: SequenceSpace, enabled: tuple[str, ...], role: str = "signature"
) -> ProbeSet:
    """A signature or benchmark file's bytes as a ProbeSet, checked against this config: its kind, its
    sequence space, its patterns and its content hash."""
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise UserError(f"{role} file {path} is not readable JSON: {shorten(e, 120)}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("examples"), list) or not doc["examples"]:
        raise UserError(f"{role} file {path} has no 'examples' list")
    if len(doc["examples"]) > MAX_EXAMPLES:
        raise UserError(f"{role} file {path} holds {len(doc['examples'])} examples (at most {MAX_EXAMPLES})")
    kind = doc.get("kind")
    if kind is not None and kind != role:
        what = shorten(repr(kind)) if kind not in KINDS else f"a {kind} file"
        raise UserError(f"{role} file {path} is {what}, not a {role} file")
    expected_values = (
        ("vocab_size", space.vocab_size),
        ("sequence_length", space.length),
        ("starts_with_token", space.letter(space.starts_with_token)),
        ("ends_with_token", space.letter(space.ends_with_token)),
    )
    for key, expected in expected_values:
        if key in doc and doc[key] != expected:
            raise UserError(
                f"{role} file {path} was made for {key} {shorten(repr(doc[key]))}, "
                f"but the config has {key} {expected}"
            )
    if "patterns_version" in doc and str(doc["patterns_version"]) != PATTERNS_VERSION:
        raise UserError(
            f"{role} file {path} uses pattern definitions version {shorten(doc['patterns_version'])}, "
            f"this weightzoo uses {PATTERNS_VERSION}: recreate it"
        )
    if role == "signature" and "enabled_patterns" in doc:
        theirs = doc["enabled_patterns"]
        if not isinstance(theirs, list) or sorted(map(str, theirs)) != sorted(enabled):
            made_for = ", ".join(map(str, theirs)) if isinstance(theirs, list) else repr(theirs)
            raise UserError(
                f"{role} file {path} was made for the patterns {shorten(made_for, 120)}, but the config "
                f"enables {shorten(', '.join(enabled), 120)}: recreate it with create-sig-dataset"
            )
    known = set(PATTERNS) | {NEGATIVE}
    sequences, groups = [], []
    for i, example in enumerate(doc["examples"]):
        if not isinstance(example, dict):
            raise UserError(f"{role} file {path}: examples[{i}] is not a mapping")
        try:
            sequences.append(space.from_letters(example["sequence"]))
        except (KeyError, TypeError, ValueError) as e:
            detail = "missing 'sequence'" if isinstance(e, KeyError) else shorten(e, 120)
            raise UserError(
                f"{role} file {path}: examples[{i}]: {detail} (config: vocab_size {space.vocab_size}, "
                f"sequence_length {space.length})"
            ) from None
        group = example.get("pattern", NEGATIVE)
        if not isinstance(group, str) or group not in known:
            raise UserError(
                f"{role} file {path}: examples[{i}]: pattern {shorten(repr(group))} is neither a known "
                f"pattern nor {NEGATIVE!r}"
            )
        if role == "signature" and group != NEGATIVE and group not in enabled:
            raise UserError(
                f"{role} file {path}: examples[{i}] was drawn for {group!r}, which the config does not "
                "enable: recreate it with create-sig-dataset"
            )
        groups.append(group)
    sequences = np.stack(sequences)
    digest = content_hash(space, sequences, groups)
    if "content_hash" in doc and doc["content_hash"] != digest:
        raise UserError(f"{role} file {path} does not match its content_hash: it was modified after creation")
    meta = {k: v for k, v in doc.items() if k != "examples"}
    meta.setdefault("format_version", 0)  # 0: a file from the seed's original tool
    return ProbeSet(space, sequences, tuple(groups), tuple(enabled), digest, meta)
