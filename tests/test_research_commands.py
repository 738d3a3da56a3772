"""Every researcher command gives one clear line, and exit status 2, for bad input: no traceback."""

from __future__ import annotations

import pytest

from weightzoo.cli import main


def _commands(folder, tmp_path):
    completions = tmp_path / "c.jsonl"
    completions.write_text('{"example_id": 0, "completion": "palindrome"}\n')
    return {
        "render": ["render", str(folder), "--to", str(tmp_path / "new"), "--numbers", "grid"],
        "evaluate": ["evaluate", str(folder), "--completions", str(completions), "--task", "classification"],
        "harness-task": ["harness-task", str(folder), "--to", str(tmp_path / "task")],
        "inspect": ["inspect", str(folder), "--to", str(tmp_path / "page.html")],
        "split": ["split", str(folder), "--to", str(tmp_path / "split")],
    }


def _folder(kind: str, tmp_path):
    if kind == "missing":
        return tmp_path / "no-such-folder"
    if kind == "a file":
        path = tmp_path / "file.txt"
        path.write_text("not a dataset")
        return path
    if kind == "empty":
        (tmp_path / "empty").mkdir()
        return tmp_path / "empty"
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "dataset_info.json").write_text("{not json")
    return tmp_path / "broken"


@pytest.mark.parametrize("kind", ["missing", "a file", "empty", "a broken manifest"])
@pytest.mark.parametrize("command", ["render", "evaluate", "harness-task", "inspect", "split"])
def test_a_bad_folder_is_one_line(command, kind, tmp_path, capsys):
    argv = _commands(_folder(kind, tmp_path), tmp_path)[command]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
