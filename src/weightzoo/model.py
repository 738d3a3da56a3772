"""The subject model: an MLP classifier over a token sequence, in plain PyTorch.

Weights keep the names of an `nn.Sequential` called `network` (`network.0.weight`, `network.0.bias`,
`network.2.weight`, ...), so anyone can rebuild a model from its config and state dict with
`SubjectMLP(ModelSpec.from_config(config)).load_state_dict(weights)`. The batched engine trains the
same math on stacked tensors; this module is the single-model definition it must agree with.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "leaky_relu": nn.LeakyReLU,  # negative slope 0.01 (PyTorch's default)
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
INIT_GAINS = {
    "relu": 2**0.5,
    "gelu": 2**0.5,
    "tanh": 5 / 3,
    "sigmoid": 1.0,
    "leaky_relu": (2 / (1 + 0.01**2)) ** 0.5,
}


def init_weights(spec: ModelSpec, generator: torch.Generator, dtype=torch.float32) -> dict[str, torch.Tensor]:
    """Initial weights drawn from the example's own generator, never from global random state.

    Weights are Kaiming-uniform, U(±gain·sqrt(3/fan_in)) with the activation's gain (the output layer
    gain 1); biases are U(±1/sqrt(fan_in)) as in nn.Linear. PyTorch's default weight init,
    U(±1/sqrt(fan_in)), shrinks the signal about √3-fold per layer (more after ReLU), so 6-9 layer
    models barely learn in the few epochs a run gives them.
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
        weights[f"network.{index}.weight"] = w.to(dtype)
        weights[f"network.{index}.bias"] = b.to(dtype)
    return weights


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
