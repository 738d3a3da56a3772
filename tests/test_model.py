"""The subject model: the module-free forward pass is the module's forward, bit for bit."""

from __future__ import annotations

import pytest
import torch

from weightzoo.model import ACTIVATIONS, ModelSpec, build_model, encode_inputs, init_weights, predict_logits


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
