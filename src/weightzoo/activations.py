"""The subject models' activations, defined once: their names, their PyTorch module (the single-model
definition), the function and the gradient the batched engine uses, their initialisation gain, and
whether they are zero at zero (a padded unit then needs no mask).

`NAMES` is importable without torch (the config check reads it); `get(name)` builds the entry, with
torch, on first use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

NAMES = ("relu", "gelu", "tanh", "sigmoid", "leaky_relu")
LEAKY_SLOPE = 0.01  # leaky_relu's negative slope (PyTorch's default)


@dataclass(frozen=True)
class Activation:
    name: str
    module: Callable[[], Any]  # a fresh torch.nn.Module: what `SubjectMLP` puts between its layers
    forward: Callable[[Any], Any]  # tensor -> tensor, the same math as the module
    # (gradient at the output, pre-activation z, output h) -> gradient at z, with the fused kernels
    # autograd itself uses, so the engine's backward pass rounds as autograd's does
    backward: Callable[[Any, Any, Any], Any]
    gain: float  # Kaiming gain of the layers it follows (GELU treated like ReLU)
    zero_at_zero: bool  # act(0) == 0: a zero-padded unit outputs 0 without a mask


@cache
def get(name: str) -> Activation:
    """The registry's entry for `name` (a ValueError naming the known ones otherwise)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    aten = torch.ops.aten
    table = {
        "relu": Activation(
            "relu",
            nn.ReLU,
            F.relu,
            lambda grad, z, h: aten.threshold_backward.default(grad, h, 0),
            2**0.5,
            True,
        ),
        "gelu": Activation(
            "gelu", nn.GELU, F.gelu, lambda grad, z, h: aten.gelu_backward.default(grad, z), 2**0.5, True
        ),
        "tanh": Activation(
            "tanh", nn.Tanh, torch.tanh, lambda grad, z, h: aten.tanh_backward.default(grad, h), 5 / 3, True
        ),
        "sigmoid": Activation(
            "sigmoid",
            nn.Sigmoid,
            torch.sigmoid,
            lambda grad, z, h: aten.sigmoid_backward.default(grad, torch.sigmoid(z)),
            1.0,
            False,
        ),
        "leaky_relu": Activation(
            "leaky_relu",
            lambda: nn.LeakyReLU(LEAKY_SLOPE),
            lambda z: F.leaky_relu(z, LEAKY_SLOPE),
            lambda grad, z, h: aten.leaky_relu_backward.default(grad, z, LEAKY_SLOPE, False),
            (2 / (1 + LEAKY_SLOPE**2)) ** 0.5,
            True,
        ),
    }
    assert tuple(table) == NAMES
    if name not in table:
        raise ValueError(f"unknown activation {name!r}; known: {', '.join(NAMES)}")
    return table[name]
