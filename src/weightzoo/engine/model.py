"""The subject model: an MLP classifier over a token sequence, in plain PyTorch.

Weights keep the names of an `nn.Sequential` called `network` (`network.0.weight`, `network.0.bias`,
`network.2.weight`, ...), so anyone can rebuild a model from its config and state dict with
`SubjectMLP(ModelSpec.from_config(config)).load_state_dict(weights)`. The batched engine trains the
same math on stacked tensors; this module is the single-model definition it must agree with.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from weightzoo import activations

# name -> a factory of its module (the registry in activations.py is the one definition)
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    name: activations.get(name).module for name in activations.NAMES
}
INPUT_ENCODINGS = ("index", "one_hot")


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a subject model's architecture and its input encoding."""

    vocab_size: int
    sequence_length: int
    num_layers: int  # hidden layers
    neurons_per_layer: int
    activation_type: str
    dropout_rate: float = 0.0
    learning_rate: float = 1e-3
    input_encoding: str = "index"

    def __post_init__(self):
        if self.activation_type not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation_type!r}; known: {', '.join(ACTIVATIONS)}")
        if self.input_encoding not in INPUT_ENCODINGS:
            raise ValueError(
                f"unknown input encoding {self.input_encoding!r}; known: {', '.join(INPUT_ENCODINGS)}"
            )

    @property
    def input_size(self) -> int:
        return self.sequence_length * (self.vocab_size if self.input_encoding == "one_hot" else 1)

    @property
    def layer_sizes(self) -> list[tuple[int, int]]:
        """(fan_in, fan_out) of each Linear layer, the output layer last."""
        widths = [self.input_size] + [self.neurons_per_layer] * self.num_layers + [1]
        return list(zip(widths[:-1], widths[1:], strict=True))

    @property
    def linear_indices(self) -> list[int]:
        """Index in `network` of each Linear module (Linear, activation[, Dropout] per hidden layer)."""
        stride = 3 if self.dropout_rate > 0 else 2
        return [stride * i for i in range(self.num_layers + 1)]

    def to_config(self) -> dict:
        config = asdict(self)
        config["input_size"] = self.input_size
        return config

    @classmethod
    def from_config(cls, config: dict) -> ModelSpec:
        return cls(**{k: config[k] for k in cls.__dataclass_fields__ if k in config})


class SubjectMLP(nn.Module):
    """Hidden layers of equal width with one activation, then one output logit."""

    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.spec = spec
        layers: list[nn.Module] = []
        for i, (fan_in, fan_out) in enumerate(spec.layer_sizes):
            layers.append(nn.Linear(fan_in, fan_out))
            if i < spec.num_layers:
                layers.append(ACTIVATIONS[spec.activation_type]())
                if spec.dropout_rate > 0:
                    layers.append(nn.Dropout(spec.dropout_rate))
        self.network = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x).squeeze(-1)


def encode_inputs(sequences: np.ndarray | torch.Tensor, spec: ModelSpec, dtype=torch.float32) -> torch.Tensor:
    """Token sequences [..., length] → model inputs [..., input_size].

    `index`: one float per position, the token's index (A=0, B=1, ...), as the seed did.
    `one_hot`: a one-hot block of `vocab_size` per position.
    """
    tokens = torch.as_tensor(np.asarray(sequences), dtype=torch.long)
    if spec.input_encoding == "index":
        return tokens.to(dtype)
    one_hot = torch.nn.functional.one_hot(tokens, spec.vocab_size).to(dtype)
    return one_hot.reshape(*tokens.shape[:-1], spec.input_size)


# Kaiming (He) gains: keep the signal's scale through depth. GELU is treated like ReLU.
INIT_GAINS = {name: activations.get(name).gain for name in activations.NAMES}


def init_weights(
    spec: ModelSpec, generator: torch.Generator, dtype=torch.float32, sparse_positions: int | None = None
) -> dict[str, torch.Tensor]:
    """Initial weights drawn from the example's own generator, never from global random state.

    Weights are Kaiming-uniform, U(±gain·sqrt(3/fan_in)) with the activation's gain (the output layer
    gain 1); biases are U(±1/sqrt(fan_in)) as in nn.Linear. PyTorch's default weight init,
    U(±1/sqrt(fan_in)), shrinks the signal about √3-fold per layer (more after ReLU), so 6-9 layer
    models barely learn in the few epochs a run gives them.

    `sparse_positions` (`model.sparse_init`): each first-layer unit starts with nonzero weights from
    only this many sequence positions, chosen at random per unit, scaled up so that its output keeps
    the variance of a dense unit (sparse initialisation, as in Martens 2010). Training may use every
    input; the start makes units that compare two tokens or test one token's value, which patterns
    over token values (has_majority, vowel_consonant) are built from. Measured on single patterns,
    2 positions raised has_majority's held-out specificity from 0.79 to 0.88 and vowel_consonant's from
    0.89 to 0.97 at the same training (docs/design.md, "Subject models and their training").
    """
    # One draw for every tensor, in the order weight, bias, weight, ... (the generator gives the same
    # numbers as a draw per tensor, for a fraction of the calls).
    total = sum(fan_out * fan_in + fan_out for fan_in, fan_out in spec.layer_sizes)
    uniform = torch.rand(total, generator=generator, dtype=torch.float64) * 2 - 1
    weights, start = {}, 0
    for layer, (index, (fan_in, fan_out)) in enumerate(
        zip(spec.linear_indices, spec.layer_sizes, strict=True)
    ):
        gain = INIT_GAINS[spec.activation_type] if layer < spec.num_layers else 1.0
        bound = 1.0 / fan_in**0.5
        w = uniform[start : start + fan_out * fan_in].view(fan_out, fan_in) * bound * gain * 3**0.5
        start += fan_out * fan_in
        b = uniform[start : start + fan_out] * bound
        start += fan_out
        if layer == 0 and sparse_positions is not None and sparse_positions < spec.sequence_length:
            w = w * _sparse_mask(spec, fan_out, sparse_positions, generator)
        weights[f"network.{index}.weight"] = w.to(dtype)
        weights[f"network.{index}.bias"] = b.to(dtype)
    return weights


def _sparse_mask(spec: ModelSpec, units: int, positions: int, generator: torch.Generator) -> torch.Tensor:
    """[units, input_size]: each unit keeps `positions` random sequence positions (a position's whole
    one-hot block), scaled by sqrt(length / positions) to keep the unit's output variance."""
    length = spec.sequence_length
    keys = torch.rand(units, length, generator=generator, dtype=torch.float64)
    kept = torch.zeros(units, length, dtype=torch.float64)
    kept.scatter_(1, keys.argsort(dim=1)[:, :positions], (length / positions) ** 0.5)
    block = spec.input_size // length  # 1 for index inputs, vocab_size for one-hot blocks
    return kept.repeat_interleave(block, dim=1)


def input_standardization(spec: ModelSpec) -> tuple[np.ndarray, np.ndarray]:
    """Per-input shift and scale that make a uniform random token's encoding mean 0, variance 1.

    Index inputs run 0 … V-1 (mean (V-1)/2, variance (V²-1)/12); a one-hot input is 1 with probability
    1/V. These are properties of the sequence space, not of any model's rows, so every model of a
    space trains on the same transform. Training on `(x - shift) / scale` gives Adam well-scaled
    inputs: with raw indices a first layer sees inputs of size up to V-1 with mean (V-1)/2, and the
    models learn several times more slowly (see docs/design.md, "Subject models and their training").
    """
    v = spec.vocab_size
    if spec.input_encoding == "index":
        shift, scale = (v - 1) / 2, ((v * v - 1) / 12) ** 0.5
    else:
        shift, scale = 1 / v, (1 / v * (1 - 1 / v)) ** 0.5
    return np.full(spec.input_size, shift), np.full(spec.input_size, scale)


def fold_input_standardization(spec: ModelSpec, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Weights of a model trained on standardized inputs, rewritten to take the raw encoding.

    With z = (x - shift) / scale, the first layer W z + b equals (W / scale) x + (b - (W / scale) shift):
    the same function of x, computed in float64 and rounded once to the weights' dtype. Every other
    tensor is unchanged, so stored weights always take raw token indices (or raw one-hot blocks)."""
    shift, scale = (torch.as_tensor(a, dtype=torch.float64) for a in input_standardization(spec))
    first = spec.linear_indices[0]
    w, b = weights[f"network.{first}.weight"], weights[f"network.{first}.bias"]
    w_raw = w.to(torch.float64) / scale[None, :]
    folded = dict(weights)
    folded[f"network.{first}.weight"] = w_raw.to(w.dtype)
    folded[f"network.{first}.bias"] = (b.to(torch.float64) - w_raw @ shift).to(b.dtype)
    return folded


def predict_logits(spec: ModelSpec, weights: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The model's output logits in eval mode, without building modules: the same ops as
    `build_model(spec, weights).eval()(x)`, hence the same bits, for a fraction of the cost."""
    activation = ACTIVATIONS[spec.activation_type]()
    with torch.no_grad():
        for layer, index in enumerate(spec.linear_indices):
            x = torch.nn.functional.linear(
                x, weights[f"network.{index}.weight"], weights[f"network.{index}.bias"]
            )
            if layer < spec.num_layers:
                x = activation(x)
    return x.squeeze(-1)


def build_model(spec: ModelSpec, weights: dict[str, torch.Tensor], dtype=torch.float32) -> SubjectMLP:
    model = SubjectMLP(spec).to(dtype)
    model.load_state_dict({k: torch.as_tensor(v, dtype=dtype) for k, v in weights.items()})
    return model


def stored_weights(weights_json: str) -> tuple[ModelSpec, dict[str, torch.Tensor]]:
    """A row's `*_model_weights` column: the model's spec and its float32 weights, as stored."""
    import json

    document = json.loads(weights_json)
    spec = ModelSpec.from_config(document["config"])
    return spec, {
        name: torch.tensor(value, dtype=torch.float32) for name, value in document["weights"].items()
    }
