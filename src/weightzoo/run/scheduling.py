"""Scheduling: which parts of which work units run, in what order, and where a unit is cut.

A `Schedule` hands the run its parts in index order (`next_task`), and the run tells it what it has
counted (`count`). A part already staged, or whose cohort is written, comes with its report (no work);
the others are trained by an executor. When the run will likely reach its target inside a unit, the
unit is cut in two pieces (`piece_end`): the rest is handed out only once the first is counted and
fell short; until then `next_task` has nothing to give. None of this changes a byte: an example trains
to the same bits in any piece or part. The schedule knows nothing of training or of executors.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from weightzoo.config import Config
from weightzoo.output.cohorts import (
    UNIT_PARTS,
    CohortReport,
    done_report,
    staged,
    staged_pieces,
    unit_bounds,
)
from weightzoo.plan.jobs import CURVE_SAMPLE


def unit_parts(cfg: Config, indices: range, parts: int = UNIT_PARTS) -> list[list[int]]:
    """A unit's examples in `parts` groups of whole stacks (the models that train together,
    `cohort.stack_key`), the largest stacks first, each to the part with the least work so far.

    An example's training does not depend on which examples share its stack (`cohort.Padding`), so
    every byte of every example is the same for any number of parts. Parts let the workers share each
    unit: the run needs whole units, and without parts the last one would be trained by one worker
    while the other waits or works beyond the end. Measured on the seed's config (500 accepted, 2
    workers, runs alternated): one part 10.6 and 11.9 accepted examples/s, two parts 12.8 and 14.0."""
    from weightzoo.engine import stack_key
    from weightzoo.plan.examples import example_spec

    stacks: dict[tuple, list] = {}
    for index in indices:
        spec = example_spec(cfg, index)
        stacks.setdefault(stack_key(spec), []).append((index, spec))

    def work(members) -> int:  # multiply-adds per row of the stack, padded to its widest model
        width = max(spec.neurons_per_layer for _, spec in members)
        spec = members[0][1]
        return len(members) * width * (spec.input_size + (spec.num_layers - 1) * width + 1)

    loads, groups = [0] * parts, [[] for _ in range(parts)]
    for key in sorted(stacks, key=lambda k: (-work(stacks[k]), str(k))):
        part = min(range(parts), key=lambda q: (loads[q], q))
        loads[part] += work(stacks[key])
        groups[part] += [index for index, _ in stacks[key]]
    return [sorted(group) for group in groups]


SPLIT_AFTER = 200  # examples counted before the run predicts where it will end
SPLIT_MARGIN = 1.3  # a predicted prefix is this much longer than the examples it likely needs,
SPLIT_SLACK = 16  # ... and this many more
SPLIT_LEAST_REST = 32  # a unit is not cut to leave fewer than this many for later


@dataclass
class Tally:
    """What the run has counted, in index order: every index below `through` is counted."""

    accepted: int = 0
    attempted: int = 0
    through: int = 0


def piece_end(start: int, end: int, tally: Tally, target: int) -> int:
    """Where the first piece of the unit start … end-1 ends: the unit's end, or, when the run will
    likely reach its target inside the unit, the end of a prefix holding the examples it likely needs
    (with a margin). The rest of the unit is then trained only if the prefix falls short, rather than
    always (a run trains whole pieces). An example trains to the same bits in any piece (`cohort.Padding`),
    so where a unit is cut changes no byte; it depends on how far the run has counted when the unit
    comes up, i.e. on timing, and a resumed run adopts the cuts it finds staged."""
    if tally.attempted < SPLIT_AFTER or tally.accepted == 0:
        return end
    rate = tally.accepted / tally.attempted
    needed = target - tally.accepted - rate * (start - tally.through)  # beyond those still in flight
    if needed <= 0:
        return end
    cut = start + math.ceil(needed / rate * SPLIT_MARGIN) + SPLIT_SLACK
    return cut if cut <= end - SPLIT_LEAST_REST else end


@dataclass
class Task:
    """One part of a piece of a work unit, in run order; `report` is set when it needs no work (staged,
    or its cohort written)."""

    cohort: int
    piece: tuple[int, int] | None  # start, end; None: the whole cohort, already written
    part: int
    indices: list[int]
    watched: list[int]  # the examples whose curves are recorded
    piece_done: bool  # the piece's last part
    last: bool  # the cohort's last part
    report: CohortReport | None


class Schedule:
    """The parts to train, in index order, for a run that wants `target` accepted examples."""

    def __init__(self, cfg: Config, out: Path, cohort_size: int, unit_size: int, target: int, parts: int):
        self.cfg, self.out, self.target, self.parts = cfg, out, target, parts
        self.cohort_size, self.unit_size = cohort_size, unit_size
        self.tally = Tally()
        self._ready: deque[Task] = deque()  # planned, not yet handed out
        self._next_cohort = 0
        self._units: deque[range] = deque()  # the current cohort's units not yet fully planned
        self._start = 0  # where the next piece of `_units[0]` starts

    def count(self, accepted: int, attempted: int, through: int) -> None:
        """The run has counted every index below `through`: `accepted` of `attempted` in all."""
        self.tally = Tally(accepted, attempted, through)

    def next_task(self) -> Task | None:
        """The next part in index order, or None while the next ones wait for the run to count further
        (the rest of a cut unit, wanted only if its first piece falls short)."""
        while not self._ready:
            if not self._plan():
                return None
        return self._ready.popleft()

    def _plan(self) -> bool:
        """Plan the next piece (or written cohort); False when it must wait for the tally."""
        if not self._units:
            self._begin_cohort(self._next_cohort)
            self._next_cohort += 1
            return True
        unit = self._units[0]
        start = self._start
        if start > unit.start and (self.tally.through < start or self.tally.accepted >= self.target):
            return False  # the rest of a cut unit: only once its prefix is counted, and fell short
        end = self._staged_ends.get(start) or (
            piece_end(start, unit.stop, self.tally, self.target) if start == unit.start else unit.stop
        )
        piece = (start, min(end, unit.stop))
        last_piece = piece[1] == self._cohort_end
        for part, members in enumerate(unit_parts(self.cfg, range(*piece), self.parts)):
            done = part == self.parts - 1
            watched = [i for i in self._watched if i in members]
            report = staged(self.out, self._cohort, piece, part)
            self._ready.append(
                Task(self._cohort, piece, part, members, watched, done, done and last_piece, report)
            )
        if piece[1] < unit.stop:
            self._start = piece[1]
        else:
            self._units.popleft()
            self._start = self._units[0].start if self._units else 0
        return True

    def _begin_cohort(self, cohort: int) -> None:
        done = done_report(self.out, cohort)
        if done is not None:
            self._ready.append(Task(cohort, None, 0, [], [], True, True, done))
            return
        bounds = unit_bounds(cohort, self.cohort_size, self.unit_size)
        self._cohort, self._cohort_end = cohort, bounds[-1].stop
        self._units, self._start = deque(bounds), bounds[0].start
        self._watched = list(bounds[0][:CURVE_SAMPLE])  # a cohort's first examples: curves and checkpoints
        self._staged_ends = staged_pieces(self.out, cohort)
