"""`weightzoo evaluate`: an interpreter's completions scored against a dataset, beside baselines."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from weightzoo.cli import main
from weightzoo.errors import UserError
from weightzoo.research.evaluate import (
    FreshData,
    evaluate,
    pattern_set,
    read_completions,
    read_dataset,
    score_repair,
)


@pytest.fixture(scope="module")
def dataset(finished_dataset):
    return finished_dataset


@pytest.fixture(scope="module")
def loaded(dataset):
    cfg, rows = read_dataset(dataset)
    return cfg, rows, FreshData.draw(cfg, 200)


def _write(path, completions: dict) -> None:
    path.write_text(
        "".join(json.dumps({"example_id": i, "completion": c}) + "\n" for i, c in completions.items())
    )


def test_the_oracle_is_a_perfect_repair_and_identity_gains_nothing(dataset, tmp_path):
    _, rows = read_dataset(dataset)
    oracle = {i: row["modification_completion"] for i, row in rows.items()}
    _write(tmp_path / "oracle.jsonl", oracle)
    report = evaluate(dataset, tmp_path / "oracle.jsonl", "modification", fresh_n=200)
    scores, identity = report["completions"], report["baselines"]["identity"]
    assert scores == report["baselines"]["oracle"]  # the completions are the oracle
    assert scores["parsed"] == len(rows) and scores["failures"] == {}
    assert scores["agreement"] == 1.0 and scores["gain_vs_oracle"] == pytest.approx(1.0)
    assert identity["target_gain"] == 0.0 and identity["others_change"] == 0.0
    assert identity["negatives_change"] == 0.0 and identity["success_rate"] == 0.0
    assert all(
        s["gain_vs_oracle"] is None or s["gain_vs_oracle"] == pytest.approx(1.0)
        for s in report["per_example"]
    )


def test_missing_completions_are_scored_failures(dataset, tmp_path):
    _, rows = read_dataset(dataset)
    first = min(rows)
    _write(tmp_path / "one.jsonl", {first: rows[first]["modification_completion"], 10**9: "x"})
    report = evaluate(dataset, tmp_path / "one.jsonl", "modification", fresh_n=100)
    assert report["completions_missing"] == len(rows) - 1 and report["completions_for_no_example"] == 1
    assert report["completions"]["failures"] == {"no completion for this example": len(rows) - 1}
    assert report["completions"]["parsed"] == 1


MUTATIONS = st.sampled_from(["drop_line", "garble", "truncate", "swap_header", "nan", "empty", "duplicate"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutation=MUTATIONS, where=st.floats(0, 1), junk=st.text(max_size=20))
def test_fuzzed_malformed_completions_are_each_a_scored_failure(loaded, mutation, where, junk):
    cfg, rows, fresh = loaded
    row = rows[min(rows)]
    lines = row["modification_completion"].split("\n")
    k = int(where * (len(lines) - 1))
    if mutation == "drop_line":
        lines.pop(k)
    elif mutation == "garble":
        lines[k] = junk + " ]] " + junk
    elif mutation == "truncate":
        lines = lines[:k]
    elif mutation == "swap_header":
        lines[0] = "layer 0 weight [3 x 99]:"
    elif mutation == "nan":
        lines[-1] = "nan " * 3
    elif mutation == "duplicate":
        lines = lines + lines[:k]
    text = "" if mutation == "empty" else "\n".join(lines)
    score = score_repair(row, text, cfg, fresh)  # never raises
    assert isinstance(score["success"], bool)
    if not score["parsed"]:
        assert score["failure"] and not score["success"]


def test_classification_scores_and_baselines(dataset, tmp_path):
    cfg, rows = read_dataset(dataset)
    truth = {i: row["classification_completion"] for i, row in rows.items()}
    _write(tmp_path / "right.jsonl", truth)
    report = evaluate(dataset, tmp_path / "right.jsonl", "classification")
    assert report["completions"]["exact_match"] == 1.0 and report["completions"]["macro_f1"] == 1.0
    assert report["completions"] == report["baselines"]["oracle"]
    majority = report["baselines"]["majority"]
    assert majority["exact_match"] < 1.0 and 0 <= majority["hamming_accuracy"] <= 1
    _write(tmp_path / "wrong.jsonl", dict.fromkeys(truth, "no_such_pattern, Palindrome"))
    wrong = evaluate(dataset, tmp_path / "wrong.jsonl", "classification")["completions"]
    assert wrong["unknown_names"] == len(truth) and wrong["exact_match"] < 1.0


def test_pattern_names_are_read_leniently():
    assert pattern_set(" Palindrome,sorted_ascending ,\nall_same") == {
        "palindrome",
        "sorted_ascending",
        "all_same",
    }
    assert pattern_set("") == frozenset() and pattern_set(None) == frozenset()


def test_the_command_writes_json_and_markdown(dataset, tmp_path, capsys):
    _, rows = read_dataset(dataset)
    path = tmp_path / "c.parquet"
    import pyarrow as pa

    pq.write_table(
        pa.table(
            {"example_id": list(rows), "completion": [r["modification_completion"] for r in rows.values()]}
        ),
        path,
    )
    code = main(
        ["evaluate", str(dataset), "--completions", str(path), "--task", "modification", "--fresh", "100"]
    )
    assert code == 0
    report = json.loads((tmp_path / "c.modification-report.json").read_text())
    assert report["completions"]["agreement"] == 1.0
    markdown = (tmp_path / "c.modification-report.md").read_text()
    assert "| success_rate |" in markdown and "identity" in markdown


@pytest.mark.parametrize(
    "content, message",
    [
        ("not json\n", "line 1: not JSON"),
        ('{"example_id": 1}\n', "needs example_id and completion"),
        ('{"example_id": "a", "completion": ""}\n', "is not an integer"),
        ('{"example_id": 1, "completion": ""}\n{"example_id": 1, "completion": ""}\n', "appears twice"),
    ],
)
def test_bad_completion_files_are_one_line(tmp_path, content, message):
    path = tmp_path / "c.jsonl"
    path.write_text(content)
    with pytest.raises(UserError, match=message):
        read_completions(path)


def test_bad_inputs_exit_2_with_one_line(dataset, tmp_path, capsys):
    assert (
        main(["evaluate", str(tmp_path), "--completions", str(tmp_path / "none"), "--task", "modification"])
        == 2
    )
    (tmp_path / "c.jsonl").write_text("")
    assert (
        main(
            [
                "evaluate",
                str(tmp_path / "nothing"),
                "--completions",
                str(tmp_path / "c.jsonl"),
                "--task",
                "classification",
            ]
        )
        == 2
    )
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and all(e.startswith("error: ") for e in errors)


# --------------------------------------------------------------------------------------------------------
# the lm-evaluation-harness task
# --------------------------------------------------------------------------------------------------------


def _utils(folder):
    import importlib.util

    spec = importlib.util.spec_from_file_location("weightzoo_harness_utils", folder / "utils.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_harness_task_scores_the_oracle_as_perfect(dataset, tmp_path):
    from weightzoo.research.harness import write_task

    written = write_task(dataset, tmp_path / "task", fresh=100)
    assert sorted(p.name for p in written) == ["weightzoo_classification.yaml", "weightzoo_modification.yaml"]
    utils = _utils(tmp_path / "task")
    _, rows = read_dataset(dataset)
    for row in list(rows.values())[:3]:
        classified = utils.process_classification(row, [row["classification_completion"]])
        assert classified == {"exact_match": 1.0, "hamming_accuracy": 1.0}
        repaired = utils.process_modification(row, [row["modification_completion"]])
        assert repaired["parsed"] == 1.0 and repaired["agreement"] == 1.0
        assert utils.process_modification(row, ["no weights here"])["parsed"] == 0.0


def test_lm_eval_loads_the_task(dataset, tmp_path):
    pytest.importorskip("lm_eval")
    from lm_eval.tasks import TaskManager

    from weightzoo.research.harness import write_task

    write_task(dataset, tmp_path / "task", fresh=100)
    manager = TaskManager(include_path=str(tmp_path / "task"))
    tasks = manager.load(["weightzoo_classification", "weightzoo_modification"])["tasks"]
    _, rows = read_dataset(dataset)
    for name, task in tasks.items():
        docs = list(task.test_docs())
        assert len(docs) == len(rows), name
        doc = docs[0]
        assert task.doc_to_text(doc) == doc[f"{name.removeprefix('weightzoo_')}_prompt"]
        scores = task.process_results(doc, [doc[f"{name.removeprefix('weightzoo_')}_completion"]])
        assert scores.get("exact_match", 1.0) == 1.0 and scores.get("agreement", 1.0) == 1.0


def test_repairs_can_be_scored_on_a_benchmark_file(dataset, tmp_path):
    from weightzoo.data.probe_sets import make_benchmark_set, read_probe_file

    cfg, rows = read_dataset(dataset)
    enabled = tuple(cfg.dataset.patterns.enabled_patterns)
    signature = read_probe_file(dataset / "inputs" / "signature_dataset.json", cfg.space, enabled)
    bench, _ = make_benchmark_set(cfg.space, enabled, enabled, 30, 7, signature)
    (tmp_path / "bench.json").write_text(json.dumps(bench))
    _write(tmp_path / "oracle.jsonl", {i: row["modification_completion"] for i, row in rows.items()})
    report = evaluate(dataset, tmp_path / "oracle.jsonl", "modification", benchmark=tmp_path / "bench.json")
    assert report["sequences"] == str(tmp_path / "bench.json")
    assert report["completions"]["agreement"] == 1.0
    assert report["baselines"]["identity"]["target_gain"] == 0.0
