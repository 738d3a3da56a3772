"""An lm-evaluation-harness task for a weightzoo dataset (`weightzoo harness-task OUT --to DIR`).

`write_task` writes, into DIR, one YAML file per task the dataset holds (`weightzoo_classification`,
`weightzoo_modification`) and a `utils.py` whose `process_results` calls the same scorer as
`weightzoo evaluate` (`research/evaluate.py`), one document at a time. Run it with

    lm_eval --model hf --model_args pretrained=... --include_path DIR --tasks weightzoo_classification

The documents are the dataset's rows (its Parquet shards, read by `datasets`' parquet loader as the
`test` split); the prompt is the row's prompt column, the target its completion.
"""

from __future__ import annotations

import json
from pathlib import Path

from weightzoo.errors import UserError

UTILS = '''"""process_results for the weightzoo tasks: the scorer of `weightzoo evaluate`, row by row."""

from functools import lru_cache

DATASET = {dataset!r}


@lru_cache(maxsize=1)
def _dataset():
    from weightzoo.research.evaluate import FreshData, read_dataset

    cfg, _ = read_dataset(DATASET)
    return cfg, FreshData.draw(cfg, {fresh})


def process_classification(doc, results):
    from weightzoo.research.evaluate import pattern_set

    cfg, _ = _dataset()
    named, truth = pattern_set(results[0]), pattern_set(doc["classification_completion"])
    enabled = len(cfg.dataset.patterns.enabled_patterns)
    return {{
        "exact_match": float(named == truth),
        "hamming_accuracy": 1 - len(named ^ truth) / enabled,
    }}


def process_modification(doc, results):
    from weightzoo.research.evaluate import score_repair

    cfg, fresh = _dataset()
    score = score_repair(doc, results[0], cfg, fresh)
    return {{
        "success": float(score["success"]),
        "parsed": float(score["parsed"]),
        "target_gain": score.get("target_gain") or 0.0,
        "agreement": score.get("agreement") or 0.0,
    }}
'''

TASK = """task: weightzoo_{task}
dataset_path: parquet
dataset_kwargs:
  data_files:
    test: {files}
test_split: test
output_type: generate_until
doc_to_text: "{{{{{task}_prompt}}}}"
doc_to_target: "{{{{{task}_completion}}}}"
generation_kwargs:
  until: [{until}]
  max_gen_toks: {max_tokens}
  do_sample: false
process_results: !function utils.process_{task}
metric_list:
{metrics}
metadata:
  version: 1.0
"""

METRICS = {
    "classification": ("exact_match", "hamming_accuracy"),
    "modification": ("success", "parsed", "target_gain", "agreement"),
}


def write_task(folder: Path, to: Path, fresh: int = 500) -> list[Path]:
    """The task files for the dataset in `folder`, written into `to`; returns the YAML files."""
    from weightzoo.research.evaluate import read_dataset

    folder, to = Path(folder).resolve(), Path(to)
    cfg, rows = read_dataset(folder)
    tasks = [t for t in METRICS if any(row[f"{t}_completion"] is not None for row in rows.values())]
    if not tasks:
        raise UserError(f"{folder}: the dataset holds no completions to evaluate")
    longest = max(len(row[f"{t}_completion"] or "") for t in tasks for row in rows.values())
    to.mkdir(parents=True, exist_ok=True)
    (to / "utils.py").write_text(UTILS.format(dataset=str(folder), fresh=fresh))
    written = []
    for task in tasks:
        metrics = "\n".join(
            f"  - metric: {m}\n    aggregation: mean\n    higher_is_better: true" for m in METRICS[task]
        )
        until = json.dumps("\n\n") if task == "classification" else json.dumps("\n\n\n")
        path = to / f"weightzoo_{task}.yaml"
        path.write_text(
            TASK.format(
                task=task,
                files=json.dumps(str(folder / "data" / "*.parquet")),
                until=until,
                max_tokens=128 if task == "classification" else max(256, longest),
                metrics=metrics,
            )
        )
        written.append(path)
    return written
