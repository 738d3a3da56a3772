"""A stack's rows as tensors: each model's rows padded to one count (`jobs.pad_rows`), inputs encoded
(and standardized, when the job asks), and the held-out selection rows `stage2_watch: target` scores
on, with their groups one-hot so one product gives every group's accuracy."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from weightzoo.engine.jobs import TrainingJob, pad_rows
from weightzoo.engine.model import ModelSpec, encode_inputs, input_standardization
from weightzoo.engine.schedule import StageRules


def stacked_rows(xs, ys1, ys2, least: int, *, spec: ModelSpec, standardize: bool, device, dtype):
    """(inputs [K, rows, in], stage-1 labels [K, rows], stage-2 labels [K, rows], real rows per model)."""
    x, n = pad_rows([np.asarray(a, dtype=np.int64) for a in xs], least)
    y1, _ = pad_rows([np.asarray(a, dtype=np.float64) for a in ys1], least)
    y2, _ = pad_rows([np.asarray(a, dtype=np.float64) for a in ys2], least)
    to = dict(device=device, dtype=dtype)
    inputs = encode_inputs(x, spec, torch.float64)
    if standardize:
        shift, scale = input_standardization(spec)
        inputs = (inputs - torch.as_tensor(shift)) / torch.as_tensor(scale)
    return (
        inputs.to(**to),
        torch.as_tensor(y1, **to),
        torch.as_tensor(y2, **to),
        n,
    )


@dataclass
class SelectionRows:
    x: torch.Tensor  # [K, rows, in]
    y: torch.Tensor  # [K, rows]
    groups: torch.Tensor  # [K, rows, groups], one-hot; padded rows belong to no group
    target_one_hot: np.ndarray  # [K, groups]
    allowed_drop: np.ndarray  # [K, groups]: how much each group may lose before the watch penalizes it


def selection_rows(jobs: list[TrainingJob], rules: StageRules, least: int, data) -> SelectionRows:
    """The selection rows of every job (`data`: `stacked_rows` bound to the stack's spec and device)."""
    x_se, y_se, _, n_se = data(
        [j.x_select for j in jobs],
        [j.y_select for j in jobs],
        [j.y_select for j in jobs],
        least,
    )
    groups, _ = pad_rows([np.asarray(j.select_groups, dtype=np.int64) for j in jobs], least)
    present = np.arange(groups.shape[1])[None, :] < n_se[:, None]
    n_groups = int(groups.max()) + 1
    one_hot = np.eye(n_groups)[groups] * present[:, :, None]  # padded rows belong to no group
    select_groups = torch.as_tensor(one_hot, dtype=y_se.dtype, device=y_se.device)  # [K, rows, groups]
    target_one_hot = np.eye(n_groups, dtype=bool)[[j.target_group for j in jobs]]
    allowed_drop = np.full(target_one_hot.shape, rules.stage2_max_other_drop, dtype=float)
    for k, job in enumerate(jobs):
        if job.select_allowed_drop is not None:
            allowed_drop[k, : len(job.select_allowed_drop)] = job.select_allowed_drop
    return SelectionRows(x_se, y_se, select_groups, target_one_hot, allowed_drop)
