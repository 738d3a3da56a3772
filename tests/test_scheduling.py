"""The schedule alone, without training: parts in index order, a cut unit's rest held back until its
prefix is counted and falls short, and nothing handed out once the run has what it needs."""

from __future__ import annotations

import pytest
from test_pipeline import tiny_config

from weightzoo.run import scheduling
from weightzoo.run.scheduling import Schedule


@pytest.fixture
def cfg(tmp_path):
    return tiny_config(tmp_path)


def _take(schedule: Schedule, n: int) -> list:
    tasks = []
    while len(tasks) < n and (task := schedule.next_task()) is not None:
        tasks.append(task)
    return tasks


def test_parts_come_in_index_order_and_cover_every_unit(cfg, tmp_path):
    schedule = Schedule(cfg, tmp_path / "out", cohort_size=8, unit_size=4, target=10**6, parts=2)
    tasks = _take(schedule, 8)  # two cohorts of two units of two parts
    assert [(t.cohort, t.piece, t.part) for t in tasks] == [
        (c, (s, s + 4), p) for c in range(2) for s in (8 * c, 8 * c + 4) for p in range(2)
    ]
    for unit in (tasks[k : k + 2] for k in range(0, 8, 2)):
        assert sorted(unit[0].indices + unit[1].indices) == list(range(*unit[0].piece))
        assert [t.piece_done for t in unit] == [False, True]
    assert [t.last for t in tasks] == [False, False, False, True] * 2
    assert all(t.report is None for t in tasks)  # nothing staged: all work


def test_a_cut_unit_waits_for_its_prefix_and_is_dropped_once_the_run_has_enough(cfg, tmp_path, monkeypatch):
    monkeypatch.setattr(scheduling, "SPLIT_AFTER", 1)
    monkeypatch.setattr(scheduling, "SPLIT_SLACK", 0)
    monkeypatch.setattr(scheduling, "SPLIT_LEAST_REST", 1)
    schedule = Schedule(cfg, tmp_path / "out", cohort_size=100, unit_size=100, target=60, parts=1)
    schedule.count(accepted=50, attempted=100, through=0)  # half accepted: 20 more need ~40 indices
    first = schedule.next_task()
    assert first.piece[0] == 0 and first.piece[1] < 100  # the unit is cut to a prefix
    assert schedule.next_task() is None  # the rest waits for the prefix to be counted
    assert schedule.next_task() is None  # and keeps waiting: asking changes nothing
    schedule.count(accepted=55, attempted=first.piece[1], through=first.piece[1])  # short of 60
    rest = schedule.next_task()
    assert rest.piece == (first.piece[1], 100) and rest.last

    enough = Schedule(cfg, tmp_path / "out", cohort_size=100, unit_size=100, target=60, parts=1)
    enough.count(accepted=50, attempted=100, through=0)
    prefix = enough.next_task()
    enough.count(accepted=60, attempted=prefix.piece[1], through=prefix.piece[1])  # the target is met
    assert enough.next_task() is None


def test_without_history_no_unit_is_cut(cfg, tmp_path):
    schedule = Schedule(cfg, tmp_path / "out", cohort_size=50, unit_size=50, target=1, parts=1)
    assert schedule.next_task().piece == (0, 50)
