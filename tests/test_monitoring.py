"""Progress lines and bar, TensorBoard summaries read back from the event files, a TensorBoard server."""

from __future__ import annotations

import io
import math
import pickle
import socket
from types import SimpleNamespace

import pytest

from weightzoo.errors import UserError
from weightzoo.run.monitoring import (
    Monitor,
    Progress,
    TensorBoardError,
    cohort_summary,
    launch_tensorboard,
    merge_summaries,
    stop,
    wait_ready,
)


def _example(index, accepted, reason=None, target_gain=0.2, overall_gain=0.1, epochs=3):
    history = {
        "stage1_val_loss": [1.0 - 0.1 * k for k in range(epochs)],
        "stage2_val_loss": [0.5 - 0.1 * k for k in range(epochs - 1)],
        "train_loss": [0.9 - 0.1 * k for k in range(2 * epochs - 1)],
    }
    return SimpleNamespace(
        plan=SimpleNamespace(index=index, target="palindrome"),
        result=SimpleNamespace(history=history),
        verdict=SimpleNamespace(
            accepted=accepted, reason=reason, target_gain=target_gain, overall_gain=overall_gain
        ),
    )


def _cohort(first=512):
    return [
        _example(first, True),
        _example(first + 1, False, "target_not_improved", target_gain=0.0, overall_gain=0.05),
        _example(first + 2, True, target_gain=0.4, overall_gain=0.2),
        _example(first + 3, False, "non_finite", target_gain=math.nan, overall_gain=math.nan),
        _example(first + 4, False, "target_not_improved", target_gain=-0.1, overall_gain=0.0),
    ]


# ---------------------------------------------------------------------------------------------------------
# Progress
# ---------------------------------------------------------------------------------------------------------


def test_progress_writes_plain_lines_off_a_terminal():
    out = io.StringIO()
    progress = Progress(100, stream=out)
    progress.update(10, 40, 5.0)
    progress.update(130, 400, 20.0)  # past the target: shown as the target
    progress.close()
    text = out.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) == 2
    assert "10/100 accepted" in lines[0] and "40 attempted" in lines[0] and "25.0% accepted" in lines[0]
    assert "2.00 accepted/s" in lines[0] and "ETA 45s" in lines[0]
    assert "100/100 accepted" in lines[1] and "ETA 0s" in lines[1]


def test_progress_before_anything_is_accepted_has_no_eta():
    out = io.StringIO()
    Progress(10, stream=out).update(0, 0, 0.0)
    assert "0/10 accepted" in out.getvalue() and "ETA ?" in out.getvalue()


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_draws_a_bar_on_a_terminal():
    out = _Terminal()
    with Progress(100, stream=out) as progress:
        progress.update(10, 40, 5.0)
    text = out.getvalue()
    assert "\r" in text and "10/100 accepted" in text
    assert "40 attempted" in text and "25.0% accepted" in text and "2.00 ex/s" in text and "ETA 45s" in text


# ---------------------------------------------------------------------------------------------------------
# cohort_summary and Monitor
# ---------------------------------------------------------------------------------------------------------


def test_cohort_summary_is_plain_and_picklable():
    summary = cohort_summary(_cohort(), 10.0)
    assert pickle.loads(pickle.dumps(summary)) == summary
    assert summary["attempted"] == 5 and summary["accepted"] == 2 and summary["seconds"] == 10.0
    assert summary["rejected"]["target_not_improved"] == 2 and summary["rejected"]["non_finite"] == 1
    assert summary["rejected"]["negatives_degraded"] == 0
    assert summary["target_gains"] == [0.2, 0.0, 0.4, -0.1]  # the NaN one left out
    assert summary["accepted_overall_gains"] == [0.1, 0.2]
    assert [c["index"] for c in summary["curves"]] == [512, 513]
    assert summary["curves"][0]["train_loss"] == pytest.approx([0.9, 0.8, 0.7, 0.6, 0.5])


def _read(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    return acc


def test_monitor_writes_scalars_histograms_and_curves(tmp_path):
    pytest.importorskip("tensorboard")
    log_dir = tmp_path / "runs"
    with Monitor(log_dir, enabled=True) as monitor:
        monitor.cohort(2, cohort_summary(_cohort(), 10.0))
        monitor.cohort(3, cohort_summary(_cohort(768)[:2], 4.0))
        monitor.totals(3, 3, 7, 14.0)
    acc = _read(log_dir)
    tags = acc.Tags()

    def values(tag):
        return [(e.step, e.value) for e in acc.Scalars(tag)]

    assert values("cohort/acceptance_rate") == [(2, pytest.approx(0.4)), (3, pytest.approx(0.5))]
    assert values("cohort/accepted") == [(2, 2), (3, 1)]
    assert values("cohort/attempted") == [(2, 5), (3, 2)]
    assert values("cohort/accepted_per_s") == [(2, pytest.approx(0.2)), (3, pytest.approx(0.25))]
    assert values("cohort/trained_per_s") == [(2, pytest.approx(0.5)), (3, pytest.approx(0.5))]
    assert values("rejected/target_not_improved") == [(2, 2), (3, 1)]
    assert values("rejected/non_finite") == [(2, 1), (3, 0)]
    assert values("run/acceptance_rate") == [(3, pytest.approx(3 / 7))]
    assert {"gains/target", "gains/overall", "gains/accepted_target"} <= set(tags["histograms"])
    assert [e.histogram_value.num for e in acc.Histograms("gains/target")] == [4, 2]
    curve = values("curves/example_512/stage1_val_loss")
    assert curve == [(1, pytest.approx(1.0)), (2, pytest.approx(0.9)), (3, pytest.approx(0.8))]
    assert len(values("curves/example_513/train_loss")) == 5
    assert len(values("curves/example_769/stage2_val_loss")) == 2
    assert "curves/example_514/train_loss" not in tags["scalars"]  # only the first two per cohort
    assert "curves/example_512/batch_loss" not in tags["scalars"]  # not recorded: not logged


def test_monitor_logs_batch_losses_per_step_when_recorded(tmp_path):
    pytest.importorskip("tensorboard")
    cohort = _cohort()
    cohort[0].result.history["batch_loss"] = [0.7, 0.6, 0.65, 0.5, 0.45, 0.4, 0.41]
    with Monitor(tmp_path / "runs", enabled=True) as monitor:
        monitor.cohort(0, cohort_summary(cohort, 1.0))
    acc = _read(tmp_path / "runs")
    steps = [(e.step, e.value) for e in acc.Scalars("curves/example_512/batch_loss")]
    assert steps == [(i + 1, pytest.approx(v)) for i, v in enumerate([0.7, 0.6, 0.65, 0.5, 0.45, 0.4, 0.41])]


def test_a_disabled_monitor_writes_nothing(tmp_path):
    log_dir = tmp_path / "runs"
    monitor = Monitor(log_dir, enabled=False)
    monitor.cohort(0, cohort_summary(_cohort(), 1.0))
    monitor.totals(0, 2, 5, 1.0)
    monitor.close()
    assert not log_dir.exists()


# ---------------------------------------------------------------------------------------------------------
# the TensorBoard server
# ---------------------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_launch_tensorboard_serves_on_loopback_and_stops(tmp_path):
    pytest.importorskip("tensorboard")
    port = _free_port()
    proc = launch_tensorboard(tmp_path / "runs", port)
    try:
        ready = wait_ready(proc, port, timeout=25)
        if not ready and proc.poll() is not None:
            pytest.skip(f"tensorboard could not start: {(tmp_path / 'runs' / 'tensorboard.log').read_text()}")
        assert ready
    finally:
        stop(proc)
    assert proc.poll() is not None


def test_launch_tensorboard_on_a_busy_port_says_so(tmp_path):
    pytest.importorskip("tensorboard")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(TensorBoardError, match=f"port {port}.*in use"):
            launch_tensorboard(tmp_path / "runs", port)
    assert issubclass(TensorBoardError, UserError)


def test_stop_accepts_none():
    stop(None)


def test_a_cohort_summed_from_its_units_equals_the_whole():
    cohort = _cohort()
    whole = cohort_summary(cohort, 10.0)
    parts = [cohort_summary(cohort[:3], 4.0), cohort_summary(cohort[3:], 6.0, curves=False)]
    assert parts[1]["curves"] == []
    assert merge_summaries(parts) == whole
    assert merge_summaries([]) == {**cohort_summary([], 0.0), "seconds": 0.0}
