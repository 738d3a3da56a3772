"""Scoring an interpreter's completions against a dataset (`weightzoo evaluate`).

Completions come as JSONL (one `{"example_id": ..., "completion": ...}` per line) or Parquet with those
two columns, for one task.

Classification: a completion names patterns, separated by commas; the truth is the dataset's own
completion (the patterns the improved model detects, by the rule in docs/design.md). Scores: exact
match (the same set), Hamming accuracy (the share of (example, enabled pattern) decisions that agree),
micro F1 (over all decisions), macro F1 (the mean of the per-pattern F1s, over patterns that are true or
named at least once) and each pattern's F1. A name that is no enabled pattern counts as a wrong one.

Modification: the completion is parsed as a weights block of the example's architecture and the model
rebuilt from it. Nothing is compared to the dataset's numbers: each model is scored on fresh sequences
(`judge/audit.py`: members of each selected pattern drawn outside the run's pools where the pattern has
members to spare, and negatives matching none), against the two reference models *as the interpreter
saw them* (the degraded model parsed from the prompt, the improved one from the dataset's completion):
- `target_gain`: the candidate's target recall minus the degraded model's;
- `gain_vs_oracle`: that over the improved model's gain (1 for a perfect repair);
- `others_change`, `negatives_change`: the worst other selected pattern's recall change, and the
  specificity change, against the degraded model;
- `agreement`: the share of fresh sequences on which the candidate answers as the improved model;
- `success`: the dataset's own rules on fresh data: a target gain above zero and at least
  `validation.min_pattern_improvement`, no other pattern and not the negatives worse by more than
  their limits.
Text that does not parse (a missing layer, a wrong shape, garbage numbers) is a scored failure with
its reason, never a crash; so is a missing completion for an example that has one expected.

Baselines, scored the same way beside the completions: for modification, `identity` (the degraded
weights copied) and `oracle` (the dataset's completion: a perfect repair); for classification,
`oracle` and `majority` (the most frequent true set, for every example).
"""

from __future__ import annotations

import collections
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch

from weightzoo.data.pools import build_pools
from weightzoo.engine.model import ModelSpec, encode_inputs, predict_logits, stored_weights
from weightzoo.errors import UserError, shorten
from weightzoo.judge.audit import fresh_members, fresh_negatives
from weightzoo.output.rows import number_format
from weightzoo.output.store import read_manifest
from weightzoo.text import parse_weights, weights_block

TASKS = ("classification", "modification")
FRESH_SEED = 0x5EED_E7A1  # the evaluation's own random stream: no run draws from it


# ---------------------------------------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------------------------------------


def read_completions(path: Path) -> dict[int, str]:
    """example_id → completion, from JSONL or Parquet; a malformed file is one line naming it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--completions: {path} does not exist")
    records: list[dict] = []
    if path.suffix == ".parquet":
        try:
            records = pq.read_table(path, columns=["example_id", "completion"]).to_pylist()
        except Exception as e:  # pyarrow raises several types for a bad file or missing columns
            raise UserError(f"--completions: {path}: {shorten(e, 160)}") from None
    else:
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"--completions: {path} line {number}: not JSON ({e.msg})") from None
            if not isinstance(record, dict) or "example_id" not in record or "completion" not in record:
                raise UserError(f"--completions: {path} line {number}: needs example_id and completion")
            records.append(record)
    out: dict[int, str] = {}
    for record in records:
        key, text = record["example_id"], record["completion"]
        if isinstance(key, bool) or not isinstance(key, int):
            raise UserError(f"--completions: {path}: example_id {shorten(repr(key), 40)} is not an integer")
        if key in out:
            raise UserError(f"--completions: {path}: example_id {key} appears twice")
        out[key] = text if isinstance(text, str) else ""
    return out


def read_dataset(folder: Path, split: str | None = None) -> tuple[Any, dict[int, dict]]:
    """The dataset's config and its accepted rows by example_id: all of them, or one split's (a
    `weightzoo split` folder's `data/SPLIT-*.parquet`)."""
    from weightzoo.config import parse_config

    folder = Path(folder)
    info = read_manifest(folder)
    cfg = parse_config(info["config"], source=str(folder / "dataset_info.json"))
    rows = {}
    for shard in sorted((folder / "data").glob(f"{split}-*.parquet" if split else "*.parquet")):
        for row in pq.read_table(shard).to_pylist():
            rows[row["example_id"]] = row
    if not rows:
        where = f"no {split} split (data/{split}-*.parquet)" if split else "no rows"
        raise UserError(f"{folder}: the dataset has {where}")
    return cfg, rows


# ---------------------------------------------------------------------------------------------------------
# classification
# ---------------------------------------------------------------------------------------------------------


def pattern_set(text: str | None) -> frozenset[str]:
    """The names a classification completion lists (comma separated, case and spaces ignored)."""
    if not text:
        return frozenset()
    return frozenset(name.strip().lower() for name in text.replace("\n", ",").split(",") if name.strip())


def classification_scores(truth: dict[int, frozenset], named: dict[int, frozenset], enabled) -> dict:
    ids = sorted(truth)
    labels = list(enabled)
    exact = np.mean([truth[i] == named[i] for i in ids])
    tp = collections.Counter()
    fp = collections.Counter()
    fn = collections.Counter()
    for i in ids:
        for p in named[i] - truth[i]:
            fp[p] += 1
        for p in truth[i] - named[i]:
            fn[p] += 1
        for p in truth[i] & named[i]:
            tp[p] += 1
    unknown = sum(n for p, n in fp.items() if p not in labels)
    wrong = sum(len(named[i] ^ truth[i]) for i in ids)
    hamming = 1 - wrong / (len(ids) * max(len(labels), 1))

    def f1(t, p_, n_):
        return 2 * t / (2 * t + p_ + n_) if (t + p_ + n_) else None

    per_pattern = {p: f1(tp[p], fp[p], fn[p]) for p in labels}
    present = [v for v in per_pattern.values() if v is not None]
    micro = f1(sum(tp.values()), sum(fp.values()), sum(fn.values()))
    return {
        "examples": len(ids),
        "exact_match": float(exact),
        "hamming_accuracy": float(hamming),
        "micro_f1": micro if micro is not None else 1.0,
        "macro_f1": float(np.mean(present)) if present else 1.0,
        "per_pattern_f1": per_pattern,
        "unknown_names": unknown,
    }


def evaluate_classification(cfg, rows: dict[int, dict], completions: dict[int, str]) -> dict:
    enabled = tuple(cfg.dataset.patterns.enabled_patterns)
    truth = {i: pattern_set(rows[i]["classification_completion"]) for i in rows}
    if all(rows[i]["classification_completion"] is None for i in rows):
        raise UserError(
            "the dataset has no classification completions (task_generation.include_classification)"
        )
    scored = {i: pattern_set(completions.get(i)) for i in truth}
    majority = collections.Counter(truth.values()).most_common(1)[0][0]
    return {
        "completions": classification_scores(truth, scored, enabled),
        "baselines": {
            "oracle": classification_scores(truth, dict(truth), enabled),
            "majority": classification_scores(truth, dict.fromkeys(truth, majority), enabled),
        },
        "majority_set": sorted(majority),
    }


# ---------------------------------------------------------------------------------------------------------
# modification
# ---------------------------------------------------------------------------------------------------------


@dataclass
class FreshData:
    """Fresh sequences to score models on: members per pattern, negatives per selected set."""

    cfg: Any
    members: dict[str, np.ndarray]
    rng: np.random.Generator
    n: int
    negatives: dict[tuple, np.ndarray]
    benchmark: tuple | None = None  # (sequences, match matrix, enabled) when scored on a benchmark file
    scored: dict[int, References] = field(default_factory=dict)  # example_id -> its references, scored

    @classmethod
    def draw(cls, cfg, n: int) -> FreshData:
        patterns = cfg.dataset.patterns
        enabled = tuple(patterns.enabled_patterns)
        pools = build_pools(cfg.space, enabled, patterns.pool_size, cfg.pipeline.random_seed)
        rng = np.random.default_rng(FRESH_SEED)
        members = fresh_members(cfg.space, enabled, n, rng, pools).members
        return cls(cfg, members, rng, n, {})

    @classmethod
    def from_benchmark(cls, cfg, path: Path) -> FreshData:
        """The sequences of a benchmark file (`create-benchmark-dataset`, disjoint from the signature
        set) instead of fresh draws: each pattern's members, and as negatives of a model the rows that
        match none of its selected patterns."""
        from weightzoo.data.patterns import match_matrix
        from weightzoo.data.probe_sets import read_probe_file

        enabled = tuple(cfg.dataset.patterns.enabled_patterns)
        bench = read_probe_file(Path(path), cfg.space, enabled, role="benchmark")
        hits = match_matrix(bench.sequences, enabled, cfg.space)
        members = {p: bench.sequences[hits[:, k]] for k, p in enumerate(enabled)}
        rng = np.random.default_rng(FRESH_SEED)
        return cls(cfg, members, rng, len(bench.sequences), {}, (bench.sequences, hits, enabled))

    def negatives_for(self, selected: tuple) -> np.ndarray:
        if self.benchmark is not None:
            sequences, hits, enabled = self.benchmark
            columns = [enabled.index(p) for p in selected]
            return sequences[~hits[:, columns].any(axis=1)]
        if selected not in self.negatives:
            self.negatives[selected] = fresh_negatives(self.cfg.space, selected, self.n, self.rng)
        return self.negatives[selected]

    def references(self, row: dict) -> References:
        """The row's two reference models, parsed from its texts and scored on this data once: every
        completion of the row (and each baseline) is compared with the same answers."""
        key = row["example_id"]
        if key not in self.scored:
            self.scored[key] = References.of(row, self)
        return self.scored[key]


@dataclass
class References:
    """A row's degraded model (parsed from the prompt) and improved model (from the dataset's
    completion), with their answers on each group of fresh sequences."""

    spec: ModelSpec
    selected: tuple[str, ...]
    target: str
    degraded: dict[str, torch.Tensor]
    inputs: dict[str, torch.Tensor]  # group -> encoded sequences
    answers: dict[str, dict[str, np.ndarray]]  # "degraded"/"improved" -> group -> yes
    recall: dict[str, dict[str, float]]  # "degraded"/"improved" -> group -> recall (specificity)

    @classmethod
    def of(cls, row: dict, fresh: FreshData) -> References:
        meta = json.loads(row["metadata"])
        selected = tuple(meta["selected_patterns"])
        spec, _ = stored_weights(row["improved_model_weights"])
        models = {
            "degraded": parse_weights(row["modification_prompt"], spec),
            "improved": parse_weights(row["modification_completion"], spec),
        }
        groups = {p: fresh.members[p] for p in selected}
        groups["negative"] = fresh.negatives_for(selected)
        inputs = {g: encode_inputs(torch.as_tensor(s), spec) for g, s in groups.items()}
        answers = {name: {g: _answers(spec, w, x) for g, x in inputs.items()} for name, w in models.items()}
        recall = {
            name: {g: _recall(g, yes) for g, yes in by_group.items()} for name, by_group in answers.items()
        }
        return cls(spec, selected, meta["target_pattern"], models["degraded"], inputs, answers, recall)


def _recall(group: str, yes: np.ndarray) -> float:
    """The share answered "yes" for a pattern's members; the share answered "no" for negatives."""
    share = float(yes.mean())
    return 1 - share if group == "negative" else share


def _answers(spec: ModelSpec, weights: dict, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return (predict_logits(spec, weights, x) > 0).numpy()


def score_repair(row: dict, completion: str | None, cfg, fresh: FreshData) -> dict:
    """One modification completion, scored on fresh data against the references the interpreter saw."""
    refs = fresh.references(row)
    selected, target = refs.selected, refs.target
    result: dict[str, Any] = {"example_id": row["example_id"], "target": target}
    if completion is None:
        return {**result, "parsed": False, "success": False, "failure": "no completion for this example"}
    try:
        candidate = parse_weights(completion, refs.spec)
    except ValueError as e:
        return {**result, "parsed": False, "success": False, "failure": shorten(str(e), 200)}
    c, agree, total = {}, 0, 0
    for group, x in refs.inputs.items():
        yes = _answers(refs.spec, candidate, x)
        c[group] = _recall(group, yes)
        agree += int((yes == refs.answers["improved"][group]).sum())
        total += len(yes)
    d, i = refs.recall["degraded"], refs.recall["improved"]
    others = [p for p in selected if p != target]
    v = cfg.validation
    negative_limit = (
        v.max_other_degradation if v.max_negative_degradation is None else v.max_negative_degradation
    )
    gain, oracle_gain = c[target] - d[target], i[target] - d[target]
    others_change = min((c[p] - d[p] for p in others), default=0.0)
    negatives_change = c["negative"] - d["negative"]
    success = (
        gain > 0
        and gain >= v.min_pattern_improvement
        and others_change >= -v.max_other_degradation
        and negatives_change >= -negative_limit
    )
    return {
        **result,
        "parsed": True,
        "success": bool(success),
        "failure": None,
        "target_accuracy": c[target],
        "degraded_target_accuracy": d[target],
        "target_gain": gain,
        "gain_vs_oracle": gain / oracle_gain if oracle_gain > 0 else None,
        "others_change": others_change,
        "negatives_change": negatives_change,
        "agreement": agree / total,
    }


def _summary(scores: list[dict]) -> dict:
    parsed = [s for s in scores if s["parsed"]]

    def mean(key):
        values = [s[key] for s in parsed if s.get(key) is not None]
        return float(np.mean(values)) if values else None

    reasons = collections.Counter(s["failure"].split(":")[0] for s in scores if not s["parsed"])
    return {
        "examples": len(scores),
        "parsed": len(parsed),
        "success_rate": float(np.mean([s["success"] for s in scores])) if scores else 0.0,
        "target_accuracy": mean("target_accuracy"),
        "degraded_target_accuracy": mean("degraded_target_accuracy"),
        "target_gain": mean("target_gain"),
        "gain_vs_oracle": mean("gain_vs_oracle"),
        "others_change": mean("others_change"),
        "negatives_change": mean("negatives_change"),
        "agreement": mean("agreement"),
        "failures": dict(reasons.most_common()),
    }


def evaluate_modification(
    cfg, rows: dict[int, dict], completions: dict[int, str], fresh_n: int, benchmark: Path | None = None
) -> dict:
    if all(rows[i]["modification_completion"] is None for i in rows):
        raise UserError("the dataset has no modification completions (task_generation.include_modification)")
    fresh = FreshData.from_benchmark(cfg, benchmark) if benchmark else FreshData.draw(cfg, fresh_n)
    fmt = number_format(cfg)
    ids = sorted(rows)
    scored = [score_repair(rows[i], completions.get(i), cfg, fresh) for i in ids]
    identity = []
    for i in ids:
        refs = fresh.references(rows[i])
        identity.append(score_repair(rows[i], weights_block(refs.spec, refs.degraded, fmt), cfg, fresh))
    oracle = [score_repair(rows[i], rows[i]["modification_completion"], cfg, fresh) for i in ids]
    return {
        "completions": _summary(scored),
        "baselines": {"identity": _summary(identity), "oracle": _summary(oracle)},
        "sequences": str(benchmark) if benchmark else f"{fresh_n} fresh per pattern and per negative set",
        "per_example": scored,
    }


# ---------------------------------------------------------------------------------------------------------
# the command
# ---------------------------------------------------------------------------------------------------------


def evaluate(
    folder: Path,
    completions_path: Path,
    task: str,
    fresh_n: int = 500,
    benchmark: Path | None = None,
    split: str | None = None,
) -> dict:
    if task not in TASKS:
        raise UserError(f"--task: {task!r} is not one of {', '.join(TASKS)}")
    cfg, rows = read_dataset(folder, split)
    completions = read_completions(completions_path)
    foreign = sorted(set(completions) - set(rows))
    if task == "classification":
        report = evaluate_classification(cfg, rows, completions)
    else:
        report = evaluate_modification(cfg, rows, completions, fresh_n, benchmark)
    return {
        "task": task,
        "dataset": str(Path(folder).resolve()),
        "split": split,
        "completions_file": str(Path(completions_path).resolve()),
        "examples": len(rows),
        "completions_given": len(set(completions) & set(rows)),
        "completions_missing": len(set(rows) - set(completions)),
        "completions_for_no_example": len(foreign),
        **report,
    }
