"""The command line: the seed's commands and flags, paths relative to the config, clear exits."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

from weightzoo.cli import main
from weightzoo.config import load_config
from weightzoo.data.patterns import PATTERNS
from weightzoo.data.space import SequenceSpace

REPO = Path(__file__).resolve().parents[1]
# A verbatim copy of the seed's own config file (test_config checks it matches the original).
REFERENCE = Path(__file__).resolve().parents[1] / "configs/seed_example.yaml"


@pytest.fixture
def config(tmp_path) -> Path:
    """A copy of the seed's reference config in its own folder (paths in it resolve there)."""
    folder = tmp_path / "cfg"
    folder.mkdir()
    target = folder / "config.yaml"
    shutil.copy(REFERENCE, target)
    return target


@pytest.fixture
def elsewhere(tmp_path, monkeypatch) -> Path:
    """Run from a working directory that is not the config's folder."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


def edited(config: Path, name: str, change) -> Path:
    data = yaml.safe_load(config.read_text())
    change(data)
    target = config.parent / name
    target.write_text(yaml.safe_dump(data))
    return target


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def examples(path: Path) -> list[dict]:
    return json.loads(path.read_text())["examples"]


# ---------------------------------------------------------------------------------------------------------
# create-sig-dataset
# ---------------------------------------------------------------------------------------------------------


def test_create_sig_dataset_with_filename(capsys, config, elsewhere):
    code, out, _ = run(
        capsys, "create-sig-dataset", "--config-path", config, "--filename", "sig.json", "--size", "200"
    )
    assert code == 0
    written = elsewhere / "sig.json"  # --filename is a command-line path: relative to the working directory
    rows = examples(written)
    assert len(rows) == 200
    assert len({"".join(e["sequence"]) for e in rows}) == 200
    assert all(len(e["sequence"]) == 7 and set(e["sequence"]) <= set("ABCDEFG") for e in rows)
    assert "200" in out and "sig.json" in out
    assert not (config.parent / "signature_dataset.json").exists()


def test_create_sig_dataset_default_path_is_relative_to_config(capsys, config, elsewhere):
    code, _, _ = run(capsys, "create-sig-dataset", "--config-path", config, "--size", "50")
    assert code == 0
    assert len(examples(config.parent / "signature_dataset.json")) == 50
    assert list(elsewhere.iterdir()) == []


def test_create_sig_dataset_seed(capsys, config, tmp_path):
    docs = {}
    for name, seed in (("a", None), ("b", None), ("c", "43"), ("d", "42")):
        argv = ["create-sig-dataset", "--config-path", config, "--filename", tmp_path / f"{name}.json"]
        assert run(capsys, *argv, *(["--seed", seed] if seed else []))[0] == 0
        docs[name] = json.loads((tmp_path / f"{name}.json").read_text())
    assert docs["a"] == docs["b"]
    assert docs["a"]["seed"] == 42  # pipeline.random_seed of the reference config
    assert docs["d"] == docs["a"]
    assert docs["c"]["seed"] == 43
    assert docs["c"]["content_hash"] != docs["a"]["content_hash"]
    assert docs["c"]["examples"] != docs["a"]["examples"]


@pytest.mark.parametrize("size", ["0", "-3", "abc"])
def test_create_sig_dataset_bad_size(capsys, config, size):
    with pytest.raises(SystemExit) as info:
        main(["create-sig-dataset", "--config-path", str(config), "--size", size])
    assert info.value.code == 2
    assert "--size" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------
# create-benchmark-dataset
# ---------------------------------------------------------------------------------------------------------


def test_create_benchmark_dataset_defaults(capsys, config, elsewhere):
    assert run(capsys, "create-sig-dataset", "--config-path", config, "--size", "200")[0] == 0
    code, out, _ = run(
        capsys, "create-benchmark-dataset", "--config-path", config, "--samples-per-pattern", 5
    )
    assert code == 0
    target = config.parent / "datasets" / "benchmark_dataset.json"
    doc = json.loads(target.read_text())
    counts = Counter(e["pattern"] for e in doc["examples"])
    assert set(counts) == set(PATTERNS) | {"negative"}
    assert 1 <= counts.pop("all_same") <= 4  # 7 members, at least 3 of them in the signature set
    assert set(counts.values()) == {5}
    signature = json.loads((config.parent / "signature_dataset.json").read_text())
    assert doc["signature_hash"] == signature["content_hash"]
    sig_rows = {"".join(e["sequence"]) for e in signature["examples"]}
    assert not sig_rows & {"".join(e["sequence"]) for e in doc["examples"]}
    assert str(target) in out
    assert list(elsewhere.iterdir()) == []


def test_create_benchmark_dataset_named_patterns(capsys, config, tmp_path):
    assert run(capsys, "create-sig-dataset", "--config-path", config)[0] == 0
    target = tmp_path / "bench" / "b.json"
    code, _, _ = run(
        capsys,
        "create-benchmark-dataset",
        "--config-path",
        config,
        "--samples-per-pattern",
        "12",
        "--patterns",
        "palindrome, alternating",
        "--filename",
        target,
    )
    assert code == 0
    doc = json.loads(target.read_text())
    counts = Counter(e["pattern"] for e in doc["examples"])
    assert counts == {"palindrome": 12, "alternating": 12, "negative": 12}
    space = SequenceSpace(7, 7)
    for e in doc["examples"]:
        row = space.from_letters(e["sequence"])
        hits = {n for n in ("palindrome", "alternating") if PATTERNS[n].matches(row, space)[0]}
        if e["pattern"] == "negative":
            assert hits == set()
        else:
            assert e["pattern"] in hits
        assert e["label"] == int(e["pattern"] != "negative")
    assert not (config.parent / "datasets" / "benchmark_dataset.json").exists()


def test_create_benchmark_dataset_reports_shortfall(capsys, config, tmp_path):
    assert run(capsys, "create-sig-dataset", "--config-path", config)[0] == 0
    code, out, _ = run(
        capsys,
        "create-benchmark-dataset",
        "--config-path",
        config,
        "--samples-per-pattern",
        "10",
        "--patterns",
        "all_same",
        "--filename",
        tmp_path / "b.json",
    )
    assert code == 0
    got = sum(e["pattern"] == "all_same" for e in examples(tmp_path / "b.json"))
    assert got <= 4  # 7 members, at least 3 of them in the signature set
    assert f"all_same has {10 - got} fewer" in out


def test_create_benchmark_dataset_without_signature(capsys, config):
    code, _, err = run(
        capsys, "create-benchmark-dataset", "--config-path", config, "--samples-per-pattern", 5
    )
    assert code == 2
    assert str(config.parent / "signature_dataset.json") in err
    assert "does not exist" in err
    assert not (config.parent / "datasets").exists()


def test_create_benchmark_dataset_unknown_pattern(capsys, config):
    with pytest.raises(SystemExit) as info:
        main(
            [
                "create-benchmark-dataset",
                "--config-path",
                str(config),
                "--samples-per-pattern",
                "5",
                "--patterns",
                "palindrome,alternatin",
            ]
        )
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "alternatin" in err
    assert "did you mean 'alternating'" in err
    assert "Traceback" not in err


def test_signature_of_another_vocab_is_refused(capsys, config, tmp_path):
    def vocab5(data):
        data["model"]["vocab_size"] = 5
        data["dataset"]["patterns"]["enabled_patterns"].remove("no_repeats")  # no members at 5/7

    small = edited(config, "vocab5.yaml", vocab5)
    sig = tmp_path / "sig5.json"
    assert run(capsys, "create-sig-dataset", "--config-path", small, "--filename", sig, "--size", 60)[0] == 0

    def use_sig(data):
        data["signature"]["dataset_path"] = str(sig)

    seven = edited(config, "vocab7.yaml", use_sig)
    code, _, err = run(capsys, "create-benchmark-dataset", "--config-path", seven, "--samples-per-pattern", 3)
    assert code == 2
    assert str(sig) in err
    assert "vocab_size 5" in err and "vocab_size 7" in err


# ---------------------------------------------------------------------------------------------------------
# run-data-gen
# ---------------------------------------------------------------------------------------------------------


def test_run_data_gen_without_a_signature_file_names_it(capsys, config):
    code, _, err = run(capsys, "run-data-gen", "--config-path", config)
    assert code == 2
    assert "signature_dataset.json does not exist" in err and "Traceback" not in err


def test_run_data_gen_invalid_config(capsys, config):
    def bad(data):
        data["model"]["vocab_size"] = 40
        data["training"]["batch_sise"] = 3

    code, _, err = run(capsys, "run-data-gen", "--config-path", edited(config, "bad.yaml", bad))
    assert code == 2
    assert "model.vocab_size" in err
    assert "training.batch_sise" in err


def test_run_data_gen_missing_config(capsys, tmp_path):
    missing = tmp_path / "nope.yaml"
    code, _, err = run(capsys, "run-data-gen", "--config-path", missing)
    assert code == 2
    assert str(missing) in err


# ---------------------------------------------------------------------------------------------------------
# the repository-root wrapper, and the bundled config
# ---------------------------------------------------------------------------------------------------------


def wrapper(*argv) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return subprocess.run(
        [sys.executable, "cli.py", *map(str, argv)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_root_wrapper_creates_signature(config, tmp_path):
    target = tmp_path / "sig.json"
    done = wrapper("create-sig-dataset", "--config-path", config, "--filename", target, "--size", "40")
    assert done.returncode == 0, done.stderr
    assert len(examples(target)) == 40


def test_root_wrapper_user_error_has_no_traceback(tmp_path):
    missing = tmp_path / "missing.yaml"
    done = wrapper("run-data-gen", "--config-path", missing)
    assert done.returncode == 2
    assert str(missing) in done.stderr
    assert "Traceback" not in done.stdout + done.stderr


def test_bundled_small_config():
    cfg = load_config(REPO / "configs/small.yaml")
    out = (REPO / "out").resolve()
    for path in (cfg.signature.dataset_path, cfg.pipeline.output_dir, cfg.metrics.dir):
        assert path.is_absolute()
        assert path.is_relative_to(out), path
    assert cfg.space == SequenceSpace(6, 6)
    assert all(PATTERNS[n].count(cfg.space) > 0 for n in cfg.dataset.patterns.enabled_patterns)


def test_bundled_recommended_config_has_the_seeds_shape():
    """15 patterns, 2-5 per model, vocabulary 7, length 7, relu and gelu MLPs, token-index inputs."""
    cfg = load_config(REPO / "configs/recommended.yaml")
    assert cfg.dataset.patterns.enabled_patterns == list(PATTERNS)
    assert (cfg.dataset.patterns.min_patterns_per_batch, cfg.dataset.patterns.max_patterns_per_batch) == (
        2,
        5,
    )
    assert cfg.space == SequenceSpace(7, 7)
    assert cfg.model.activation_types == ["relu", "gelu"] and cfg.model.input_encoding == "index"
    assert cfg.validation.min_pattern_accuracy >= 0.85 and cfg.validation.min_negative_accuracy >= 0.85
    assert (REPO / "out").resolve() in cfg.pipeline.output_dir.parents
