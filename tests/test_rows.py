"""Row JSON: weights read back to the very float32 values that were stored."""

from __future__ import annotations

import json

import numpy as np
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from weightzoo.output.rows import _json, weights_json

finite_float32 = st.floats(width=32, allow_nan=False, allow_infinity=False)


@given(
    weight=arrays(np.float32, st.tuples(st.integers(1, 6), st.integers(1, 6)), elements=finite_float32),
    bias=arrays(np.float32, st.integers(1, 6), elements=finite_float32),
)
def test_weights_json_round_trips_every_float32_exactly(weight, bias):
    tensors = {"network.0.weight": torch.from_numpy(weight).T, "network.0.bias": torch.from_numpy(bias)}
    text = weights_json({"vocab_size": 7}, tensors, {"network.0.weight": 0.5})
    back = json.loads(text)  # the standard library reads it, as downstream readers do
    assert back["config"] == {"vocab_size": 7} and back["quantization_scales"] == {"network.0.weight": 0.5}
    for name, tensor in tensors.items():
        restored = np.array(back["weights"][name], dtype=np.float32)
        assert restored.shape == tuple(tensor.shape)  # a transposed (non-contiguous) tensor keeps its layout
        assert np.array_equal(restored.view(np.int32), tensor.numpy().view(np.int32))  # -0.0 included


def test_nan_is_written_as_null_so_the_json_stays_valid():
    text = _json({"gain": float("nan"), "ok": 0.25})
    assert json.loads(text) == {"gain": None, "ok": 0.25}
    assert "NaN" not in text
