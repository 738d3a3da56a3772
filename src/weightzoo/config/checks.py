"""Checks across keys: min <= max, batch sizes against the enabled patterns, the dataset limits, tokens
inside the vocabulary, patterns that have members in the sequence space. A check is skipped when a key
it reads already failed, so one mistake is never reported twice.
"""

from __future__ import annotations

import math

from weightzoo.config.messages import _overlaps
from weightzoo.config.sections import Config
from weightzoo.config.values import MAX_PARAMETERS, MAX_PATH, _fmt, _pattern_table
from weightzoo.data.space import LETTERS, SequenceSpace

# ---------------------------------------------------------------------------------------------------------
# cross-key checks
# ---------------------------------------------------------------------------------------------------------


def _cross_field_problems(cfg: Config, failed: list[str]) -> list[str]:
    """Problems that involve more than one key. A check is skipped when a key it reads failed already."""
    problems: list[str] = []

    def clean(*paths: str) -> bool:
        return not any(_overlaps(path, bad) for path in paths for bad in failed)

    m, p = cfg.model, cfg.dataset.patterns

    ranges = {
        "model.num_layers": m.num_layers,
        "model.neurons_per_layer": m.neurons_per_layer,
        "model.learning_rate": m.learning_rate,
    }
    for path, r in ranges.items():
        if clean(path) and r.min > r.max:
            problems.append(f"{path}: min {_fmt(r.min)} is greater than max {_fmt(r.max)}")

    pp = "dataset.patterns"
    if clean(f"{pp}.min_patterns_per_batch", f"{pp}.max_patterns_per_batch"):
        if p.min_patterns_per_batch > p.max_patterns_per_batch:
            problems.append(
                f"{pp}.min_patterns_per_batch: {p.min_patterns_per_batch} is greater than "
                f"max_patterns_per_batch {p.max_patterns_per_batch}"
            )
    n_enabled = len(p.enabled_patterns)
    for key in ("min_patterns_per_batch", "max_patterns_per_batch"):
        if clean(f"{pp}.{key}", f"{pp}.enabled_patterns") and getattr(p, key) > n_enabled:
            problems.append(f"{pp}.{key}: {getattr(p, key)} is more than the {n_enabled} enabled patterns")

    if clean(f"{pp}.target_total_examples", f"{pp}.max_total_examples"):
        if p.target_total_examples > p.max_total_examples:
            problems.append(
                f"{pp}.target_total_examples: {p.target_total_examples} is greater than "
                f"max_total_examples {p.max_total_examples}"
            )
    implied = (f"{pp}.samples_per_pattern", f"{pp}.max_patterns_per_batch", f"{pp}.negative_ratio")
    if clean(*implied, f"{pp}.max_total_examples"):
        # the smallest dataset: every pattern at its floor, and its negatives (rounded as dataset_sizes does)
        positives = p.samples_per_pattern.min * p.max_patterns_per_batch
        negatives = positives * p.negative_ratio  # a float: inf for a ratio near the largest float
        smallest = positives + round(negatives) if math.isfinite(negatives) else math.inf
        if smallest > p.max_total_examples:
            count = smallest if math.isfinite(smallest) else "too many to count"
            problems.append(
                f"{pp}.max_total_examples: {p.max_total_examples} is less than the smallest dataset the "
                f"config implies, {count} (samples_per_pattern.min {p.samples_per_pattern.min}"
                f" * max_patterns_per_batch {p.max_patterns_per_batch}"
                f" * (1 + negative_ratio {_fmt(p.negative_ratio)}))"
            )

    # tokens the starts_with / ends_with patterns ask for must be letters of the vocabulary
    tokens_ok = {}
    for key in ("starts_with_token", "ends_with_token"):
        letter = getattr(p, key)
        tokens_ok[key] = clean(f"{pp}.{key}", "model.vocab_size") and LETTERS.index(letter) < m.vocab_size
        if clean(f"{pp}.{key}", "model.vocab_size") and not tokens_ok[key]:
            letters = LETTERS[: m.vocab_size]
            problems.append(
                f"{pp}.{key}: {letter!r} is not in the vocabulary {letters[0]}..{letters[-1]} "
                f"(vocab_size {m.vocab_size})"
            )

    if clean(f"{pp}.enabled_patterns", "model.vocab_size", "model.sequence_length"):
        space = SequenceSpace(
            m.vocab_size,
            m.sequence_length,
            starts_with_token=LETTERS.index(p.starts_with_token) if tokens_ok["starts_with_token"] else 0,
            ends_with_token=LETTERS.index(p.ends_with_token) if tokens_ok["ends_with_token"] else 1,
        )
        # a pattern that reads a token which is itself wrong is not counted (its problem is reported above)
        skip = {
            "starts_with": not tokens_ok["starts_with_token"],
            "ends_with": not tokens_ok["ends_with_token"],
        }
        table = _pattern_table()
        for name in p.enabled_patterns:
            if not skip.get(name) and table[name].count(space) == 0:
                problems.append(
                    f"{pp}.enabled_patterns: {name!r} has no members at vocab_size {m.vocab_size}, "
                    f"sequence_length {m.sequence_length}"
                )

    model_keys = ("model.num_layers", "model.neurons_per_layer", "model.input_encoding")
    if clean(*model_keys, "model.vocab_size", "model.sequence_length"):
        inputs = m.sequence_length * (m.vocab_size if m.input_encoding == "one_hot" else 1)
        layers, width = m.num_layers.max, m.neurons_per_layer.max
        largest = inputs * width + width + (layers - 1) * (width * width + width) + width + 1
        if largest > MAX_PARAMETERS:
            problems.append(
                f"model.neurons_per_layer.max: {width} units in {layers} layers (num_layers.max) make a "
                f"model of {largest:,} parameters, more than the {MAX_PARAMETERS:,} a run can hold"
            )

    for key, path in (
        ("signature.dataset_path", cfg.signature.dataset_path),
        ("pipeline.output_dir", cfg.pipeline.output_dir),
        ("metrics.dir", cfg.metrics.dir),
    ):
        if clean(key) and len(str(path)) > MAX_PATH:
            problems.append(f"{key}: resolved, the path is {len(str(path))} characters (at most {MAX_PATH})")

    t = cfg.task_generation
    if clean("task_generation") and not (t.include_modification or t.include_classification):
        problems.append(
            "task_generation: include_modification and include_classification are both false; "
            "at least one must be true"
        )
    return problems
