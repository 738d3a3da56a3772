"""What a dataset holds, as one self-contained HTML page (`weightzoo inspect OUT`).

The page reads only the output folder (the manifest, the data and rejected shards) and embeds its
plots as PNG images, so it can be mailed or opened anywhere:
- acceptance: accepted examples and each rejection reason;
- per-pattern recall of the degraded and the improved models (held-out, from each row's metadata);
- the target's gain, and the other selected patterns' and the negatives' change, over accepted rows;
- token lengths of the text columns (counted as the card counts them), with 8k, 32k and 128k marked;
- the architectures drawn (depth by width, activations) and the patterns drawn (selected, targeted).
"""

from __future__ import annotations

import base64
import collections
import html
import io
import json
from pathlib import Path

import pyarrow.parquet as pq

from weightzoo.output.store import REPORT, read_manifest

WINDOWS = (8192, 32768, 131072)


def _figure(columns: int = 1):
    """A figure of `columns` plots side by side (drawn off screen), as (pyplot, figure, axes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, columns, figsize=(7.5, 3.6), dpi=100)
    return plt, fig, axes


def _png(plt, fig) -> str:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def _paired_bars(ax, labels: list[str], series: dict[str, tuple[list[float], str]], ylabel: str, title: str):
    """Two bars per label, side by side: `series` maps a legend name to (values, colour)."""
    x = range(len(labels))
    for offset, (name, (values, colour)) in zip((-0.2, 0.2), series.items(), strict=True):
        ax.bar([i + offset for i in x], values, width=0.4, label=name, color=colour)
    ax.set_xticks(list(x), labels, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)


def _rows(folder: Path, kind: str, columns: list[str]) -> list[dict]:
    rows = []
    for shard in sorted((folder / kind).glob("*.parquet")):
        table = pq.read_table(shard)
        rows += table.select([c for c in columns if c in table.column_names]).to_pylist()
    return rows


def acceptance_plot(accepted: int, reasons: collections.Counter) -> str:
    plt, fig, ax = _figure()
    labels = ["accepted", *reasons]
    values = [accepted, *reasons.values()]
    ax.barh(labels[::-1], values[::-1], color=["#c44e52"] * len(reasons) + ["#55a868"])
    ax.set_xlabel("examples")
    ax.set_title("Accepted examples and why the others were rejected")
    return _png(plt, fig)


def recall_plot(metadata: list[dict], enabled: list[str]) -> str:
    plt, fig, ax = _figure()
    means = {}
    for which in ("degraded", "improved"):
        values = collections.defaultdict(list)
        for m in metadata:
            for pattern, recall in (m.get("held_out", {}).get("recall", {}).get(which) or {}).items():
                values[pattern].append(recall)
        means[which] = [sum(values[p]) / len(values[p]) if values[p] else 0.0 for p in enabled]
    series = {"degraded": (means["degraded"], "#8172b2"), "improved": (means["improved"], "#4c72b0")}
    _paired_bars(ax, enabled, series, "mean held-out recall", "Per-pattern recall of both models")
    ax.set_ylim(0, 1.05)
    return _png(plt, fig)


def changes_plot(metadata: list[dict]) -> str:
    plt, fig, ax = _figure()
    target, others, negatives = [], [], []
    for m in metadata:
        acc, selected, t = m.get("accuracy", {}), m["selected_patterns"], m["target_pattern"]
        before, after = acc.get("degraded", {}), acc.get("improved", {})
        if t in before and t in after:
            target.append(after[t] - before[t])
        others += [after[p] - before[p] for p in selected if p != t and p in before and p in after]
        if "negative" in before and "negative" in after:
            negatives.append(after["negative"] - before["negative"])
    bins = [i / 20 for i in range(-20, 21)]
    ax.hist(
        [target, others, negatives], bins=bins, label=["target gain", "other selected patterns", "negatives"]
    )
    ax.set_xlabel("held-out accuracy, improved minus degraded")
    ax.set_ylabel("count")
    ax.set_title("The repair: the target's gain and what else moved")
    ax.legend(fontsize=8)
    return _png(plt, fig)


def tokens_plot(lengths: dict[str, list[int]], source: str) -> str:
    plt, fig, ax = _figure()
    import numpy as np

    every = [v for values in lengths.values() for v in values]
    bins = np.geomspace(max(min(every, default=1), 1), max(max(every, default=2), 2) * 1.01, 30)
    for column, values in lengths.items():
        if values:
            ax.hist(values, bins=bins, alpha=0.6, label=column)
    for window in WINDOWS:
        ax.axvline(window, color="black", linestyle="--", linewidth=0.8)
        ax.text(window, ax.get_ylim()[1] * 0.9, f" {window // 1024}k", fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel(f"tokens per row ({source})")
    ax.set_ylabel("rows")
    ax.set_title("Token lengths, with 8k, 32k and 128k context windows")
    ax.legend(fontsize=8)
    return _png(plt, fig)


def architectures_plot(metadata: list[dict]) -> str:
    plt, fig, (left, right) = _figure(columns=2)
    configs = [m["model_config"] for m in metadata]
    shapes = collections.Counter((c["num_layers"], c["neurons_per_layer"]) for c in configs)
    if shapes:
        layers, widths, counts = zip(*[(k[0], k[1], v) for k, v in shapes.items()], strict=True)
        left.scatter(widths, layers, s=[20 + 10 * c for c in counts], alpha=0.6, color="#4c72b0")
    from matplotlib.ticker import MaxNLocator

    left.yaxis.set_major_locator(MaxNLocator(integer=True))
    left.xaxis.set_major_locator(MaxNLocator(integer=True))
    left.set_xlabel("width")
    left.set_ylabel("hidden layers")
    left.set_title("Architectures (dot size: examples)")
    activations = collections.Counter(c["activation_type"] for c in configs)
    right.bar(list(activations), list(activations.values()), color="#55a868")
    right.set_title("Activations")
    return _png(plt, fig)


def patterns_plot(metadata: list[dict], enabled: list[str]) -> str:
    plt, fig, ax = _figure()
    selected = collections.Counter(p for m in metadata for p in m["selected_patterns"])
    targeted = collections.Counter(m["target_pattern"] for m in metadata)
    series = {"selected": ([selected[p] for p in enabled], "#4c72b0")}
    series["target"] = ([targeted[p] for p in enabled], "#dd8452")
    _paired_bars(ax, enabled, series, "accepted examples", "Patterns drawn")
    return _png(plt, fig)


def report_html(folder: Path) -> str:
    from weightzoo.output.card import TOKEN_SAMPLE, token_counter_for

    folder = Path(folder)
    info = read_manifest(folder)
    config = info.get("config", {})
    enabled = list(config.get("dataset", {}).get("patterns", {}).get("enabled_patterns", []))
    text_columns = ["modification_text", "classification_text"]
    data = _rows(folder, "data", ["metadata", *text_columns])
    rejected = _rows(folder, "rejected", ["reason"])
    metadata = [json.loads(r["metadata"]) for r in data if r.get("metadata")]
    reasons = collections.Counter(r["reason"] for r in rejected)
    counter, _ = token_counter_for(config)  # as the card counts
    lengths = {c: counter.count_sample([r[c] for r in data if r.get(c)], TOKEN_SAMPLE) for c in text_columns}
    figures = [
        ("Acceptance", acceptance_plot(len(data), reasons)),
        ("Per-pattern recall", recall_plot(metadata, enabled)),
        ("Target gain and off-target change", changes_plot(metadata)),
        ("Token lengths", tokens_plot(lengths, counter.source)),
        ("Architectures", architectures_plot(metadata)),
        ("Patterns", patterns_plot(metadata, enabled)),
    ]
    attempted = len(data) + len(rejected)
    fits = []
    for column, values in lengths.items():
        if values:
            shares = ", ".join(
                f"{w // 1024}k: {sum(v <= w for v in values) / len(values):.0%}" for w in WINDOWS
            )
            fits.append(f"<li><code>{column}</code> fits {shares}</li>")
    summary = [
        f"<li>{len(data)} accepted of {attempted} attempted ({len(data) / max(attempted, 1):.1%})</li>",
        f"<li>tokens counted with {html.escape(counter.source)}</li>",
        *fits,
        f"<li>config hash <code>{html.escape(str(info.get('config_hash', '')))}</code>, weightzoo "
        f"{html.escape(str(info.get('weightzoo_version', '')))}</li>",
    ]
    body = "\n".join(
        f"<section><h2>{html.escape(title)}</h2>"
        f'<img alt="{html.escape(title)}" src="data:image/png;base64,{png}"></section>'
        for title, png in figures
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>weightzoo dataset: {html.escape(folder.name)}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; color: #222; }}
img {{ max-width: 100%; border: 1px solid #ddd; }}
section {{ margin-bottom: 2rem; }}
</style></head>
<body>
<h1>weightzoo dataset <code>{html.escape(str(folder))}</code></h1>
<ul>{"".join(summary)}</ul>
{body}
<script>
window.addEventListener("load", () => {{
  document.body.dataset.imagesLoaded = [...document.images].filter(i => i.naturalWidth > 0).length;
}});
</script>
</body></html>
"""


def write_report(folder: Path, to: Path | None = None) -> Path:
    from weightzoo.output.files import write_text_atomic

    target = Path(to) if to is not None else Path(folder) / REPORT
    write_text_atomic(target, report_html(folder))
    return target
