"""The stacked MLP: forward and backpropagation written out, for K models at once.

`params` are a stack's per-layer views (`layout.py`): weights [K, fan_in, fan_out], biases [K, fan_out].
The backward pass uses the activations' own fused gradient kernels (`weightzoo.activations`), the
ones autograd uses, so it rounds as autograd does. The one-unit output layer is written as products
and a sum: a matrix-vector product takes another kernel for one model than for several, with another
rounding (see `jobs.Padding`).
"""

from __future__ import annotations

import torch

from weightzoo import activations


def forward(
    x: torch.Tensor,
    params: list[torch.Tensor],
    activation: str,
    unit_mask: torch.Tensor,
    keep: list[torch.Tensor] | None = None,
) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """Logits [K, rows] for inputs [K, rows, input_size], with each hidden layer's pre-activation and
    output (what `backward` needs). `unit_mask` [K, 1, W]: the models' own units (padded ones are
    silenced where act(0) is not 0); `keep`: a dropout scale per hidden layer."""
    act = activations.get(activation)
    in_place = activation == "relu" and keep is None
    pre, outs = [], [x]
    h = x
    for layer in range(len(params) // 2 - 1):
        z = torch.baddbmm(params[2 * layer + 1][:, None, :], h, params[2 * layer])
        # ReLU's gradient needs only its output: computed in place, z is not kept beside it.
        h = z.relu_() if in_place else act.forward(z)
        if not act.zero_at_zero:
            h = h * unit_mask  # sigmoid(0) = 0.5: silence padded units
        if keep is not None:
            h = h * keep[layer]
        pre.append(z)
        outs.append(h)
    logits = (h * params[-2][:, None, :, 0]).sum(-1) + params[-1]
    return logits, pre, outs


def backward(
    delta: torch.Tensor,
    params: list[torch.Tensor],
    pre: list[torch.Tensor],
    outs: list[torch.Tensor],
    activation: str,
    keep: list[torch.Tensor] | None = None,
) -> list[torch.Tensor]:
    """Each parameter's gradient, [K, its size], in the flat layout's order, from the gradient at the
    logits `delta` [K, rows, 1] (padded rows carry zero). Padded units need no care: no gradient
    reaches them."""
    act = activations.get(activation)
    depth = len(params) // 2 - 1
    grads: list[torch.Tensor] = []
    for layer in range(depth, -1, -1):
        output = layer == depth  # one unit: no matrix-vector products (see forward)
        weight_grad = (
            (outs[layer] * delta).sum(1) if output else torch.bmm(outs[layer].transpose(1, 2), delta)
        )
        grads += [delta.sum(1).flatten(1), weight_grad.flatten(1)]
        if layer == 0:
            break
        if output:
            dh = delta * params[2 * layer][:, None, :, 0]
        else:
            dh = torch.bmm(delta, params[2 * layer].transpose(1, 2))
        if keep is not None:
            dh = dh * keep[layer - 1]
        # the activation's own output (with dropout, outs[layer] is also scaled by the mask)
        act_out = outs[layer] if keep is None else act.forward(pre[layer - 1])
        delta = act.backward(dh, pre[layer - 1], act_out)
    return grads[::-1]
