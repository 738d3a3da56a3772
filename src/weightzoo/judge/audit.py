"""Are a dataset's labels true? Each stored model rebuilt and scored on sequences it never saw.

This check stands apart from the code that made the dataset: it reads only the rows (the weights as
stored, the metadata's pattern lists), rebuilds each model as a plain `nn.Sequential` from its weights,
and draws its own sequences from the patterns' definitions, in a random stream of its own. A model's
*recall* of a pattern is the share of fresh members it answers "yes"; its *specificity* the share of
fresh sequences matching none of its selected patterns it answers "no".

Fresh members of a pattern are drawn outside the run's pools (so outside every training and held-out
row) whenever the pattern has enough members left there; a pattern whose members the pools hold almost
entirely (all_same's 7, palindrome's 2,401 with large pools) is scored on uniform draws from all its
members, which is what "the model detects it" means. `FreshSets.disjoint` says which was possible.

An example is *verified* when, on fresh sequences, the improved model recalls every selected pattern
at least `bar` (0.85) and has specificity at least `bar`, the target gained at least `min_gain`
(0.05), and no other selected pattern and not the negatives lost more than `max_loss` (0.05). Its
classification completion is *true* when every pattern it names has fresh recall at least `bar`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import torch

from weightzoo.data.patterns import PATTERNS
from weightzoo.data.pools import row_keys, sample_members
from weightzoo.data.space import SequenceSpace
from weightzoo.engine.model import ModelSpec, SubjectMLP, encode_inputs, stored_weights

NEGATIVE = "negative"


@dataclass(frozen=True)
class Bars:
    bar: float = 0.85  # recall of every selected pattern, and specificity
    min_gain: float = 0.05  # the target's recall gain
    max_loss: float = 0.05  # the most any other selected pattern, or the negatives, may lose


@dataclass
class FreshSets:
    members: dict[str, np.ndarray]  # pattern -> fresh members [n, length]
    disjoint: dict[str, bool]  # pattern -> drawn outside the run's pools


def fresh_members(
    space: SequenceSpace,
    patterns: tuple[str, ...],
    n: int,
    rng: np.random.Generator,
    pools: dict[str, np.ndarray] | None = None,
) -> FreshSets:
    """`n` members of each pattern (all of them if it has fewer), outside every pool in `pools` where
    the pattern has `n` members to spare there."""
    seen = np.concatenate(list(pools.values())) if pools else np.empty((0, space.length), dtype=np.int64)
    seen = np.unique(seen, axis=0) if len(seen) else seen
    members, disjoint = {}, {}
    for name in patterns:
        spare = PATTERNS[name].count(space) - (
            int(PATTERNS[name].holds(seen, space).sum()) if len(seen) else 0
        )
        outside = spare >= n and len(seen) > 0
        members[name] = sample_members(name, space, n, rng, exclude_rows=seen if outside else None)
        disjoint[name] = outside
    return FreshSets(members, disjoint)


def fresh_negatives(
    space: SequenceSpace, avoid: tuple[str, ...], n: int, rng: np.random.Generator
) -> np.ndarray:
    """`n` distinct sequences drawn uniformly among those matching none of `avoid` (rejection sampling
    from uniform sequences: the definition of a negative, not the generator's sampler)."""
    kept: dict[bytes, np.ndarray] = {}
    for _ in range(1000):
        x = rng.integers(0, space.vocab_size, size=(4 * n, space.length))
        hit = np.zeros(len(x), dtype=bool)
        for name in avoid:
            hit |= PATTERNS[name].matches(x, space)
        for row, key in zip(x[~hit], row_keys(x[~hit]), strict=True):
            kept.setdefault(key, row)
            if len(kept) == n:
                return np.array(list(kept.values()), dtype=np.int64)
    return np.array(list(kept.values()), dtype=np.int64).reshape(-1, space.length)


def rebuild(weights_json: str) -> tuple[ModelSpec, torch.nn.Module]:
    """A stored model (a `*_model_weights` column) as a plain PyTorch module in eval mode."""
    spec, weights = stored_weights(weights_json)
    model = SubjectMLP(spec)
    model.load_state_dict(weights)
    return spec, model.eval()


def answers_yes(spec: ModelSpec, model: torch.nn.Module, sequences: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return (model(encode_inputs(sequences, spec)) > 0).numpy()


def audit_row(
    row: dict,
    space: SequenceSpace,
    fresh: FreshSets,
    negatives: np.ndarray,
    bars: Bars = Bars(),
) -> dict:
    """Fresh-data scores of one dataset row (`metadata`, `degraded_model_weights`,
    `improved_model_weights`), with `negatives` drawn for its selected patterns."""
    meta = json.loads(row["metadata"])
    selected, target = tuple(meta["selected_patterns"]), meta["target_pattern"]
    named = meta.get("detected_patterns")
    if named is None and row.get("classification_completion"):
        named = [p.strip() for p in row["classification_completion"].split(",") if p.strip()]
    scores: dict[str, dict[str, float]] = {}
    for which in ("degraded", "improved"):
        spec, model = rebuild(row[f"{which}_model_weights"])
        scores[which] = {p: float(answers_yes(spec, model, m).mean()) for p, m in fresh.members.items()}
        scores[which][NEGATIVE] = float(1 - answers_yes(spec, model, negatives).mean())
    improved, degraded = scores["improved"], scores["degraded"]
    change = {g: improved[g] - degraded[g] for g in (*selected, NEGATIVE)}
    others = [p for p in selected if p != target]
    verified = (
        all(improved[p] >= bars.bar for p in selected)
        and improved[NEGATIVE] >= bars.bar
        and change[target] >= bars.min_gain
        and all(change[g] >= -bars.max_loss for g in (*others, NEGATIVE))
    )
    return {
        "example_id": row["example_id"],
        "selected": selected,
        "target": target,
        "named": tuple(named or selected),
        "recall": scores,
        "worst_selected": min(improved[p] for p in selected),
        "specificity": improved[NEGATIVE],
        "target_gain": change[target],
        "other_changes": [change[p] for p in others],
        "negatives_change": change[NEGATIVE],
        "verified": verified,
        "completion_true": all(improved.get(p, 0.0) >= bars.bar for p in (named or selected)),
    }
