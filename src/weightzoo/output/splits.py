"""A dataset cut into train, validation and test splits (`weightzoo split OUT --to NEW`).

Which split a row goes to is a function of the row alone (and the split seed), never of its place in
the folder, so a split is the same however the dataset was generated or resumed:
- rows whose selected patterns form a *held-out combination* go to test: a share
  (`hold_out_combinations`) of the distinct combinations in the dataset, chosen by a hash of the
  combination's sorted names, so an interpreter is tested on pattern sets it never trained on;
- every other row goes by a hash of its improved model's stored weights: below `test` to test, below
  `test + validation` to validation, else to train. Rows with the same weights have the same hash, so
  no weight-hash duplicate crosses a split boundary.

The new folder holds `data/{train,validation,test}-00000.parquet` (a split left empty is left out),
which `datasets.load_dataset(NEW)` reads as splits (the card's `configs` say so), the rejected shards
and the probe set as they are, and a manifest recording the source, the options and each split's
count.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from weightzoo.errors import UserError
from weightzoo.output.files import write_atomic, write_json_atomic
from weightzoo.output.store import INFO, PINNED_SIGNATURE, new_folder, read_manifest

SPLITS = ("train", "validation", "test")


def _unit(*parts: str) -> float:
    """A number in [0, 1) that is a pure function of the parts."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def weights_hash(row: dict) -> str:
    return hashlib.sha256(row["improved_model_weights"].encode()).hexdigest()


def combination(row: dict) -> str:
    return ",".join(sorted(json.loads(row["metadata"])["selected_patterns"]))


def assign(
    rows: list[dict], validation: float, test: float, hold_out_combinations: float = 0.0, seed: int = 0
) -> tuple[list[str], list[str]]:
    """Each row's split, and the held-out combinations."""
    if not (0 <= validation < 1 and 0 <= test < 1 and validation + test < 1):
        raise UserError(f"--validation {validation} and --test {test}: each in [0, 1), together below 1")
    if not 0 <= hold_out_combinations < 1:
        raise UserError(f"--hold-out-combinations {hold_out_combinations}: in [0, 1)")
    combos = sorted({combination(r) for r in rows})
    held = [c for c in combos if _unit(str(seed), "combination", c) < hold_out_combinations]
    held_set = set(held)
    hashes = [weights_hash(r) for r in rows]
    # a weight hash with any row in a held-out combination goes to test whole: no duplicate crosses
    tested = {h for h, r in zip(hashes, rows, strict=True) if combination(r) in held_set}
    splits = []
    for h in hashes:
        u = _unit(str(seed), "weights", h)
        if h in tested or u < test:
            splits.append("test")
        else:
            splits.append("validation" if u < test + validation else "train")
    return splits, held


def split_dataset(
    source: Path,
    target: Path,
    validation: float = 0.05,
    test: float = 0.05,
    hold_out_combinations: float = 0.0,
    seed: int = 0,
) -> dict[str, int]:
    """Write `target`: the dataset in `source` in three splits; returns each split's row count."""
    from weightzoo.output.card import write_card

    source, target = Path(source), Path(target)
    info = read_manifest(source, finished=True)
    shards = sorted((source / "data").glob("*.parquet"))
    tables = [pq.read_table(s) for s in shards]
    if not tables or sum(t.num_rows for t in tables) == 0:
        raise UserError(f"{source}: the dataset has no rows")
    table = pa.concat_tables(tables).combine_chunks()
    rows = table.select(["example_id", "metadata", "improved_model_weights"]).to_pylist()
    splits, held = assign(rows, validation, test, hold_out_combinations, seed)
    (new_folder(target) / "data").mkdir()
    counts = {}
    for name in SPLITS:
        keep = pa.array([s == name for s in splits])
        part = table.filter(keep).replace_schema_metadata({b"weightzoo.split": name.encode()})
        counts[name] = part.num_rows
        if part.num_rows:
            write_atomic(target / "data" / f"{name}-00000.parquet", lambda p, t=part: pq.write_table(t, p))
    for extra in (source / "rejected", (source / PINNED_SIGNATURE).parent):
        if extra.is_dir():
            shutil.copytree(extra, target / extra.name)
    manifest = dict(info)
    manifest["split_from"] = {
        "folder": str(source.resolve()),
        "validation": validation,
        "test": test,
        "hold_out_combinations": hold_out_combinations,
        "seed": seed,
        "held_out_combinations": held,
        "rows": counts,
    }
    write_json_atomic(target / INFO, manifest)
    write_card(target)
    return counts
