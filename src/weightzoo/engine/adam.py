"""Adam for a stack of models, each with its own learning rate and step count.

The update is PyTorch's fused Adam kernel, run with learning rate 1 on a scratch buffer over the
stepping models' rows (each with its own step count), then scaled by each model's own learning rate:
lr · m̂ / (√v̂ + ε), exactly Adam's step. Models that do not step keep their parameters and moments.
"""

from __future__ import annotations

import numpy as np
import torch

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


class StackAdam:
    """Adam's state for a flat parameter buffer [K, P]: moments `m`, `v` [K, P] and steps `t` [K]."""

    def __init__(self, flat: torch.Tensor):
        self.m = torch.zeros_like(flat)
        self.v = torch.zeros_like(flat)
        self.t = torch.zeros(flat.shape[0], dtype=flat.dtype, device=flat.device)

    def bind(self, flat: torch.Tensor, grad: torch.Tensor) -> None:
        """Per-model views of the buffers, made once per (re)binding rather than every step."""
        self.flat, self.grad = flat, grad
        self.scratch = torch.zeros_like(flat)
        self.rows = [list(t.unbind(0)) for t in (self.scratch, grad, self.m, self.v, self.t)]

    def select(self, rows: torch.Tensor) -> None:
        """Keep only these models' state (the stack dropped the others); `bind` again after."""
        self.m, self.v, self.t = (x.index_select(0, rows) for x in (self.m, self.v, self.t))

    def reset(self, which: torch.Tensor) -> None:
        """Fresh state for the models `which` selects (a boolean mask)."""
        self.m[which] = 0
        self.v[which] = 0
        self.t[which] = 0

    def step(self, stepping: np.ndarray, lr: torch.Tensor) -> None:
        """One step of the models in `stepping` from the gradients in `grad`; `lr` [K]."""
        beta1, beta2 = ADAM_BETAS
        if stepping.all():
            scratch, grad, m, v, t = self.rows
            self.t.add_(1)  # `t` holds views of self.t
        else:
            on = np.flatnonzero(stepping).tolist()
            scratch, grad, m, v, t = ([rows[i] for i in on] for rows in self.rows)
            self.t[torch.as_tensor(on, device=self.t.device)] += 1
        with torch.no_grad():
            self.scratch.zero_()
            torch._fused_adam_(
                scratch,
                grad,
                m,
                v,
                [],
                t,
                lr=1.0,
                beta1=beta1,
                beta2=beta2,
                weight_decay=0.0,
                eps=ADAM_EPS,
                amsgrad=False,
                maximize=False,
            )
            self.flat.addcmul_(self.scratch, lr[:, None])
