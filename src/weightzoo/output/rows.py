"""Output rows: one accepted example → one row in the seed's layout; one rejected example → one record.

The columns are declared once, as Arrow schemas, and every shard is checked against them on write.
JSON-valued columns are JSON strings (the seed's downstream readers parse them): `metadata`,
`*_model_weights` (`{"config": model_config, "weights": {name: nested lists}}`), `*_signature` and
`training_metrics`. They are written with orjson: float32 weights as the shortest decimal that reads
back to the same float32 (about half the text of Python's `json`, and 20× faster), and a NaN (e.g.
the gain of a model whose training broke) as `null`, which every JSON reader accepts. A task the
config does not generate (`task_generation`) leaves its three text columns null.
"""

from __future__ import annotations

import orjson
import pyarrow as pa

from weightzoo.config import Config
from weightzoo.data.patterns import PATTERNS
from weightzoo.judge.pairs import TrainedExample, held_out_sizes
from weightzoo.judge.validation import detected_patterns
from weightzoo.text import NumberFormat, classification, modification, pattern_descriptions

TEXT_COLUMNS = (
    "modification_prompt",
    "modification_completion",
    "modification_text",
    "classification_prompt",
    "classification_completion",
    "classification_text",
)
SCHEMA = pa.schema(
    [
        ("example_id", pa.int64()),
        ("metadata", pa.string()),
        *[(name, pa.string()) for name in TEXT_COLUMNS],
        ("degraded_model_weights", pa.string()),
        ("improved_model_weights", pa.string()),
        ("degraded_signature", pa.string()),
        ("improved_signature", pa.string()),
        ("training_metrics", pa.string()),
    ]
)
REJECTED_SCHEMA = pa.schema(
    [
        ("example_id", pa.int64()),
        ("reason", pa.string()),
        ("failures", pa.string()),
        ("target_pattern", pa.string()),
        ("selected_patterns", pa.string()),
        ("accuracy", pa.string()),
    ]
)


def _json(value) -> str:
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def model_config(cfg: Config, example: TrainedExample) -> dict:
    config = example.plan.spec.to_config()
    config.update(precision=cfg.model.precision, quantization=cfg.model.quantization)
    return config


def weights_json(config: dict, weights, scales: dict[str, float]) -> str:
    return _json(
        {
            "config": config,
            "weights": {name: tensor.contiguous().numpy() for name, tensor in weights.items()},
            "quantization_scales": scales,
        }
    )


def row_texts(
    cfg: Config, spec, degraded, improved, signatures: dict[str, dict], target: str, detected: list[str]
) -> dict[str, str | None]:
    """The prompt, completion and text columns of a row, as the config's `signature.prompt_format` and
    `task_generation` say (None for a task left out). `render` calls it on stored rows too."""
    fmt = number_format(cfg)
    style = cfg.signature.prompt_format.style
    space = cfg.space
    texts: dict[str, str | None] = dict.fromkeys(TEXT_COLUMNS)
    if cfg.task_generation.include_modification:
        prompt, completion = modification(
            spec, degraded, improved, signatures["degraded"], PATTERNS[target].description(space), fmt, style
        )
        texts.update(modification_prompt=prompt, modification_completion=completion)
        texts["modification_text"] = prompt + completion
    if cfg.task_generation.include_classification:
        enabled = pattern_descriptions(tuple(cfg.dataset.patterns.enabled_patterns), space)
        prompt, completion = classification(
            spec, improved, signatures["improved"], enabled, detected, fmt, style
        )
        texts.update(classification_prompt=prompt, classification_completion=completion)
        texts["classification_text"] = prompt + completion
    return texts


def accepted_row(cfg: Config, example: TrainedExample, signatures: dict[str, dict]) -> dict:
    """The row of an accepted example; `signatures` holds its "degraded" and "improved" signatures."""
    plan, spec = example.plan, example.plan.spec
    config = model_config(cfg, example)
    enabled_names = tuple(cfg.dataset.patterns.enabled_patterns)
    detected = detected_patterns(
        example.recall["improved"], plan.selected, enabled_names, cfg.validation.min_pattern_accuracy
    )
    texts = row_texts(cfg, spec, example.degraded, example.improved, signatures, plan.target, detected)
    result = example.result
    metadata = {
        "example_index": plan.index,
        "seed": cfg.pipeline.random_seed,
        "selected_patterns": list(plan.selected),
        "target_pattern": plan.target,
        "model_config": config,
        "accuracy": example.accuracy,
        "target_gain": example.verdict.target_gain,
        "overall_gain": example.verdict.overall_gain,
        "corruption": plan.corruption_stats(),
        "dataset_rows": len(plan.data),
        "test_rows": len(plan.test.groups),
        # what the classification completion names, and the held-out measurements behind it
        "detected_patterns": detected,
        "held_out": {
            "recall": example.recall,
            "specificity": {which: example.accuracy[which].get("negative") for which in example.accuracy},
            "sizes": held_out_sizes(plan),
        },
    }
    metrics = {
        "history": result.history,
        "summary": {
            "stage1_epochs": result.stage1_epochs,
            "stage2_epochs": result.stage2_epochs,
            "stage1_best_epoch": result.stage1_best_epoch,
            "stage2_best_epoch": result.stage2_best_epoch,
        },
    }
    return {
        "example_id": plan.index,
        "metadata": _json(metadata),
        **texts,
        "degraded_model_weights": weights_json(config, example.degraded, example.scales["degraded"]),
        "improved_model_weights": weights_json(config, example.improved, example.scales["improved"]),
        "degraded_signature": _json(signatures["degraded"]),
        "improved_signature": _json(signatures["improved"]),
        "training_metrics": _json(metrics),
    }


def rejected_row(example: TrainedExample) -> dict:
    return {
        "example_id": example.plan.index,
        "reason": example.verdict.reason,
        "failures": _json(example.verdict.failures),
        "target_pattern": example.plan.target,
        "selected_patterns": _json(list(example.plan.selected)),
        "accuracy": _json(example.accuracy),
    }


def number_format(cfg: Config) -> NumberFormat:
    """How the config says numbers are written (`signature.prompt_format`)."""
    prompt = cfg.signature.prompt_format
    return NumberFormat(prompt.decimals, prompt.compact_numbers, grid=prompt.numbers == "grid")
