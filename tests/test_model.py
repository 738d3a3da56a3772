"""The subject model: the module-free forward pass is the module's forward, bit for bit."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from weightzoo.engine.model import (
    ACTIVATIONS,
    INIT_GAINS,
    ModelSpec,
    build_model,
    encode_inputs,
    init_weights,
    predict_logits,
)


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
@pytest.mark.parametrize("dropout, encoding", [(0.0, "index"), (0.3, "one_hot")])
def test_predict_logits_equals_the_module_in_eval_mode(activation, dropout, encoding):
    spec = ModelSpec(5, 6, 3, 11, activation, dropout_rate=dropout, input_encoding=encoding)
    weights = init_weights(spec, torch.Generator().manual_seed(7))
    x = encode_inputs(torch.randint(0, 5, (300, 6), generator=torch.Generator().manual_seed(1)), spec)
    with torch.no_grad():
        expected = build_model(spec, weights).eval()(x)
    got = predict_logits(spec, weights, x)
    assert got.shape == (300,)
    assert torch.equal(got, expected)
    # and it is the model's own output, not a constant: different weights, different logits
    other = init_weights(spec, torch.Generator().manual_seed(8))
    assert not torch.equal(predict_logits(spec, other, x), got)


@settings(max_examples=40, deadline=None)
@given(
    depth=st.integers(1, 9),
    width=st.integers(1, 40),
    activation=st.sampled_from(list(ACTIVATIONS)),
    encoding=st.sampled_from(["index", "one_hot"]),
    seed=st.integers(0, 2**32),
)
def test_initial_weights_are_a_draw_per_tensor_in_layer_order(depth, width, activation, encoding, seed):
    """One draw for all tensors gives the numbers a draw per tensor would (weight, then bias, layer by
    layer), so initial weights are what the documented rule says, however they are computed."""
    spec = ModelSpec(7, 5, depth, width, activation, input_encoding=encoding)
    got = init_weights(spec, torch.Generator().manual_seed(seed))
    generator = torch.Generator().manual_seed(seed)
    assert list(got) == [f"network.{i}.{kind}" for i in spec.linear_indices for kind in ("weight", "bias")]
    for layer, (index, (fan_in, fan_out)) in enumerate(
        zip(spec.linear_indices, spec.layer_sizes, strict=True)
    ):
        gain = INIT_GAINS[activation] if layer < depth else 1.0
        bound = 1.0 / fan_in**0.5
        u = torch.rand(fan_out, fan_in, generator=generator, dtype=torch.float64) * 2 - 1
        b = torch.rand(fan_out, generator=generator, dtype=torch.float64) * 2 - 1
        assert torch.equal(got[f"network.{index}.weight"], (u * bound * gain * 3**0.5).float())
        assert torch.equal(got[f"network.{index}.bias"], (b * bound).float())
        assert got[f"network.{index}.weight"].abs().max() <= bound * gain * 3**0.5
