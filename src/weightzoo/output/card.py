"""The dataset card: a Hugging Face style README.md built from what a run left in its output folder.

`dataset_card(out)` reads `dataset_info.json`, the accepted shards (`data/cohort-*.parquet`) and the
rejected shards (`rejected/cohort-*.parquet`) and returns the card's text: YAML front matter (the
`default` config pointing at `data/*.parquet`, license, tags), then Markdown with the config summary,
the counts, the rejection reasons, a per-pattern improvement table, token statistics and the hashes
that identify the run. `write_card(out)` writes it to `out/README.md` atomically. Nothing secret is
read: `dataset_info.json` holds the config without `hub.token`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq

from weightzoo.errors import UserError
from weightzoo.output.files import sha256_file, write_text_atomic
from weightzoo.output.store import CARD, PINNED_SIGNATURE, read_manifest

TEXT_COLUMNS = ("modification_text", "classification_text")
WINDOWS = (8192, 32768, 131072)  # context windows of common fine-tuning setups
TOKEN_SAMPLE = 2000  # rows per column whose tokens are counted (evenly spaced); characters use every row
TAGS = ("interpretability", "mechanistic-interpretability", "neural-network-weights", "synthetic")


def _shards(out: Path, kind: str) -> list[Path]:
    return sorted((out / kind).glob("*.parquet"))  # cohort-K shards, or a split folder's train-/test-


def _splits(out: Path) -> list[str]:
    """The splits a `weightzoo split` folder holds, in order; none for a run's own folder."""
    return [s for s in ("train", "validation", "test") if (out / "data" / f"{s}-00000.parquet").exists()]


def _column(paths: list[Path], name: str) -> list:
    values: list = []
    for path in paths:
        if name in pq.read_schema(path).names:
            values += pq.read_table(path, columns=[name]).column(0).to_pylist()
    return values


def _file_sha256(path: Path) -> str | None:
    try:
        return sha256_file(path)
    except OSError:
        return None


def _range(section: dict, key: str) -> str:
    r = section.get(key) or {}
    lo, hi = r.get("min"), r.get("max")
    return f"{lo}" if lo == hi else f"{lo}–{hi}"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1%}"


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def _spread(values: list[float]) -> str:
    """min / quartiles / max of some values, as a table cell."""
    if not values:
        return "n/a"
    xs = sorted(values)

    def at(q: float) -> float:
        return xs[min(len(xs) - 1, int(q * (len(xs) - 1) + 0.5))]

    return " / ".join(f"{at(q):+.3f}" if any(x < 0 for x in xs) else f"{at(q):.3f}" for q in _QUANTILES)


_QUANTILES = (0.0, 0.25, 0.5, 0.75, 1.0)


def _label_quality(metadata: list[dict]) -> list[str]:
    """Distributions, over accepted examples, of what their labels rest on (held-out measurements)."""
    rows: dict[str, list[float]] = {k: [] for k in ("worst", "spec", "gain", "other", "negatives")}
    sizes: list[int] = []
    extra = 0
    for m in metadata:
        held = m.get("held_out")
        if not held:
            continue
        recall, specificity = held.get("recall") or {}, held.get("specificity") or {}
        improved, degraded = recall.get("improved") or {}, recall.get("degraded") or {}
        selected, target = m.get("selected_patterns") or [], m.get("target_pattern")
        if not selected or any(p not in improved or p not in degraded for p in selected):
            continue
        rows["worst"].append(min(improved[p] for p in selected))
        rows["gain"].append(improved[target] - degraded[target])
        rows["other"] += [improved[p] - degraded[p] for p in selected if p != target]
        if specificity.get("improved") is not None and specificity.get("degraded") is not None:
            rows["spec"].append(specificity["improved"])
            rows["negatives"].append(specificity["improved"] - specificity["degraded"])
        sizes += [n for g, n in (held.get("sizes") or {}).items() if g in selected or g == "negative"]
        extra += len(set(m.get("detected_patterns") or []) - set(selected))
    if not rows["worst"]:
        return []
    median_size = sorted(sizes)[len(sizes) // 2] if sizes else "n/a"
    return [
        "## Label quality",
        "",
        "Measured on held-out rows no model was trained on (median set size: "
        f"{median_size} rows per pattern and for negatives), with the stored weights. Each cell is "
        "min / 25% / median / 75% / max over the accepted examples.",
        "",
        "| Measurement | Distribution |",
        "|---|---|",
        f"| Improved model: recall of its worst selected pattern | {_spread(rows['worst'])} |",
        f"| Improved model: specificity (matching none of its patterns) | {_spread(rows['spec'])} |",
        f"| Target gain (improved − degraded recall of the target) | {_spread(rows['gain'])} |",
        f"| Change on each other selected pattern | {_spread(rows['other'])} |",
        f"| Change on negatives | {_spread(rows['negatives'])} |",
        "",
        "A classification completion names every enabled pattern the improved model detects (held-out "
        "recall at least `validation.min_pattern_accuracy`); the quality gate makes every selected "
        f"pattern one of them. Patterns named beyond the selected ones: {extra} in all (a pattern whose "
        "members all match a selected one, such as all_same inside palindrome, is detected too).",
        "",
    ]


def _front_matter(license: str, accepted: int, splits: list[str] | None = None) -> str:
    if accepted < 1_000:
        size = "n<1K"
    elif accepted < 10_000:
        size = "1K<n<10K"
    elif accepted < 100_000:
        size = "10K<n<100K"
    else:
        size = "100K<n<1M"
    lines = [
        "---",
        f"license: {license}",
        "language:",
        "- en",
        "pretty_name: weightzoo subject models",
        "size_categories:",
        f"- {size}",
        "tags:",
        *[f"- {t}" for t in TAGS],
        "configs:",
        "- config_name: default",
        "  data_files:",
    ]
    for split in splits or ["train"]:
        pattern = f"data/{split}-*.parquet" if splits else "data/*.parquet"
        lines += [f"  - split: {split}", f"    path: {pattern}"]
    lines.append("---")
    return "\n".join(lines)


def _config_summary(info: dict) -> list[str]:
    config = info.get("config") or {}
    model = config.get("model") or {}
    patterns = (config.get("dataset") or {}).get("patterns") or {}
    tasks = config.get("task_generation") or {}
    signature = config.get("signature") or {}
    staged = config.get("staged_training") or {}
    validation = config.get("validation") or {}
    training = config.get("training") or {}
    task_types = [
        name
        for name, key in (
            ("modification", "include_modification"),
            ("classification", "include_classification"),
        )
        if tasks.get(key)
    ]
    methods = signature.get("neuron_profile_methods") or {}
    method_text = ", ".join(
        name + (f" ({', '.join(f'{k}={v}' for k, v in params.items())})" if params else "")
        for name, params in methods.items()
    )
    lr = model.get("learning_rate") or {}
    per_model = f"{patterns.get('min_patterns_per_batch')}–{patterns.get('max_patterns_per_batch')}"
    return [
        "## Configuration",
        "",
        "| Setting | Value |",
        "|---|---|",
        f"| Vocabulary size | {model.get('vocab_size')} |",
        f"| Sequence length | {model.get('sequence_length')} |",
        f"| Enabled patterns | {', '.join(patterns.get('enabled_patterns') or [])} |",
        f"| Patterns per model | {per_model} |",
        f"| Layers | {_range(model, 'num_layers')} |",
        f"| Neurons per layer | {_range(model, 'neurons_per_layer')} |",
        f"| Activations | {', '.join(model.get('activation_types') or [])} |",
        f"| Learning rate | {lr.get('min')}–{lr.get('max')} |",
        f"| Precision / quantization | {model.get('precision')} / {model.get('quantization')} |",
        f"| Task types | {', '.join(task_types) or 'none'} |",
        f"| Signature methods | {method_text} |",
        f"| Prompt style | {(signature.get('prompt_format') or {}).get('style')} |",
        f"| Min degradation threshold | {training.get('min_degradation_threshold')} |",
        f"| Min improvement threshold | {staged.get('min_improvement_threshold')} |",
        f"| Min pattern improvement | {validation.get('min_pattern_improvement')} |",
        f"| Max other degradation | {validation.get('max_other_degradation')} |",
        f"| Max negative degradation | {_or_other(validation.get('max_negative_degradation'))} |",
        f"| Quality gate: min pattern / negative accuracy | {validation.get('min_pattern_accuracy')} / "
        f"{validation.get('min_negative_accuracy')} |",
        f"| Held-out rows per pattern (`test_set_size`) | {validation.get('test_set_size')} |",
        f"| Random seed | {(config.get('pipeline') or {}).get('random_seed')} |",
        "",
    ]


def _or_other(limit) -> str:
    return "as other patterns" if limit is None else str(limit)


def token_counter_for(config: dict):
    """The token counter for the card, and the sentence that says how tokens were counted: the
    tokenizer `signature.prompt_format.tokenizer` names, else the bundled Llama 3 tokenizer, else an
    estimate, said to be one (also when the named tokenizer cannot be loaded where the card is written)."""
    from weightzoo.text.tokens import token_counter

    name = ((config.get("signature") or {}).get("prompt_format") or {}).get("tokenizer")
    try:
        counter = token_counter(name)
    except UserError as e:
        counter = token_counter(None)
        return (
            counter,
            f"Tokens counted with {counter.source}: the tokenizer `{name}` could not be loaded here ({e}).",
        )
    if counter.exact:
        return counter, f"Tokens counted with {counter.source}."
    return counter, (
        f"Token counts are an **estimate** ({counter.source}); number-heavy text usually tokenizes "
        "denser, so treat them as a lower bound."
    )


def dataset_card(out: Path, license: str = "other") -> str:
    """The README.md text for the dataset in `out` (a run-data-gen output folder)."""
    out = Path(out)
    info = read_manifest(out)
    data, rejected = _shards(out, "data"), _shards(out, "rejected")

    metadata = [json.loads(m) for m in _column(data, "metadata") if m]
    accepted = sum(pq.read_metadata(p).num_rows for p in data)
    reasons_list = _column(rejected, "reason")
    rejected_n = len(reasons_list)
    attempted = info.get("attempted") if info.get("complete") else None
    if not isinstance(attempted, int) or attempted < accepted:
        attempted = accepted + rejected_n
    rate = accepted / attempted if attempted else None
    reasons: dict[str, int] = {}
    for r in reasons_list:
        key = r if r else "(none)"
        reasons[key] = reasons.get(key, 0) + 1

    # per target pattern: count, mean degraded and improved held-out accuracy on the target
    per_pattern: dict[str, dict[str, list[float]]] = {}
    for m in metadata:
        target = m.get("target_pattern")
        if target is None:
            continue
        acc = m.get("accuracy") or {}
        entry = per_pattern.setdefault(target, {"n": [], "degraded": [], "improved": []})
        entry["n"].append(1.0)
        for which in ("degraded", "improved"):
            value = (acc.get(which) or {}).get(target)
            if isinstance(value, (int, float)):
                entry[which].append(float(value))

    config = info.get("config") or {}
    enabled = ((config.get("dataset") or {}).get("patterns") or {}).get("enabled_patterns") or []
    order = [p for p in enabled if p in per_pattern] + sorted(p for p in per_pattern if p not in enabled)

    pinned = out / str(info.get("signature_copy") or PINNED_SIGNATURE)
    sig_file_hash = _file_sha256(pinned) if pinned.is_file() else None

    status = "complete" if info.get("complete") else "incomplete (run in progress or stopped)"
    lines = [
        _front_matter(license, accepted, _splits(out)),
        "",
        "# weightzoo dataset",
        "",
        "Each row is one small subject model trained on a sequence classification task, in two checkpoints: "
        "a *degraded* model that was trained with one target pattern corrupted, and an *improved* model "
        "fine-tuned to fix it. Rows hold both checkpoints' weights, their activation signatures on a fixed "
        "probe set, and text tasks for training an interpreter model. Generated with "
        f"weightzoo {info.get('weightzoo_version', 'unknown')}.",
        "",
        "## Counts",
        "",
        "| | |",
        "|---|---|",
        f"| Accepted examples | {accepted} |",
        f"| Attempted examples | {attempted} |",
        f"| Acceptance rate | {_pct(rate)} |",
        f"| Status | {status} |",
        "",
        "## Rejection reasons",
        "",
    ]
    if reasons:
        lines += ["| Reason | Count |", "|---|---|"]
        lines += [f"| {r} | {n} |" for r, n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))]
    else:
        lines.append("No example was rejected.")
    lines += [
        "",
        "## Per-pattern improvement",
        "",
        "Mean held-out accuracy on the target pattern, before (degraded) and after (improved) the fix.",
        "",
        "| Target pattern | Examples | Degraded | Improved | Gain |",
        "|---|---|---|---|---|",
    ]
    for p in order:
        entry = per_pattern[p]
        d, i = _mean(entry["degraded"]), _mean(entry["improved"])
        gain = f"{(i - d) * 100:+.1f} pts" if d is not None and i is not None else "n/a"
        lines.append(f"| {p} | {len(entry['n'])} | {_pct(d)} | {_pct(i)} | {gain} |")
    lines += ["", *_label_quality(metadata)]
    counter, counted_by = token_counter_for(config)
    unit = "tokens" if counter.exact else "tokens (est.)"
    lines += [
        "## Token statistics",
        "",
        counted_by,
        "",
        f"| Column | Rows | Mean chars | Max chars | Mean {unit} | Max {unit} |",
        "|---|---|---|---|---|---|",
    ]
    fits = []
    for column in TEXT_COLUMNS:
        texts = [t for t in _column(data, column) if t is not None]
        if not texts:
            lines.append(f"| {column} | 0 | – | – | – | – |")
            continue
        chars = [len(t) for t in texts]
        tokens = counter.count_sample(texts, TOKEN_SAMPLE)
        lines.append(
            f"| {column} | {len(texts)} | {sum(chars) / len(chars):.1f} | {max(chars)} | "
            f"{sum(tokens) / len(tokens):.1f} | {max(tokens)} |"
        )
        shares = ", ".join(f"{w // 1024}k {sum(n <= w for n in tokens) / len(tokens):.0%}" for w in WINDOWS)
        fits.append(f"- `{column}`: {shares}")
    if fits:
        lines += ["", "Rows whose whole text fits a context window of 8k, 32k and 128k tokens:", "", *fits]
    if accepted > TOKEN_SAMPLE:
        lines += ["", f"Token figures are from {TOKEN_SAMPLE:,} evenly spaced rows of each column."]
    lines += [
        "",
        "## Provenance",
        "",
        f"- weightzoo version: `{info.get('weightzoo_version', 'unknown')}`",
        f"- Config hash (sha256, hub token excluded): `{info.get('config_hash', 'unknown')}`",
        f"- Probe set hash (signature dataset content): `{info.get('signature_hash', 'unknown')}`",
    ]
    if sig_file_hash:
        lines.append(
            f"- Signature file hash (sha256 of the copy in `{pinned.relative_to(out)}`, the probe set "
            f"every signature was taken on): `{sig_file_hash}`"
        )
    lines += ["", *_config_summary(info)]
    return "\n".join(lines).rstrip() + "\n"


def write_card(out: Path, license: str = "other") -> Path:
    """Write `out/README.md` atomically (a temporary file, then a rename); returns its path."""
    out = Path(out)
    text = dataset_card(out, license)
    path = out / CARD
    write_text_atomic(path, text)
    return path
