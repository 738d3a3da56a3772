"""`weightzoo split`: train, validation and test splits that datasets reads as splits."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_pipeline import COHORT, tiny_config

from weightzoo.cli import main
from weightzoo.errors import UserError
from weightzoo.output.splits import assign, combination, split_dataset, weights_hash
from weightzoo.run.pipeline import run_data_gen

PATTERNS = ["palindrome", "sorted_ascending", "first_last_match", "has_majority", "all_same"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    cfg = tiny_config(tmp_path_factory.mktemp("splits"), dataset={"output_dataset_length": 40})
    run_data_gen(cfg, workers=1, log=lambda _: None, cohort_size=COHORT)
    return cfg.pipeline.output_dir


def _row(i: int, weights: int, patterns: list[str]) -> dict:
    return {
        "example_id": i,
        "metadata": json.dumps({"selected_patterns": patterns}),
        "improved_model_weights": json.dumps({"weights": weights}),
    }


ROWS = st.lists(
    st.tuples(st.integers(0, 15), st.lists(st.sampled_from(PATTERNS), min_size=1, max_size=3, unique=True)),
    min_size=1,
    max_size=80,
)


@settings(max_examples=200, deadline=None)
@given(
    rows=ROWS,
    validation=st.floats(0, 0.45),
    test=st.floats(0, 0.45),
    held=st.floats(0, 0.9),
    seed=st.integers(0, 9),
)
def test_no_duplicate_crosses_a_split_and_held_out_combinations_are_only_tested(
    rows, validation, test, held, seed
):
    made = [_row(i, w, p) for i, (w, p) in enumerate(rows)]
    splits, held_out = assign(made, validation, test, held, seed)
    by_hash: dict[str, set] = {}
    for row, split in zip(made, splits, strict=True):
        by_hash.setdefault(weights_hash(row), set()).add(split)
        if combination(row) in held_out:
            assert split == "test"
    assert all(len(s) == 1 for s in by_hash.values())
    again, _ = assign(made[::-1], validation, test, held, seed)  # a row's split is its own, not its place
    assert again[::-1] == splits


def test_datasets_reads_the_splits(dataset, tmp_path):
    datasets = pytest.importorskip("datasets")
    counts = split_dataset(dataset, tmp_path / "split", validation=0.2, test=0.2, seed=1)
    total = sum(pq.read_metadata(p).num_rows for p in (dataset / "data").glob("*.parquet"))
    assert sum(counts.values()) == total and counts["train"] > counts["test"] > 0
    # a cache of its own: the shared one may hold an earlier run's folder of this name
    loaded = datasets.load_dataset(str(tmp_path / "split"), cache_dir=str(tmp_path / "hf-cache"))
    assert {name: len(part) for name, part in loaded.items()} == {k: v for k, v in counts.items() if v}
    ids = [i for part in loaded.values() for i in part["example_id"]]
    assert len(ids) == len(set(ids)) == total
    info = json.loads((tmp_path / "split" / "dataset_info.json").read_text())
    assert info["split_from"]["rows"] == counts


def test_held_out_combinations_never_reach_training(dataset, tmp_path):
    split_dataset(dataset, tmp_path / "split", validation=0.1, test=0.1, hold_out_combinations=0.5, seed=3)
    held = set(
        json.loads((tmp_path / "split" / "dataset_info.json").read_text())["split_from"][
            "held_out_combinations"
        ]
    )
    assert held
    for name in ("train", "validation"):
        path = tmp_path / "split" / "data" / f"{name}-00000.parquet"
        if path.exists():
            for row in pq.read_table(path, columns=["metadata"]).to_pylist():
                assert combination(row) not in held


@pytest.mark.parametrize(
    "options, message",
    [
        ({"test": 0.7, "validation": 0.5}, "together below 1"),
        ({"hold_out_combinations": 1.5}, r"in \[0, 1\)"),
    ],
)
def test_bad_options_are_one_line(dataset, tmp_path, options, message):
    with pytest.raises(UserError, match=message):
        split_dataset(dataset, tmp_path / "x", **options)
    assert main(["split", str(tmp_path / "nothing"), "--to", str(tmp_path / "y")]) == 2


def test_a_split_folder_is_read_by_the_other_commands(dataset, tmp_path):
    from weightzoo.output.render import render
    from weightzoo.research.evaluate import evaluate, read_dataset
    from weightzoo.research.inspect_report import report_html

    counts = split_dataset(dataset, tmp_path / "split", validation=0.2, test=0.3, seed=2)
    _, test_rows = read_dataset(tmp_path / "split", split="test")
    assert len(test_rows) == counts["test"] > 0
    oracle = tmp_path / "oracle.jsonl"
    oracle.write_text(
        "".join(
            json.dumps({"example_id": i, "completion": r["classification_completion"]}) + "\n"
            for i, r in test_rows.items()
        )
    )
    report = evaluate(tmp_path / "split", oracle, "classification", split="test")
    assert report["examples"] == counts["test"] and report["completions"]["exact_match"] == 1.0
    assert report_html(tmp_path / "split").count("<img ") == 6
    render(tmp_path / "split", tmp_path / "grid", {"numbers": "grid"}, log=lambda _: None)
    assert sorted(p.name for p in (tmp_path / "grid" / "data").iterdir()) == sorted(
        f"{name}-00000.parquet" for name, n in counts.items() if n
    )
    with pytest.raises(UserError, match="no validation2 split"):
        read_dataset(tmp_path / "split", split="validation2")
