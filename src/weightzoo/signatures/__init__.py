"""Activation signatures: per-neuron statistics of a subject model over the fixed probe (signature) set.

Modules: `forward.py` (activations on the probe set), `methods.py` (the profile methods),
`profiles.py` (a model's signature and its flat vector).

Every model of a dataset sees the same probe sequences. `layer_activations` runs them through many
models at once (batched by architecture), recording each hidden layer's post-activation outputs and the
output logit. `signature` turns one model's activations into the layout the seed's downstream readers
expect: per layer (the Linear module's index in `network`, as a string),
per neuron (its index, as a string), per profile method, a number or a list of numbers.

Profile methods. `a` is one neuron's activations over the n probe examples in file order; `A` is the
layer's activation matrix [n, m] (examples × neurons). Every method gives each neuron of a layer the same
number of values (its length), fixed by the method's parameters and the layer (never by the data), so
signature vectors of one dataset line up.

| method | params | length | value for a neuron |
|---|---|---|---|
| mean | | 1 | mean(a) |
| std | | 1 | population standard deviation (ddof=0) |
| max | | 1 | max(a) |
| min | | 1 | min(a) |
| sparsity | threshold | 1 | fraction of examples with abs(a) <= threshold |
| pca | components | components | with A - mean(A, axis=0) = U S Vᵀ: V[j, c] · S[c] / sqrt(n - 1) |
| svd | components | components | with A = U S Vᵀ (uncentered): V[j, c] · S[c] / sqrt(n) |
| entropy | bins | 1 | bits of the `bins`-bin histogram of a over [min(a), max(a)]; 0 if constant |
| clustering | n_clusters | n_clusters | sorted centres of a 1-D k-means on a (see below) |
| fourier | n_frequencies | n_frequencies | abs(rfft(a)[k]) / n, k = 1..n_frequencies (k=0 left out) |
| pattern_wise | | number of groups | mean(a) over each probe group's examples (order below) |

(j is the neuron, c = 0..components-1 the component: pca gives covariance-scaled loadings, so L Lᵀ is
the layer's sample covariance when all components are kept. Entropy uses numpy.histogram's binning and
lies in [0, log2(bins)].)

Details, so that a signature is a pure function of the model and the probe set:

- pca / svd: each principal axis (right singular vector) gets a deterministic sign: its entry of largest
  absolute value (the first such entry on ties) is made positive. Components beyond the layer's rank
  (at most min(n, m); singular values at or below S[0]·max(n, m)·eps count as zero) are 0.0, so the
  length stays `components` however narrow the layer is. With n = 1 the pca divisor is 1 (the centered
  matrix is all zeros anyway).
- clustering: Lloyd's algorithm with the initial centres at the quantiles of a at evenly spaced levels
  linspace(0, 1, n_clusters) (linear interpolation); each point goes to its nearest centre (the lower
  centre on ties), each centre moves to the mean of its points (a centre with no points stays put);
  it stops when no assignment changes, or after 100 iterations. The centres are sorted ascending. When a
  has no more distinct values than n_clusters, the centres are its distinct values, ascending, padded by
  repeating the last (largest) one up to n_clusters (a constant neuron gives its value n_clusters times).
- fourier: when the probe set has fewer than n_frequencies non-constant frequencies (n // 2), the rest
  are 0.0. A constant neuron gives all zeros.
- pattern_wise: the groups are those present in the probe set (`ProbeSet.groups`), ordered as the pattern
  names in `weightzoo.data.patterns.PATTERN_NAMES`, then "negative". The probe set is the same for every
  model of a dataset, so the length is too.

Output types: the scalar methods (mean, std, max, min, sparsity, entropy) give a number; the others
always give a list, even when their length is 1 (e.g. fourier's default n_frequencies=1), so a method's
JSON type never depends on its parameters. Readers flatten numbers and lists alike (`signature_vector`).
"""

from weightzoo.signatures.forward import layer_activations
from weightzoo.signatures.methods import NEGATIVE, PROFILE_METHODS, ProfileContext, ProfileMethod, group_order
from weightzoo.signatures.profiles import method_length, profile_layer, signature, signature_vector

__all__ = [
    "NEGATIVE",
    "PROFILE_METHODS",
    "ProfileContext",
    "ProfileMethod",
    "group_order",
    "layer_activations",
    "method_length",
    "profile_layer",
    "signature",
    "signature_vector",
]
