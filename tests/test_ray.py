"""The Ray backend: the same bytes as a local run, on a local Ray and on a two-node cluster with one
node killed mid-run. Skipped where Ray is not installed (`pip install 'weightzoo[ray]'`)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from test_pipeline import COHORT, MANY_COHORTS, shard_bytes, tiny_config

from weightzoo.cli import main
from weightzoo.run.pipeline import run_data_gen

ray = pytest.importorskip("ray")
RAY = str(Path(sys.executable).with_name("ray"))


def test_a_run_on_a_local_ray_writes_the_bytes_of_a_local_run(tmp_path):
    (tmp_path / "local").mkdir()
    (tmp_path / "ray").mkdir()
    local = tiny_config(tmp_path / "local")
    run_data_gen(local, workers=1, log=lambda _: None, cohort_size=COHORT)
    on_ray = tiny_config(tmp_path / "ray", pipeline={"backend": "ray"})
    assert on_ray.recipe_hash == local.recipe_hash  # where it runs is not part of the recipe
    run_data_gen(on_ray, workers=2, log=lambda _: None, cohort_size=COHORT)
    assert shard_bytes(on_ray.pipeline.output_dir) == shard_bytes(local.pipeline.output_dir)
    assert not ray.is_initialized()  # the run shut down the Ray it started


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_node(*args: str, env: dict, cpus: int = 1) -> subprocess.Popen:
    argv = [RAY, "start", "--block", "--disable-usage-stats", "--num-cpus", str(cpus), *args]
    return subprocess.Popen(
        argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )


@pytest.mark.slow
def test_a_two_node_cluster_with_a_node_killed_mid_run_writes_the_same_bytes(tmp_path):
    longer = {
        **MANY_COHORTS,
        "dataset": {"output_dataset_length": 60},
        "pipeline": {"checkpoint_interval": 2},
    }
    (tmp_path / "local").mkdir()
    local = tiny_config(tmp_path / "local", **longer)
    run_data_gen(local, workers=1, log=lambda _: None)
    cfg = tiny_config(tmp_path, **longer)
    port = free_port()
    # Ray's socket paths must stay under the 107 characters Unix allows: a short folder of its own
    ray_tmp = tempfile.mkdtemp(prefix="wzray", dir="/tmp")
    env = {**os.environ, "RAY_TMPDIR": ray_tmp}
    address = f"127.0.0.1:{port}"
    head = ray_node("--head", f"--port={port}", "--include-dashboard=false", env=env)
    worker = None
    try:
        time.sleep(6)
        # The run's driver joins while the head is the only node, so it is attached to the head's
        # raylet (both nodes share this machine's address), as on a real cluster; then a second node
        # joins, takes tasks, and is killed with whatever it was running.
        run = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "weightzoo.cli",
                "run-data-gen",
                "--config-path",
                str(tmp_path / "config.yaml"),
                "--ray-address",
                address,
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        first = cfg.pipeline.output_dir / "data" / "cohort-00000.parquet"
        deadline = time.monotonic() + 240
        while not first.exists() and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert first.exists(), run.stdout.read() if run.poll() is not None else "no shard in 240 s"
        worker = ray_node(f"--address={address}", env=env, cpus=2)
        shards = lambda: len(list((cfg.pipeline.output_dir / "data").glob("cohort-*.parquet")))  # noqa: E731
        joined = shards()
        while shards() < joined + 20 and run.poll() is None:  # the second node is taking tasks by now
            time.sleep(0.1)
        assert run.poll() is None, "the run ended before the second node was killed: give it more work"
        os.killpg(worker.pid, signal.SIGKILL)  # the second node, with whatever tasks it was running
        worker.wait()
        output, _ = run.communicate(timeout=600)
        assert run.returncode == 0, output[-3000:]
    finally:
        for node in (worker, head):
            if node is not None and node.poll() is None:
                os.killpg(node.pid, signal.SIGKILL)
                node.wait()
        subprocess.run([RAY, "stop", "--force"], env=env, capture_output=True)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert shard_bytes(cfg.pipeline.output_dir) == shard_bytes(local.pipeline.output_dir)
    assert not list(cfg.pipeline.output_dir.glob("**/.*.tmp"))


def test_a_cluster_address_nothing_answers_at_is_one_clear_line_at_once(tmp_path, capsys):
    tiny_config(tmp_path)
    started = time.monotonic()
    code = main(
        [
            "run-data-gen",
            "--config-path",
            str(tmp_path / "config.yaml"),
            "--ray-address",
            f"127.0.0.1:{free_port()}",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "no Ray cluster answers at 127.0.0.1:" in err and "Traceback" not in err
    assert time.monotonic() - started < 30


def test_a_run_on_ray_refuses_a_foreign_folder_before_starting_ray(tmp_path):
    cfg = tiny_config(tmp_path, pipeline={"backend": "ray"})
    cfg.pipeline.output_dir.mkdir(parents=True)
    (cfg.pipeline.output_dir / "notes.txt").write_text("mine")
    from weightzoo.errors import UserError

    with pytest.raises(UserError, match="not made by weightzoo"):
        run_data_gen(cfg, workers=2, log=lambda _: None, cohort_size=COHORT)
    assert not ray.is_initialized()
    assert (cfg.pipeline.output_dir / "notes.txt").read_text() == "mine"


@pytest.mark.slow
def test_a_ray_run_killed_mid_run_resumes_on_ray_to_the_bytes_of_a_local_run(tmp_path):
    """The store's resume guarantee on the Ray backend: the driver SIGKILLed (its local Ray with it)
    after the first shard, then run again on Ray."""
    from test_pipeline import run_until_first_shard

    from weightzoo.output.cohorts import cohort_path

    (tmp_path / "local").mkdir()
    (tmp_path / "ray").mkdir()
    local = tiny_config(tmp_path / "local")
    run_data_gen(local, workers=1, log=lambda _: None, cohort_size=COHORT)
    on_ray = tiny_config(tmp_path / "ray", pipeline={"backend": "ray"})
    child = run_until_first_shard(tmp_path / "ray", workers=2)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert cohort_path(on_ray.pipeline.output_dir, "data", 0).exists()
    run_data_gen(on_ray, workers=2, log=lambda _: None, cohort_size=COHORT)
    assert shard_bytes(on_ray.pipeline.output_dir) == shard_bytes(local.pipeline.output_dir)
