"""`weightzoo render`: a dataset's prompts written again from its stored parts, with other options."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
import torch

from weightzoo.cli import main
from weightzoo.engine.model import ModelSpec
from weightzoo.errors import UserError
from weightzoo.output.render import render
from weightzoo.output.rows import TEXT_COLUMNS
from weightzoo.text import parse_weights


@pytest.fixture(scope="module")
def dataset(finished_dataset):
    return finished_dataset


def _rows(out, kind="data") -> list[dict]:
    return [
        row
        for shard in sorted((out / kind).glob("cohort-*.parquet"))
        for row in pq.read_table(shard).to_pylist()
    ]


def test_rendering_with_the_same_options_gives_the_same_texts(dataset, tmp_path):
    render(dataset, tmp_path / "same", {"style": "separate"}, log=lambda _: None)
    assert _rows(tmp_path / "same") == _rows(dataset)


def test_grid_numbers_change_only_the_text_columns(dataset, tmp_path):
    new = render(dataset, tmp_path / "grid", {"numbers": "grid"}, log=lambda _: None)
    before, after = _rows(dataset), _rows(new)
    assert len(before) == len(after) > 0
    for old, row in zip(before, after, strict=True):
        for column in row:
            if column in TEXT_COLUMNS:
                if old[column] is not None:
                    assert row[column] != old[column] or "weight [" not in old[column]
            else:
                assert row[column] == old[column], column  # every other column byte for byte
        stored = json.loads(row["improved_model_weights"])
        spec = ModelSpec.from_config(stored["config"])
        back = parse_weights(row["modification_completion"], spec)
        for name, value in stored["weights"].items():
            value = torch.tensor(value)
            assert (back[name] - value).abs().max() <= value.abs().max() / 499 * 0.5 + 1e-6
    for shard in (dataset / "rejected").glob("*.parquet"):
        assert (new / "rejected" / shard.name).read_bytes() == shard.read_bytes()
    info = json.loads((new / "dataset_info.json").read_text())
    assert info["rendered_from"]["prompt_format_changes"] == {"numbers": "grid"}
    assert info["config"]["signature"]["prompt_format"]["numbers"] == "grid"
    assert (new / "README.md").exists()


def test_grid_and_back_gives_the_original_texts(dataset, tmp_path):
    grid = render(dataset, tmp_path / "grid", {"numbers": "grid", "style": "interwoven"}, log=lambda _: None)
    back = render(grid, tmp_path / "back", {"numbers": "decimal", "style": "separate"}, log=lambda _: None)
    assert _rows(back) == _rows(dataset)


def test_bad_folders_are_one_line_each(dataset, tmp_path, capsys):
    with pytest.raises(UserError, match="not a weightzoo output folder"):
        render(tmp_path, tmp_path / "x", {"numbers": "grid"})
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="--to: .* is not an empty folder"):
        render(dataset, tmp_path / "full", {"numbers": "grid"})
    assert main(["render", str(dataset), "--to", str(tmp_path / "y")]) == 2
    assert main(["render", str(tmp_path / "nothing"), "--to", str(tmp_path / "z"), "--numbers", "grid"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and all(line.startswith("error: ") for line in errors)
