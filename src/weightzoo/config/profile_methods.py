"""The signature's profile methods as config values: each method's parameters, their ranges and their
defaults. A method given as `pca:` or `pca: {}` stores every parameter, so one config always gives one
signature layout."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, ConfigDict, with_config
from typing_extensions import TypedDict

from weightzoo.config.values import MAX_BINS, MAX_COMPONENTS, MAX_FREQUENCIES, Float, Int, between

# Each neuron profile method and its parameters with their defaults. Methods are applied in this order,
# whatever order the YAML lists them in, so one set of methods always gives one signature layout.
PROFILE_METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    "mean": {},
    "std": {},
    "max": {},
    "min": {},
    "sparsity": {"threshold": 1e-6},
    "pca": {"components": 3},
    "entropy": {"bins": 20},
    "clustering": {"n_clusters": 2},
    "svd": {"components": 2},
    "fourier": {"n_frequencies": 1},
    "pattern_wise": {},
}

_FORBID = ConfigDict(extra="forbid")


@with_config(_FORBID)
class NoParams(TypedDict, total=False):
    pass


@with_config(_FORBID)
class SparsityParams(TypedDict, total=False):
    threshold: Annotated[Float, between(0, 1e6)]


@with_config(_FORBID)
class ComponentsParams(TypedDict, total=False):
    components: Annotated[Int, between(1, MAX_COMPONENTS)]


@with_config(_FORBID)
class EntropyParams(TypedDict, total=False):
    bins: Annotated[Int, between(2, MAX_BINS)]


@with_config(_FORBID)
class ClusteringParams(TypedDict, total=False):
    n_clusters: Annotated[Int, between(1, MAX_COMPONENTS)]


@with_config(_FORBID)
class FourierParams(TypedDict, total=False):
    n_frequencies: Annotated[Int, between(1, MAX_FREQUENCIES)]


def _with_defaults(method: str) -> AfterValidator:
    """`pca: {}` or `pca:` (null) becomes {'components': 3}: the stored params always hold every value."""
    return AfterValidator(lambda params: {**PROFILE_METHOD_DEFAULTS[method], **(params or {})})


@with_config(_FORBID)
class ProfileMethods(TypedDict, total=False):
    mean: Annotated[NoParams | None, _with_defaults("mean")]
    std: Annotated[NoParams | None, _with_defaults("std")]
    max: Annotated[NoParams | None, _with_defaults("max")]
    min: Annotated[NoParams | None, _with_defaults("min")]
    sparsity: Annotated[SparsityParams | None, _with_defaults("sparsity")]
    pca: Annotated[ComponentsParams | None, _with_defaults("pca")]
    entropy: Annotated[EntropyParams | None, _with_defaults("entropy")]
    clustering: Annotated[ClusteringParams | None, _with_defaults("clustering")]
    svd: Annotated[ComponentsParams | None, _with_defaults("svd")]
    fourier: Annotated[FourierParams | None, _with_defaults("fourier")]
    pattern_wise: Annotated[NoParams | None, _with_defaults("pattern_wise")]
