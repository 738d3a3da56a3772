"""An evaluation's report, as JSON (everything, per example included) and as Markdown (the scores
beside the baselines, then what failed and why): what `weightzoo evaluate` writes."""

from __future__ import annotations

from pathlib import Path


def _fmt(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def markdown(report: dict) -> str:
    """The report as Markdown: the scores beside the baselines, then what failed and why."""
    lines = [
        f"# Evaluation: {report['task']}",
        "",
        f"Dataset `{report['dataset']}`, completions `{report['completions_file']}`: "
        f"{report['completions_given']} of {report['examples']} examples have a completion "
        f"({report['completions_missing']} missing, scored as failures; "
        f"{report['completions_for_no_example']} for no example of the dataset, ignored).",
        "",
    ]
    columns = {"completions": report["completions"], **report["baselines"]}
    if report["task"] == "classification":
        keys = ("exact_match", "hamming_accuracy", "micro_f1", "macro_f1", "unknown_names")
    else:
        keys = ("success_rate", "parsed", "target_accuracy", "degraded_target_accuracy", "target_gain")
        keys += ("gain_vs_oracle", "others_change", "negatives_change", "agreement")
    lines += ["| score | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for key in keys:
        lines.append(f"| {key} | " + " | ".join(_fmt(c.get(key)) for c in columns.values()) + " |")
    if report["task"] == "classification":
        lines += ["", "| pattern | F1 | oracle | majority |", "|---|---|---|---|"]
        for pattern, value in report["completions"]["per_pattern_f1"].items():
            base = [report["baselines"][b]["per_pattern_f1"][pattern] for b in ("oracle", "majority")]
            lines.append(f"| {pattern} | {_fmt(value)} | {_fmt(base[0])} | {_fmt(base[1])} |")
    else:
        failures = report["completions"]["failures"]
        if failures:
            lines += ["", "Completions that did not parse, by reason:", ""]
            lines += [f"- {reason}: {count}" for reason, count in failures.items()]
    return "\n".join(lines) + "\n"


def write_report(report: dict, prefix: Path) -> tuple[Path, Path]:
    from weightzoo.output.files import write_json_atomic, write_text_atomic

    prefix = Path(prefix)
    json_path, md_path = prefix.with_name(prefix.name + ".json"), prefix.with_name(prefix.name + ".md")
    write_json_atomic(json_path, report)
    write_text_atomic(md_path, markdown(report))
    return json_path, md_path
