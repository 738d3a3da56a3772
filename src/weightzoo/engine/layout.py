"""A stack's parameters in one flat buffer, [models, P], and each model's weights in and out of it.

Each layer's weight is stored transposed, [models, fan_in, fan_out] (so a layer is
`baddbmm(bias, h, Wt)`), then its bias, [models, fan_out], both views into the flat buffer. Adam,
checkpoints and finite checks then work on one tensor, and gradients are gathered into a buffer of the
same layout. Narrower models sit zero-padded in the stack's widths: a padded unit's weights and bias
are zero, get exactly zero gradient and stay zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from weightzoo.engine.model import ModelSpec


@dataclass(frozen=True)
class Layout:
    dims: tuple[int, ...]  # input size, each hidden layer's (padded) width, 1
    entries: tuple[tuple[int, tuple[int, ...]], ...]  # (offset, shape per model) of each view
    size: int  # P: parameters per model, padded

    @classmethod
    def of(cls, dims: list[int]) -> Layout:
        entries, offset = [], 0
        for fan_in, fan_out in zip(dims[:-1], dims[1:], strict=True):
            entries += [(offset, (fan_in, fan_out)), (offset + fan_in * fan_out, (fan_out,))]
            offset += fan_in * fan_out + fan_out
        return cls(tuple(dims), tuple(entries), offset)

    def views(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """Each layer's weight [K, fan_in, fan_out] and bias [K, fan_out] as views of a flat [K, P]."""
        return [flat[:, o : o + int(np.prod(shape))].view(flat.shape[0], *shape) for o, shape in self.entries]

    def pack(self, weights: list[dict[str, torch.Tensor]], specs: list[ModelSpec], dtype) -> torch.Tensor:
        """The flat buffer [K, P] of K models' weights (under their `network.N.*` names), zero-padded."""
        flat = torch.zeros(len(weights), self.size, dtype=dtype)
        views = self.views(flat)
        for layer in range(len(self.dims) - 1):
            for k, (own, spec) in enumerate(zip(weights, specs, strict=True)):
                index = spec.linear_indices[layer]
                w_k = own[f"network.{index}.weight"].to(dtype)  # [out, in]
                views[2 * layer][k, : w_k.shape[1], : w_k.shape[0]] = w_k.T
                views[2 * layer + 1][k, : w_k.shape[0]] = own[f"network.{index}.bias"].to(dtype)
        return flat

    def unpack(self, row: torch.Tensor, spec: ModelSpec) -> dict[str, torch.Tensor]:
        """One model's own weights from its row of a flat buffer, unpadded, as new tensors. Sliced in
        NumPy: a model's dozens of small tensors cost a fraction of what as many torch slicing ops
        would (measured: 85 µs against 401)."""
        row = row.detach().cpu().numpy()  # on the CPU a view of the live buffer: every piece is copied
        weights = {}
        for layer, ((fan_in, fan_out), index) in enumerate(
            zip(spec.layer_sizes, spec.linear_indices, strict=True)
        ):
            (offset, shape), (bias_offset, _) = self.entries[2 * layer], self.entries[2 * layer + 1]
            wt = row[offset : offset + shape[0] * shape[1]].reshape(shape)
            weights[f"network.{index}.weight"] = torch.from_numpy(wt[:fan_in, :fan_out].T.copy())
            weights[f"network.{index}.bias"] = torch.from_numpy(
                row[bias_offset : bias_offset + fan_out].copy()
            )
        return weights
