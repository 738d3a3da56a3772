"""An example's whole path in one function: the same rows whichever indices share the call."""

from __future__ import annotations

from test_pipeline import tiny_config

from weightzoo.data.probe_sets import read_probe_file
from weightzoo.run.stages import run_stages


def test_run_stages_is_a_function_of_each_index_alone(tmp_path):
    cfg = tiny_config(tmp_path)
    probe = read_probe_file(
        cfg.signature.dataset_path, cfg.space, tuple(cfg.dataset.patterns.enabled_patterns)
    )
    together = run_stages(cfg, probe, list(range(8)))
    alone = run_stages(cfg, probe, [5, 6])
    assert list(together.seconds) == ["plan", "train", "validate", "signatures", "format"]
    by_id = {row["example_id"]: row for row in together.rows + together.rejected}
    for row in alone.rows + alone.rejected:
        assert row == by_id[row["example_id"]]
    assert len(together.rows) + len(together.rejected) == 8
