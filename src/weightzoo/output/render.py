"""A dataset's prompts written again with other format options, without retraining (`weightzoo render`).

Every row already stores what its texts are made of: both models' weights (as stored, after rounding
and quantization), both signatures, the target pattern and the patterns its classification completion
names. `render` reads a finished output folder and writes a new one in which the prompt, completion and
text columns come from those stored parts under the new `signature.prompt_format` options, by the same
function a run uses (`rows.row_texts`). Every other column keeps its value, byte for byte; rejected
shards and the pinned probe set are copied as they are. The new folder's manifest records where it came
from and what changed (`rendered_from`), and its card is written for it.

A rendered folder is a dataset, not a run: its shards carry no run stamp, so `run-data-gen` does not
resume into it.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from weightzoo.engine.model import stored_weights
from weightzoo.errors import UserError
from weightzoo.output.files import write_atomic, write_json_atomic
from weightzoo.output.rows import TEXT_COLUMNS, row_texts
from weightzoo.output.store import INFO, PINNED_SIGNATURE, new_folder, read_manifest

FORMAT_OPTIONS = ("style", "decimals", "compact_numbers", "numbers")


def render_row(cfg, row: dict) -> dict[str, str | None]:
    """A stored row's text columns under `cfg`'s format options."""
    spec, degraded = stored_weights(row["degraded_model_weights"])
    _, improved = stored_weights(row["improved_model_weights"])
    signatures = {
        "degraded": json.loads(row["degraded_signature"]),
        "improved": json.loads(row["improved_signature"]),
    }
    metadata = json.loads(row["metadata"])
    detected = metadata.get("detected_patterns", metadata["selected_patterns"])
    return row_texts(cfg, spec, degraded, improved, signatures, metadata["target_pattern"], detected)


def render(source: Path, target: Path, changes: dict[str, Any], log=print) -> Path:
    """Write `target`: the dataset in `source` with `signature.prompt_format` changed by `changes`."""
    from weightzoo import __version__
    from weightzoo.config import parse_config
    from weightzoo.output.card import write_card

    source, target = Path(source), Path(target)
    unknown = sorted(set(changes) - set(FORMAT_OPTIONS))
    if unknown:
        raise UserError(f"render changes only {', '.join(FORMAT_OPTIONS)}, not {', '.join(unknown)}")
    info = read_manifest(source, finished=True)
    raw = copy.deepcopy(info["config"])
    raw["signature"]["prompt_format"].update(changes)
    cfg = parse_config(raw, source=f"{source / INFO} with {changes}")
    if source.resolve() == target.resolve():
        raise UserError("--to: the new folder must not be the source folder")
    new_folder(target)

    for kind in ("data", "rejected"):
        (target / kind).mkdir()
        for shard in sorted((source / kind).glob("*.parquet")):
            if kind == "rejected":
                shutil.copyfile(shard, target / kind / shard.name)
                continue
            table = pq.read_table(shard)
            rows = table.to_pylist()
            texts = [render_row(cfg, row) for row in rows]
            for column in TEXT_COLUMNS:
                values = pa.array([t[column] for t in texts], type=table.schema.field(column).type)
                table = table.set_column(table.schema.get_field_index(column), column, values)
            table = table.replace_schema_metadata({b"weightzoo.rendered_from": str(source).encode()})
            write_atomic(target / kind / shard.name, lambda path, table=table: pq.write_table(table, path))
            log(f"rendered {kind}/{shard.name}: {len(rows)} rows")
    pinned = source / PINNED_SIGNATURE
    if pinned.exists():
        (target / PINNED_SIGNATURE).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(pinned, target / PINNED_SIGNATURE)
    manifest = dict(info)
    manifest.update(
        config=cfg.model_dump(mode="json"),
        config_hash=cfg.config_hash,
        rendered_from={
            "folder": str(source.resolve()),
            "config_hash": info.get("config_hash"),
            "prompt_format_changes": changes,
            "weightzoo_version": __version__,
        },
    )
    write_json_atomic(target / INFO, manifest)
    write_card(target)
    return target
