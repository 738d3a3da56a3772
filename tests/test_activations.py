"""The one activation registry: its module, function and gradient agree with each other and autograd."""

from __future__ import annotations

import pytest
import torch

from weightzoo import activations
from weightzoo.config import parse_config


@pytest.mark.parametrize("name", activations.NAMES)
def test_module_function_and_gradient_agree(name):
    entry = activations.get(name)
    z = torch.linspace(-4, 4, 101, dtype=torch.float64, requires_grad=True)
    h = entry.module()(z)
    assert torch.equal(h, entry.forward(z))
    grad = torch.randn(101, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    (want,) = torch.autograd.grad(h, z, grad)
    assert torch.equal(entry.backward(grad, z.detach(), h.detach()), want)
    zero = entry.forward(torch.zeros(1, dtype=torch.float64))
    assert entry.zero_at_zero == bool(zero == 0)


def test_the_config_accepts_exactly_the_registrys_activations():
    cfg = parse_config({"model": {"activation_types": list(activations.NAMES)}})
    assert tuple(cfg.model.activation_types) == activations.NAMES
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        activations.get("swish")
