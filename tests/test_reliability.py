"""The reliability suite: fuzzed configs and files, damaged folders, and a run killed at random moments.

Every case ends in exit 0 or in one clear error (exit 2, "error: ..."), never a traceback or a hang;
a killed run always resumes to the bytes of an uninterrupted one. The long cases are marked slow
(`make test-slow`, which CI runs too).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import time

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_pipeline import (
    COHORT,
    MANY_COHORTS,
    SEED_CONFIG,
    assert_all_gone,
    data_gen_command,
    descendants,
    shard_bytes,
    tiny_config,
    wait_for_a_shard,
)

from weightzoo.cli import main
from weightzoo.errors import UserError
from weightzoo.output.cohorts import check_files, check_manifest
from weightzoo.output.shards import RunIdentity
from weightzoo.run.pipeline import run_data_gen


def fuzz(cases: int) -> settings:
    return settings(
        max_examples=cases,
        deadline=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
        ],
    )


def exits_cleanly(capsys, argv: list[str]) -> int:
    """Run the command in this process: it returns 0, or 2 with one 'error:' message and no traceback
    (an exception escaping `main` fails the test)."""
    capsys.readouterr()
    code = main(argv)
    captured = capsys.readouterr()
    assert code in (0, 2), (code, captured.err[-2000:])
    assert "Traceback" not in captured.out + captured.err
    if code == 2:
        errors = captured.err[captured.err.find("error: ") :]
        said = [line for line in errors.splitlines() if line.startswith("error: ")]
        assert errors.startswith("error: ") and len(said) == 1, captured.err[-2000:]
        assert len(errors) < 20_000  # values are quoted cut short
    return code


# --- configs --------------------------------------------------------------------------------------------

SEED = yaml.safe_load(SEED_CONFIG.read_text())


def key_paths(node, prefix=()) -> list[tuple]:
    paths = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            paths += key_paths(value, (*prefix, key))
    return paths


PATHS = key_paths(SEED)


def nested(depth: int):
    value = 1
    for _ in range(depth):
        value = [value]
    return value


NASTY = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.sampled_from([0, -1, 1, 2**31, 2**63, 2**64, 10**30, 10**200]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e30, -1e-300, 0.5, 1.0000001, 5e-324]),
    st.text(max_size=30),
    st.sampled_from(["", " ", "~", "~nouser/x", "a" * 300, "x" * 5000, "../" * 50, "/dev/null", "\x00", "é"]),
    st.lists(st.integers(-3, 3) | st.text(max_size=5), max_size=5),
    st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=5), max_size=4),
    st.sampled_from(["relu", "gelu", "tanh", "palindrome", "all_same", "mean", "pca"]),
    st.integers(1, 80).map(nested),
)


@st.composite
def fuzzed_config(draw) -> dict:
    """The seed's config with one to four keys set to awkward values (or a key that does not exist)."""
    import copy

    data = copy.deepcopy(SEED)
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(PATHS))
        if draw(st.booleans()) and len(path) > 1:
            path = (*path[:-1], draw(st.text(min_size=1, max_size=12)))  # a key of its own
        node = data
        for key in path[:-1]:
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
        node[path[-1]] = draw(NASTY)
    return data


YAML_TRICKS = [
    "model:\n  activation_types: !!set {relu, gelu}\n",
    "pipeline:\n  random_seed: !!python/object/apply:os.getcwd []\n",
    "pipeline:\n  output_dir: !!binary aGVsbG8=\n",
    "pipeline:\n  random_seed: 2026-12-01\n",
    "pipeline:\n  random_seed: " + "9" * 4301 + "\n",
    "model: " + "[" * 600 + "]" * 600 + "\n",
    "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
    "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
    "e: [*d, *d, *d, *d, *d, *d, *d, *d, *d]\n",
    "model: &m\n  x: *m\n",
    "model:\n  vocab_size: 7\n  vocab_size: 8\n",
    "\ufeffmodel: {}\n",
    "model: {vocab_size: 7\n",
    "- a\n- b\n",
    "",
    "\x00\x01\x02",
    "model:\n\tvocab_size: 7\n",
]


@fuzz(700)
@given(data=fuzzed_config())
def test_fuzzed_configs_exit_0_or_give_one_clear_error(tmp_path_factory, capsys, data):
    folder = tmp_path_factory.mktemp("config")
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    argv = [
        "create-sig-dataset",
        "--config-path",
        str(path),
        "--size",
        "12",
        "--filename",
        str(folder / "s.json"),
    ]
    exits_cleanly(capsys, argv)


@pytest.mark.parametrize("text", YAML_TRICKS, ids=[f"trick{i}" for i in range(len(YAML_TRICKS))])
def test_yaml_tricks_give_one_clear_error(tmp_path, capsys, text):
    path = tmp_path / "config.yaml"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    started = time.monotonic()
    code = exits_cleanly(capsys, ["create-sig-dataset", "--config-path", str(path), "--size", "12"])
    assert code == 2 or text.startswith("\ufeff")
    assert time.monotonic() - started < 10


@fuzz(150)
@given(text=st.text(max_size=400))
def test_random_text_as_a_config_exits_0_or_gives_one_clear_error(tmp_path_factory, capsys, text):
    path = tmp_path_factory.mktemp("text") / "config.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    exits_cleanly(capsys, ["create-sig-dataset", "--config-path", str(path), "--size", "5"])


# --- signature files ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def probe_setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("probe")
    cfg = tiny_config(folder)
    return folder, cfg, cfg.signature.dataset_path.read_bytes()


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


@st.composite
def damaged_probe_file(draw, original: bytes) -> bytes:
    how = draw(st.sampled_from(["value", "drop", "example", "truncate", "bytes", "deep", "kind"]))
    doc = json.loads(original)
    if how == "value":
        doc[draw(st.sampled_from(sorted(doc)))] = draw(JSON_VALUES)
    elif how == "drop":
        doc.pop(draw(st.sampled_from(sorted(doc))))
    elif how == "example":
        examples = doc["examples"]
        i = draw(st.integers(0, len(examples) - 1))
        key = draw(st.sampled_from(["sequence", "pattern", "patterns", "extra"]))
        examples[i][key] = draw(
            JSON_VALUES | st.sampled_from(["AAAA", "ZZZZ", "AB", "palindrome", "negative"])
        )
    elif how == "kind":
        doc["kind"] = draw(st.sampled_from(["benchmark", "signature", "other", None, 3]))
    elif how == "deep":
        return b"[" * 100_000 + b"]" * 100_000
    text = json.dumps(doc).encode()
    if how == "truncate":
        return text[: draw(st.integers(0, len(text) - 1))]
    if how == "bytes":
        at = draw(st.integers(0, len(text) - 1))
        return text[:at] + draw(st.binary(min_size=1, max_size=8)) + text[at + 8 :]
    return text


@fuzz(250)
@given(data=st.data())
def test_damaged_signature_files_exit_0_or_give_one_clear_error(probe_setup, capsys, data):
    folder, cfg, original = probe_setup
    damaged = folder / "damaged.json"
    damaged.write_bytes(data.draw(damaged_probe_file(original)))
    raw = yaml.safe_load((folder / "config.yaml").read_text())
    raw["signature"]["dataset_path"] = "damaged.json"
    config = folder / "damaged.yaml"
    config.write_text(yaml.safe_dump(raw))
    bench = folder / "bench.json"
    argv = ["create-benchmark-dataset", "--config-path", str(config), "--samples-per-pattern", "2"]
    exits_cleanly(capsys, [*argv, "--filename", str(bench)])
    from weightzoo.config import load_config
    from weightzoo.run.pipeline import _read_inputs

    try:
        _read_inputs(load_config(config))  # the run's own reading of its inputs
    except UserError as e:
        assert len(str(e)) < 2000


# --- damaged output folders -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def finished_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("finished")
    cfg = tiny_config(folder)
    run_data_gen(cfg, workers=1, log=lambda _: None, cohort_size=COHORT)
    return cfg


def identity_of(cfg) -> RunIdentity:
    from weightzoo import __version__
    from weightzoo.output.cohorts import UNIT_PARTS

    info = json.loads((cfg.pipeline.output_dir / "dataset_info.json").read_text())
    return RunIdentity(
        __version__,
        cfg.recipe_hash,
        info["signature_hash"],
        COHORT,
        COHORT,
        UNIT_PARTS,
        engine=info["engine"],
    )


@fuzz(200)
@given(data=st.data())
def test_damaged_output_files_are_found_or_harmless(finished_folder, tmp_path_factory, data):
    """Any file of a finished dataset, cut or overwritten anywhere: the restart's checks pass (the rows
    are intact) or raise one UserError; never another exception."""
    cfg = finished_folder
    out = tmp_path_factory.mktemp("damaged") / "out"
    shutil.copytree(cfg.pipeline.output_dir, out)
    files = sorted(p for p in out.rglob("*") if p.is_file() and p.suffix in (".parquet", ".json"))
    victim = data.draw(st.sampled_from(files))
    content = victim.read_bytes()
    if data.draw(st.booleans()):
        victim.write_bytes(content[: data.draw(st.integers(0, len(content)))])
    else:
        at = data.draw(st.integers(0, max(len(content) - 1, 0)))
        victim.write_bytes(content[:at] + data.draw(st.binary(min_size=1, max_size=64)) + content[at + 64 :])
    identity = identity_of(cfg)
    try:
        check_manifest(out, identity, lambda _: None)
        check_files(out, identity, lambda _: None)
    except UserError as e:
        assert str(victim.relative_to(out).parts[-1]) in str(e) or "dataset" in str(e), str(e)


@pytest.mark.slow
@fuzz(12)
@given(data=st.data())
def test_a_damaged_folder_repairs_to_the_same_bytes(finished_folder, tmp_path_factory, capsys, data):
    """A shard or the manifest damaged at random: the rerun exits 0 or names the damage, and with
    --repair ends byte-identical to the original."""
    cfg = finished_folder
    folder = tmp_path_factory.mktemp("repair")
    expected = shard_bytes(cfg.pipeline.output_dir)
    twin = tiny_config(folder, pipeline={"checkpoint_interval": COHORT})  # the same recipe, elsewhere
    out = twin.pipeline.output_dir
    shutil.copytree(cfg.pipeline.output_dir, out)
    files = sorted(out.glob("*/cohort-*.parquet")) + [out / "dataset_info.json"]
    victim = data.draw(st.sampled_from(files))
    content = victim.read_bytes()
    victim.write_bytes(content[: data.draw(st.integers(0, len(content) - 1))])
    config = str(folder / "config.yaml")
    exits_cleanly(capsys, ["run-data-gen", "--config-path", config])
    assert exits_cleanly(capsys, ["run-data-gen", "--config-path", config, "--repair"]) == 0
    assert shard_bytes(out) == expected


# --- a run killed at random moments ---------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="the run starts two workers")
def test_a_run_killed_ten_times_at_random_moments_ends_byte_identical(tmp_path, capsys):
    longer = {**MANY_COHORTS, "dataset": {"output_dataset_length": 150}}
    (tmp_path / "reference").mkdir()
    reference = tiny_config(tmp_path / "reference", **longer)
    run_data_gen(reference, workers=1, log=lambda _: None)
    cfg = tiny_config(tmp_path, **longer)
    out = cfg.pipeline.output_dir
    moments = random.Random(13)
    kills = 0
    while kills < 10:
        with data_gen_command(tmp_path) as child:
            if kills % 3 == 0:
                time.sleep(moments.uniform(0.2, 2.5))  # at start-up: reading inputs, the lock, the checks
            else:
                wait_for_a_shard(child, out)  # while cohorts are trained and written
                time.sleep(moments.uniform(0.0, 1.5))
            if child.poll() is not None:
                break  # it finished before this kill
            processes = descendants(child.pid)
            os.kill(child.pid, signal.SIGKILL)  # the main process only: the workers must follow it
            child.wait()
            assert_all_gone(processes)
            kills += 1
    assert kills >= 10, f"the run finished after {kills} kills: give it more work"
    capsys.readouterr()
    assert main(["run-data-gen", "--config-path", str(tmp_path / "config.yaml")]) == 0
    assert shard_bytes(out) == shard_bytes(reference.pipeline.output_dir)
    assert json.loads((out / "dataset_info.json").read_text())["complete"]
    assert not list(out.glob("**/.*.tmp"))
