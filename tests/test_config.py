"""Tests for weightzoo.config: the reference config loads, bad configs give one precise line per problem."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from weightzoo.config import MAX_PARAMETERS, PROFILE_METHOD_DEFAULTS, Config, load_config, parse_config
from weightzoo.data.space import SequenceSpace
from weightzoo.engine.model import ModelSpec
from weightzoo.errors import ConfigError
from weightzoo.text import num_parameters

# A verbatim copy of the seed's own config file (test_config checks it matches the original).
REFERENCE = Path(__file__).resolve().parents[1] / "configs/seed_example.yaml"
SECTIONS = [
    "signature",
    "model",
    "dataset",
    "training",
    "staged_training",
    "validation",
    "pipeline",
    "metrics",
    "task_generation",
    "hub",
]
ALL_PATTERNS = [
    "all_same",
    "palindrome",
    "sorted_ascending",
    "sorted_descending",
    "alternating",
    "contains_abc",
    "starts_with",
    "ends_with",
    "no_repeats",
    "has_majority",
    "increasing_pairs",
    "decreasing_pairs",
    "vowel_consonant",
    "first_last_match",
    "mountain_pattern",
]


def problems_of(data, **kwargs) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, **kwargs)
    return info.value.problems


def nested(path: str, value) -> dict:
    """{'a': {'b': value}} from 'a.b'."""
    out: dict = value
    for key in reversed(path.split(".")):
        out = {key: out}
    return out


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------------------
# the reference config
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture
def reference() -> Path:
    return REFERENCE


def test_bundled_seed_config_is_the_original_verbatim():
    original = Path(__file__).resolve().parents[2] / "shared/reference/example_config.yaml"
    if not original.exists():
        pytest.skip("the seed's original config is not beside this checkout")
    assert REFERENCE.read_bytes() == original.read_bytes()


def test_reference_config_loads_with_its_values(reference):
    cfg = load_config(reference)
    assert cfg.source_path == reference.resolve()
    assert cfg.signature.dataset_path == reference.parent / "signature_dataset.json"
    assert cfg.signature.neuron_profile_methods == {"mean": {}, "std": {}}
    assert cfg.signature.prompt_format.style == "separate"
    m = cfg.model
    assert (m.num_layers.min, m.num_layers.max) == (6, 9)
    assert (m.neurons_per_layer.min, m.neurons_per_layer.max) == (25, 40)
    assert m.activation_types == ["relu", "gelu"]
    assert (m.dropout_rate, m.vocab_size, m.sequence_length) == (0.0, 7, 7)
    assert (m.precision, m.quantization, m.input_encoding) == ("float32", "none", "index")
    assert (m.learning_rate.min, m.learning_rate.max) == (0.001, 0.01)
    d = cfg.dataset
    assert d.output_dataset_length == 1000
    assert d.patterns.enabled_patterns == ALL_PATTERNS
    assert (d.patterns.min_patterns_per_batch, d.patterns.max_patterns_per_batch) == (2, 5)
    assert d.patterns.samples_per_pattern.min == 10
    assert d.patterns.negative_ratio == 0.5
    assert (d.patterns.target_total_examples, d.patterns.max_total_examples) == (500, 2500)
    t = cfg.training
    assert (t.epochs, t.batch_size, t.early_stopping.patience) == (20, 128, 5)
    assert (t.min_degradation_threshold, t.validation_split) == (0.05, 0.2)
    s = cfg.staged_training
    assert (s.max_degraded_epochs, s.min_improvement_threshold, s.improvement_epochs) == (10, 0.05, 10)
    assert (s.improvement_lr_factor, s.corruption_rate) == (1.0, 0.3)
    assert isinstance(s.improvement_lr_factor, float)
    v = cfg.validation
    assert (v.pattern_specific, v.min_pattern_improvement, v.max_other_degradation, v.test_set_size) == (
        True,
        0.05,
        0.02,
        100,
    )
    assert v.max_negative_degradation is None
    p = cfg.pipeline
    assert p.output_dir == reference.parent / "datasets"
    assert (p.random_seed, p.device, p.checkpoint_interval) == (42, "auto", 1000)
    assert (p.max_threads, p.num_workers, p.pin_memory) == (4, 4, True)
    assert cfg.metrics.dir == reference.parent / "training_runs"
    tb = cfg.metrics.tensorboard
    assert (tb.enabled, tb.auto_launch, tb.port, tb.update_freq) == (True, True, 6006, "epoch")
    assert (cfg.metrics.checkpoint.save_every_epoch, cfg.metrics.checkpoint.save_optimizer_state) == (
        True,
        False,
    )
    assert (cfg.task_generation.include_modification, cfg.task_generation.include_classification) == (
        True,
        False,
    )
    assert (cfg.hub.dataset_name, cfg.hub.token, cfg.hub.private) == (None, None, False)
    assert cfg.space == SequenceSpace(7, 7, starts_with_token=0, ends_with_token=1)


def _key_paths(data: dict, prefix: str = "") -> list[str]:
    out = []
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else key
        out.append(path)
        if isinstance(value, dict) and not path.startswith("signature.neuron_profile_methods"):
            out += _key_paths(value, path)
    return out


def test_every_key_of_the_reference_config_is_a_field(reference):
    """No key of the reference is silently ignored: each one is a field of the validated config."""
    cfg = load_config(reference)
    raw = yaml.safe_load(reference.read_text())
    for path in _key_paths(raw):
        node = cfg
        for key in path.split("."):
            node = node[key] if isinstance(node, dict) else getattr(node, key)


def test_minimal_config_is_valid_and_close_to_the_reference(tmp_path):
    cfg = parse_config({}, base_dir=tmp_path)
    assert cfg.source_path is None
    assert cfg.model.vocab_size == 7 and cfg.model.sequence_length == 7
    assert cfg.dataset.patterns.enabled_patterns == ALL_PATTERNS
    assert cfg.signature.neuron_profile_methods == {"mean": {}, "std": {}}
    assert cfg.dataset.patterns.pool_size == 2000
    assert (cfg.dataset.patterns.starts_with_token, cfg.dataset.patterns.ends_with_token) == ("A", "B")
    assert cfg.pipeline.output_dir == tmp_path / "datasets"
    assert isinstance(Config(), Config)  # defaults construct without a context too


def test_null_sections_mean_defaults():
    cfg = parse_config({"hub": None, "metrics": {"tensorboard": None}, "training": {"early_stopping": None}})
    assert cfg.hub.private is False
    assert cfg.metrics.tensorboard.port == 6006
    assert cfg.training.early_stopping.patience == 5


# ---------------------------------------------------------------------------------------------------------
# paths
# ---------------------------------------------------------------------------------------------------------


def test_paths_resolve_relative_to_the_config_folder(tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    path = write(
        tmp_path,
        "signature: {dataset_path: sig/s.json}\npipeline: {output_dir: ../out}\nmetrics: {dir: ./runs}\n",
        "configs/run.yaml",
    )
    cfg = load_config(path)
    assert cfg.signature.dataset_path == tmp_path / "configs/sig/s.json"
    assert cfg.pipeline.output_dir == tmp_path / "out"
    assert cfg.metrics.dir == tmp_path / "configs/runs"
    assert cfg.source_path == path.resolve()


def test_paths_in_a_mapping_resolve_against_base_dir_and_absolute_paths_stay(tmp_path):
    cfg = parse_config({"pipeline": {"output_dir": str(tmp_path / "abs")}}, base_dir=tmp_path / "b")
    assert cfg.pipeline.output_dir == tmp_path / "abs"
    assert cfg.signature.dataset_path == tmp_path / "b/signature_dataset.json"
    assert cfg.signature.dataset_path.is_absolute()


def test_paths_default_to_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert parse_config({}).metrics.dir == tmp_path.resolve() / "training_runs"


# ---------------------------------------------------------------------------------------------------------
# one bad value -> one precise line
# ---------------------------------------------------------------------------------------------------------

BAD = [
    # (config, the line it must produce, or the lines, or a (path, essence) pair when the line is long)
    (
        {"model": {"activation_types": ["relu", "relu6"]}},
        "model.activation_types[1]: 'relu6' is not one of relu, gelu, tanh, sigmoid, leaky_relu",
    ),
    (
        {"model": {"activaton_types": ["relu"]}},
        "model.activaton_types: unknown key (did you mean 'activation_types'?)",
    ),
    ({"model": {"vocab_size": 30}}, "model.vocab_size: 30 is out of range (allowed 5..26)"),
    ({"model": {"sequence_length": 3}}, "model.sequence_length: 3 is out of range (allowed 4..20)"),
    ({"model": {"num_layers": {"min": 9, "max": 6}}}, "model.num_layers: min 9 is greater than max 6"),
    (
        {"model": {"neurons_per_layer": {"max": 2000}}},
        "model.neurons_per_layer.max: 2000 is out of range (allowed 1..1024)",
    ),
    ({"model": {"learning_rate": {"min": 0.02}}}, "model.learning_rate: min 0.02 is greater than max 0.01"),
    (
        {"model": {"learning_rate": {"min": 0}}},
        "model.learning_rate.min: 0 is out of range (allowed > 0 and <= 10)",
    ),
    ({"model": {"dropout_rate": 1.0}}, "model.dropout_rate: 1.0 is out of range (allowed >= 0 and < 1)"),
    ({"model": {"activation_types": []}}, "model.activation_types: is empty; list at least one"),
    (
        {"model": {"activation_types": ["relu", "tanh", "relu"]}},
        "model.activation_types: 'relu' is listed more than once",
    ),
    ({"model": {"precision": "fp8"}}, "model.precision: 'fp8' is not one of float32, float16, bfloat16"),
    (
        {"model": {"quantization": "int2"}},
        "model.quantization: 'int2' is not one of none, int8, int4, binary, ternary",
    ),
    ({"model": {"input_encoding": "onehot"}}, "model.input_encoding: 'onehot' is not one of index, one_hot"),
    ({"model": {"num_layers": 6}}, "model.num_layers: 6 is not a mapping"),
    (
        {"dataset": {"patterns": {"enabled_patterns": ALL_PATTERNS[:3], "min_patterns_per_batch": 4}}},
        [
            "dataset.patterns.min_patterns_per_batch: 4 is more than the 3 enabled patterns",
            "dataset.patterns.max_patterns_per_batch: 5 is more than the 3 enabled patterns",
        ],
    ),
    (
        {"dataset": {"patterns": {"enabled_patterns": ALL_PATTERNS[:3], "min_patterns_per_batch": 2}}},
        "dataset.patterns.max_patterns_per_batch: 5 is more than the 3 enabled patterns",
    ),
    (
        {"dataset": {"patterns": {"min_patterns_per_batch": 4, "max_patterns_per_batch": 3}}},
        "dataset.patterns.min_patterns_per_batch: 4 is greater than max_patterns_per_batch 3",
    ),
    (
        {"model": {"vocab_size": 5, "sequence_length": 7}},
        "dataset.patterns.enabled_patterns: 'no_repeats' has no members at vocab_size 5, sequence_length 7",
    ),
    (
        {"dataset": {"patterns": {"enabled_patterns": ["palindrom"]}}},
        "dataset.patterns.enabled_patterns[0]: 'palindrom' is not a known pattern "
        "(did you mean 'palindrome'?)",
    ),
    (
        {"dataset": {"patterns": {"enabled_patterns": ["xyzzy"]}}},
        ("dataset.patterns.enabled_patterns[0]", "'xyzzy' is not one of all_same, palindrome"),
    ),
    (
        {"dataset": {"patterns": {"enabled_patterns": ["all_same", "all_same"]}}},
        "dataset.patterns.enabled_patterns: 'all_same' is listed more than once",
    ),
    (
        {"dataset": {"patterns": {"enabled_patterns": []}}},
        "dataset.patterns.enabled_patterns: is empty; list at least one",
    ),
    (
        {"dataset": {"patterns": {"target_total_examples": 3000}}},
        "dataset.patterns.target_total_examples: 3000 is greater than max_total_examples 2500",
    ),
    (
        {"dataset": {"patterns": {"samples_per_pattern": {"min": 400}}}},
        (
            "dataset.patterns.max_total_examples",
            "2500 is less than the smallest dataset the config implies, 3000",
        ),
    ),
    (
        {"dataset": {"patterns": {"negative_ratio": -0.5}}},
        "dataset.patterns.negative_ratio: -0.5 is out of range (allowed >= 0)",
    ),
    (
        {"dataset": {"patterns": {"pattern_rows": {"has_majority": 0}}}},
        "dataset.patterns.pattern_rows.has_majority: 0 is out of range (allowed > 0 and <= 100)",
    ),
    (
        {"dataset": {"patterns": {"pattern_rows": {"has_majoriti": 2}}}},
        "dataset.patterns.pattern_rows.has_majoriti: 'has_majoriti' is not a known pattern "
        "(did you mean 'has_majority'?)",
    ),
    (
        {"validation": {"min_pattern_accuracy": 1.5}},
        "validation.min_pattern_accuracy: 1.5 is out of range (allowed 0..1)",
    ),
    (
        {"dataset": {"patterns": {"ends_with_token": "H"}}},
        "dataset.patterns.ends_with_token: 'H' is not in the vocabulary A..G (vocab_size 7)",
    ),
    (
        {"dataset": {"patterns": {"starts_with_token": "a"}}},
        "dataset.patterns.starts_with_token: 'a' is not a single capital letter A..Z",
    ),
    (
        {"dataset": {"patterns": {"pool_size": 0}}},
        "dataset.patterns.pool_size: 0 is out of range (allowed 1..200000)",
    ),
    ({"pipeline": {"random_seed": "abc"}}, "pipeline.random_seed: 'abc' is not an integer"),
    ({"pipeline": {"random_seed": True}}, "pipeline.random_seed: true is not an integer"),
    (
        {"pipeline": {"random_seed": -1}},
        "pipeline.random_seed: -1 is out of range (allowed 0..18446744073709551615)",
    ),
    ({"pipeline": {"max_threads": 2.5}}, "pipeline.max_threads: 2.5 is not an integer"),
    ({"pipeline": {"device": "tpu"}}, "pipeline.device: 'tpu' is not one of auto, cpu, cuda, mps"),
    ({"pipeline": {"pin_memory": "yes"}}, "pipeline.pin_memory: 'yes' is not true or false"),
    ({"pipeline": {"output_dir": 5}}, "pipeline.output_dir: 5 is not a path (expected a non-empty string)"),
    (
        {"training": {"validation_split": 1}},
        "training.validation_split: 1 is out of range (allowed > 0 and < 1)",
    ),
    ({"training": {"epochs": 0}}, "training.epochs: 0 is out of range (allowed 1..10000)"),
    (
        {"training": {"min_degradation_threshold": "0.1"}},
        "training.min_degradation_threshold: '0.1' is not a number",
    ),
    (
        {"staged_training": {"corruption_rate": 0}},
        "staged_training.corruption_rate: 0 is out of range (allowed > 0 and <= 1)",
    ),
    (
        {"staged_training": {"improvement_lr_factor": float("inf")}},
        "staged_training.improvement_lr_factor: inf is not a finite number",
    ),
    (
        {"validation": {"max_other_degradation": 1.5}},
        "validation.max_other_degradation: 1.5 is out of range (allowed 0..1)",
    ),
    (
        {"validation": {"max_negative_degradation": -0.1}},
        "validation.max_negative_degradation: -0.1 is out of range (allowed 0..1)",
    ),
    (
        {"metrics": {"tensorboard": {"port": 70000}}},
        "metrics.tensorboard.port: 70000 is out of range (allowed 1..65535)",
    ),
    (
        {"metrics": {"tensorboard": {"update_freq": "step"}}},
        "metrics.tensorboard.update_freq: 'step' is not one of epoch, batch",
    ),
    (
        {"task_generation": {"include_modification": False}},
        "task_generation: include_modification and include_classification are both false; "
        "at least one must be true",
    ),
    (
        {"hub": {"dataset_name": "just-a-name"}},
        "hub.dataset_name: 'just-a-name' is not of the form owner/name",
    ),
    ({"hub": {"token": 123}}, "hub.token: 123 is not a string"),
    (
        {"signature": {"prompt_format": {"style": "mixed"}}},
        "signature.prompt_format.style: 'mixed' is not one of separate, interwoven",
    ),
    (
        {"signature": {"neuron_profile_methods": {"maen": {}}}},
        "signature.neuron_profile_methods.maen: unknown key (did you mean 'mean'?)",
    ),
    (
        {"signature": {"neuron_profile_methods": {"pca": {"components": 0}}}},
        "signature.neuron_profile_methods.pca.components: 0 is out of range (allowed 1..64)",
    ),
    (
        {"signature": {"neuron_profile_methods": {"entropy": {"bins": 1}}}},
        "signature.neuron_profile_methods.entropy.bins: 1 is out of range (allowed 2..1000)",
    ),
    (
        {"signature": {"neuron_profile_methods": {"svd": {"n_components": 2}}}},
        "signature.neuron_profile_methods.svd.n_components: unknown key (did you mean 'components'?)",
    ),
    (
        {"signature": {"neuron_profile_methods": {"mean": {"bins": 3}}}},
        "signature.neuron_profile_methods.mean.bins: unknown key",
    ),
    (
        {"signature": {"neuron_profile_methods": {}}},
        ("signature.neuron_profile_methods", "no method is enabled; enable at least one of mean, std"),
    ),
    ({"sigature": {}}, "sigature: unknown key (did you mean 'signature'?)"),
    ({"zzz": 1}, ("zzz", "unknown key (known keys: signature, model, dataset, training")),
    ({1: {}}, "(top level): key 1 is not a string"),
]


@pytest.mark.parametrize("data, expected", BAD, ids=[str(i) for i in range(len(BAD))])
def test_a_bad_config_names_the_key_the_value_and_what_is_allowed(data, expected):
    problems = problems_of(data)
    if isinstance(expected, str):
        assert problems == [expected]
    elif isinstance(expected, list):
        assert problems == expected
    else:
        path, essence = expected
        assert len(problems) == 1
        assert problems[0].startswith(f"{path}: ") and essence in problems[0]


def test_many_problems_are_all_reported_at_once():
    data = {
        "model": {
            "vocab_size": 30,
            "activation_types": ["relu", "relu6"],
            "num_layers": {"min": 9, "max": 6},
        },
        "dataset": {"patterns": {"enabled_patterns": ["palindrom"], "target_total_examples": 3000}},
        "pipeline": {"random_seed": "abc", "devise": "cpu"},
        "task_generation": {"include_modification": False},
        "hub": {"dataset_name": "nope"},
    }
    problems = problems_of(data)
    expected = [
        "model.vocab_size: 30 is out of range",
        "model.activation_types[1]: 'relu6' is not one of",
        "dataset.patterns.enabled_patterns[0]: 'palindrom' is not a known pattern",
        "pipeline.random_seed: 'abc' is not an integer",
        "pipeline.devise: unknown key (did you mean 'device'?)",
        "hub.dataset_name: 'nope' is not of the form owner/name",
        "model.num_layers: min 9 is greater than max 6",
        "dataset.patterns.target_total_examples: 3000 is greater than max_total_examples 2500",
        "task_generation: include_modification and include_classification are both false",
    ]
    for line in expected:
        assert any(p.startswith(line) for p in problems), (line, problems)
    assert len(problems) == len(expected)


def test_a_cross_key_check_is_skipped_when_a_key_it_reads_is_bad():
    # vocab_size 30 is reported; 'Z' is a fine letter, and is not also blamed for lying outside a vocabulary
    problems = problems_of({"model": {"vocab_size": 30}, "dataset": {"patterns": {"starts_with_token": "Z"}}})
    assert problems == ["model.vocab_size: 30 is out of range (allowed 5..26)"]


def test_token_outside_vocabulary_and_empty_pattern_are_both_reported():
    problems = problems_of({"model": {"vocab_size": 5}, "dataset": {"patterns": {"starts_with_token": "F"}}})
    assert problems == [
        "dataset.patterns.starts_with_token: 'F' is not in the vocabulary A..E (vocab_size 5)",
        "dataset.patterns.enabled_patterns: 'no_repeats' has no members at vocab_size 5, sequence_length 7",
    ]


def test_smallest_dataset_check_counts_negatives_per_positive():
    # 10 rows for each of 5 patterns, and 0.8 negatives per positive: 50 + 40 = 90 rows at least
    ok = {
        "dataset": {
            "patterns": {"negative_ratio": 0.8, "max_total_examples": 90, "target_total_examples": 90}
        }
    }
    parse_config(ok)
    ok["dataset"]["patterns"]["max_total_examples"] = 89
    ok["dataset"]["patterns"]["target_total_examples"] = 89
    (problem,) = problems_of(ok)
    assert problem.startswith("dataset.patterns.max_total_examples: 89 is less than") and ", 90 (" in problem


def test_negative_ratio_takes_the_seed_codes_meaning_and_any_value_from_zero():
    """The seed project's later configs write `negative_ratio: 1  # 1 means 1:1`; they load."""
    for ratio in (0, 0.5, 1, 3):
        assert (
            parse_config({"dataset": {"patterns": {"negative_ratio": ratio}}}).dataset.patterns.negative_ratio
            == ratio
        )
    # no upper bound of its own: a large ratio is held only by the dataset size it implies
    roomy = {"max_total_examples": 100000, "target_total_examples": 100000}
    patterns = parse_config({"dataset": {"patterns": {"negative_ratio": 500, **roomy}}}).dataset.patterns
    assert patterns.negative_ratio == 500
    for huge in (500, 1e308):  # 1e308 negatives per positive overflow a float: still one message
        (problem,) = problems_of({"dataset": {"patterns": {"negative_ratio": huge}}})
        assert problem.startswith("dataset.patterns.max_total_examples: 2500 is less than")


def test_did_you_mean_only_when_something_is_close():
    assert problems_of({"model": {"vocab_sise": 7}}) == [
        "model.vocab_sise: unknown key (did you mean 'vocab_size'?)"
    ]
    (line,) = problems_of({"model": {"qqqqqq": 7}})
    assert "did you mean" not in line and "known keys: num_layers" in line


# ---------------------------------------------------------------------------------------------------------
# types: strict where lax would surprise
# ---------------------------------------------------------------------------------------------------------


def test_ints_are_fine_floats_and_integral_floats_are_fine_ints():
    cfg = parse_config({"staged_training": {"improvement_lr_factor": 2}, "training": {"epochs": 30.0}})
    assert cfg.staged_training.improvement_lr_factor == 2.0
    assert isinstance(cfg.staged_training.improvement_lr_factor, float)
    assert cfg.training.epochs == 30 and isinstance(cfg.training.epochs, int)


@pytest.mark.parametrize("value", [True, "3", 2.5, None, [3]])
def test_ints_reject_bools_strings_fractions(value):
    (line,) = problems_of({"training": {"epochs": value}})
    assert line.startswith("training.epochs: ") and line.endswith("is not an integer")


@pytest.mark.parametrize("value", [False, "0.1", None])
def test_floats_reject_bools_and_strings(value):
    (line,) = problems_of({"validation": {"min_pattern_improvement": value}})
    assert line.endswith("is not a number")


def test_bools_reject_numbers():
    assert problems_of({"hub": {"private": 1}}) == ["hub.private: 1 is not true or false"]


# ---------------------------------------------------------------------------------------------------------
# neuron profile methods
# ---------------------------------------------------------------------------------------------------------


def test_profile_method_params_get_defaults_and_null_means_defaults():
    methods = {"pca": None, "sparsity": {}, "entropy": {"bins": 7}, "mean": None, "fourier": {}}
    cfg = parse_config({"signature": {"neuron_profile_methods": methods}})
    assert cfg.signature.neuron_profile_methods == {
        "mean": {},
        "sparsity": {"threshold": 1e-6},
        "pca": {"components": 3},
        "entropy": {"bins": 7},
        "fourier": {"n_frequencies": 1},
    }


def test_profile_methods_come_in_canonical_order():
    cfg = parse_config({"signature": {"neuron_profile_methods": {"std": {}, "pattern_wise": {}, "mean": {}}}})
    assert list(cfg.signature.neuron_profile_methods) == ["mean", "std", "pattern_wise"]


def test_every_profile_method_is_accepted_with_its_defaults():
    cfg = parse_config({"signature": {"neuron_profile_methods": dict.fromkeys(PROFILE_METHOD_DEFAULTS)}})
    assert cfg.signature.neuron_profile_methods == PROFILE_METHOD_DEFAULTS


def test_no_methods_at_all_is_an_error():
    (line,) = problems_of({"signature": {"neuron_profile_methods": None}})
    assert line.startswith("signature.neuron_profile_methods: no method is enabled")


# ---------------------------------------------------------------------------------------------------------
# YAML files
# ---------------------------------------------------------------------------------------------------------


def test_yaml_syntax_error_gives_line_and_column(tmp_path):
    path = write(tmp_path, "model:\n  vocab_size: 7\n  activation_types: [relu, gelu\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    (line,) = info.value.problems
    assert line.startswith("YAML syntax error at line 4, column 1:")
    assert info.value.source == str(path)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.yaml")
    assert info.value.problems == ["file not found"]
    assert info.value.source == str(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("- model\n- hub\n", "(top level): ['model', 'hub'] is not a mapping of sections"),
        ("just text\n", "(top level): 'just text' is not a mapping of sections"),
        ("", "(top level): the file is empty"),
    ],
)
def test_top_level_must_be_a_mapping(tmp_path, text, expected):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    (line,) = info.value.problems
    assert line.startswith(expected)


def test_duplicate_keys_are_reported_with_other_problems(tmp_path):
    path = write(tmp_path, "model:\n  vocab_size: 7\n  vocab_size: 8\npipeline:\n  random_seed: x\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems == [
        "model.vocab_size: duplicate key (line 2 and line 3)",
        "pipeline.random_seed: 'x' is not an integer",
    ]


@pytest.mark.parametrize(
    "text, path, tag",
    [
        ("model:\n  activation_types: !!set {relu, gelu}\n", "model.activation_types", "!!set"),
        (
            "model:\n  vocab_size: !!python/object:os.system ls\n",
            "model.vocab_size",
            "!!python/object:os.system",
        ),
        ("hub:\n  dataset_name: 2024-01-01\n", "hub.dataset_name", "!!timestamp"),
        ("model:\n  activation_types: !!binary aGVsbG8=\n", "model.activation_types", "!!binary"),
    ],
)
def test_yaml_tags_that_make_other_values_than_plain_ones_are_refused(tmp_path, text, path, tag):
    """A !!set's order changes with PYTHONHASHSEED, and the examples and config hash with it."""
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    (line,) = info.value.problems
    assert line.startswith(f"{path}: the YAML tag {tag} makes a value a config cannot hold (line 2)")


def test_plain_tags_and_recursive_aliases_give_values_or_one_clear_problem(tmp_path):
    assert load_config(write(tmp_path, "model:\n  vocab_size: !!int '7'\n")).model.vocab_size == 7
    with pytest.raises(ConfigError):  # a list holding itself: no recursion error, a problem
        load_config(write(tmp_path, "model:\n  activation_types: &a [relu, *a]\n"))


def test_yaml_exponent_floats_are_numbers(tmp_path):
    path = write(tmp_path, "signature:\n  neuron_profile_methods:\n    sparsity: {threshold: 1e-3}\n")
    assert load_config(path).signature.neuron_profile_methods["sparsity"]["threshold"] == 0.001


def test_file_errors_name_the_file(tmp_path):
    path = write(tmp_path, "model: {vocab_size: 99}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.source == str(path)
    assert str(path) in str(info.value) and "model.vocab_size: 99 is out of range" in str(info.value)


# ---------------------------------------------------------------------------------------------------------
# hash, space
# ---------------------------------------------------------------------------------------------------------


def test_config_hash_is_stable_and_follows_values(tmp_path):
    data = {"model": {"vocab_size": 8, "activation_types": ["tanh"]}, "pipeline": {"random_seed": 3}}
    first = parse_config(data, base_dir=tmp_path).config_hash
    assert len(first) == 64 and int(first, 16) >= 0
    assert parse_config(copy.deepcopy(data), base_dir=tmp_path).config_hash == first
    reordered = {"pipeline": {"random_seed": 3}, "model": {"activation_types": ["tanh"], "vocab_size": 8}}
    assert parse_config(reordered, base_dir=tmp_path).config_hash == first
    # spelling a default out does not change the config
    explicit = copy.deepcopy(data)
    explicit["model"]["sequence_length"] = 7
    assert parse_config(explicit, base_dir=tmp_path).config_hash == first
    changed = copy.deepcopy(data)
    changed["pipeline"]["random_seed"] = 4
    assert parse_config(changed, base_dir=tmp_path).config_hash != first


def test_config_hash_is_the_same_from_yaml_and_from_a_dict(tmp_path, reference):
    raw = yaml.safe_load(reference.read_text())
    from_dict = parse_config(raw, base_dir=reference.parent)
    assert from_dict.config_hash == load_config(reference).config_hash


def test_hub_token_is_kept_but_not_dumped_or_hashed():
    base = parse_config({})
    with_token = parse_config({"hub": {"token": "hf_secret"}})
    assert with_token.hub.token == "hf_secret"
    assert "hf_secret" not in str(with_token.model_dump()) and "hf_secret" not in repr(with_token)
    assert with_token.config_hash == base.config_hash


def test_space_follows_model_and_tokens():
    cfg = parse_config(
        {
            "model": {"vocab_size": 12, "sequence_length": 9},
            "dataset": {"patterns": {"starts_with_token": "K"}},
        }
    )
    assert cfg.space == SequenceSpace(12, 9, starts_with_token=10, ends_with_token=1)


# ---------------------------------------------------------------------------------------------------------
# properties over many configs
# ---------------------------------------------------------------------------------------------------------

KNOWN = {
    "": SECTIONS,
    "model": [
        "num_layers",
        "neurons_per_layer",
        "activation_types",
        "dropout_rate",
        "vocab_size",
        "sequence_length",
        "precision",
        "quantization",
        "learning_rate",
        "input_encoding",
        "sparse_init",
    ],
    "pipeline": [
        "output_dir",
        "random_seed",
        "device",
        "checkpoint_interval",
        "max_threads",
        "num_workers",
        "pin_memory",
    ],
    "metrics.tensorboard": ["enabled", "auto_launch", "port", "update_freq"],
    "dataset.patterns": [
        "enabled_patterns",
        "min_patterns_per_batch",
        "max_patterns_per_batch",
        "samples_per_pattern",
        "negative_ratio",
        "target_total_examples",
        "max_total_examples",
        "starts_with_token",
        "ends_with_token",
        "pool_size",
        "pattern_rows",
    ],
}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    where=st.sampled_from(sorted(KNOWN)),
    key=st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=20),
)
def test_unknown_keys_are_always_rejected(where, key):
    if key in KNOWN[where]:
        return
    data = {key: 1} if not where else nested(where, {key: 1})
    path = f"{where}.{key}" if where else key
    problems = problems_of(data)
    assert len(problems) == 1
    assert problems[0].startswith(f"{path}: unknown key")


@settings(max_examples=60, deadline=None)
@given(
    layers=st.tuples(st.integers(1, 32), st.integers(1, 32)),
    width=st.tuples(st.integers(1, 1024), st.integers(1, 1024)),
    lr=st.tuples(
        st.floats(1e-6, 1.0, allow_nan=False, allow_infinity=False),
        st.floats(1e-6, 1.0, allow_nan=False, allow_infinity=False),
    ),
)
def test_ranges_are_accepted_exactly_when_min_is_at_most_max(layers, width, lr):
    data = {
        "model": {
            "num_layers": {"min": layers[0], "max": layers[1]},
            "neurons_per_layer": {"min": width[0], "max": width[1]},
            "learning_rate": {"min": lr[0], "max": lr[1]},
        }
    }
    expected = []
    for key, (lo, hi) in [("num_layers", layers), ("neurons_per_layer", width), ("learning_rate", lr)]:
        if lo > hi:
            expected.append(f"model.{key}: min {lo!r} is greater than max {hi!r}")
    largest = num_parameters(ModelSpec(7, 7, layers[1], width[1], "relu"))
    if largest > MAX_PARAMETERS:
        expected.append(
            f"model.neurons_per_layer.max: {width[1]} units in {layers[1]} layers (num_layers.max) make a "
            f"model of {largest:,} parameters, more than the {MAX_PARAMETERS:,} a run can hold"
        )
    if expected:
        assert sorted(problems_of(data)) == sorted(expected)
    else:
        cfg = parse_config(data)
        assert (cfg.model.num_layers.min, cfg.model.num_layers.max) == layers
        assert (cfg.model.learning_rate.min, cfg.model.learning_rate.max) == lr


@settings(max_examples=40, deadline=None)
@given(vocab=st.integers(-5, 40), length=st.integers(-2, 30))
def test_vocab_and_length_bounds(vocab, length):
    data = {"model": {"vocab_size": vocab, "sequence_length": length}}
    if 5 <= vocab <= 26 and 4 <= length <= 20:
        try:
            cfg = parse_config(data)
        except ConfigError as e:
            # only a pattern with no members may object (no_repeats when length > vocab)
            assert all("has no members" in p for p in e.problems)
        else:
            assert cfg.space.vocab_size == vocab and cfg.space.length == length
    else:
        problems = problems_of(data)
        assert any(p.startswith(("model.vocab_size: ", "model.sequence_length: ")) for p in problems)
        assert not any("has no members" in p for p in problems)


@settings(max_examples=30, deadline=None)
@given(patterns=st.lists(st.sampled_from(ALL_PATTERNS), min_size=1, max_size=15, unique=True))
def test_any_set_of_patterns_is_accepted_when_batches_fit(patterns):
    n = len(patterns)
    data = {
        "dataset": {
            "patterns": {
                "enabled_patterns": patterns,
                "min_patterns_per_batch": 1,
                "max_patterns_per_batch": n,
            }
        }
    }
    cfg = parse_config(data)
    assert cfg.dataset.patterns.enabled_patterns == patterns


# --- maxima: values that pass validation must not break a run later ---------------------------------

from weightzoo import config as config_module  # noqa: E402

BOUNDED = [
    ("pipeline.checkpoint_interval", config_module.MAX_COHORT),
    ("pipeline.max_threads", config_module.MAX_THREADS),
    ("pipeline.num_workers", config_module.MAX_THREADS),
    ("pipeline.random_seed", config_module.MAX_SEED),
    ("dataset.output_dataset_length", config_module.MAX_DATASET),
    ("dataset.patterns.pool_size", config_module.MAX_POOL),
    ("dataset.patterns.max_total_examples", config_module.MAX_ROWS),
    ("training.epochs", config_module.MAX_EPOCHS),
    ("training.batch_size", config_module.MAX_ROWS),
    ("training.early_stopping.patience", config_module.MAX_EPOCHS),
    ("staged_training.improvement_epochs", config_module.MAX_EPOCHS),
    ("staged_training.max_degraded_epochs", config_module.MAX_EPOCHS),
    ("validation.test_set_size", config_module.MAX_ROWS),
    ("signature.neuron_profile_methods.clustering.n_clusters", config_module.MAX_COMPONENTS),
    ("signature.neuron_profile_methods.pca.components", config_module.MAX_COMPONENTS),
    ("signature.neuron_profile_methods.svd.components", config_module.MAX_COMPONENTS),
    ("signature.neuron_profile_methods.entropy.bins", config_module.MAX_BINS),
    ("signature.neuron_profile_methods.fourier.n_frequencies", config_module.MAX_FREQUENCIES),
]


def _nested(path: str, value) -> dict:
    data: dict = {}
    node = data
    *parents, last = path.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return data


@pytest.mark.parametrize("path, most", BOUNDED, ids=[p for p, _ in BOUNDED])
def test_every_size_and_count_has_a_stated_maximum(path, most):
    problems = problems_of(_nested(path, most + 1))
    assert any(p.startswith(f"{path}: ") and "out of range" in p and f"{most}" in p for p in problems), (
        problems
    )
    try:
        parse_config(_nested(path, most))
    except ConfigError as e:  # another key may object to so large a value; this one must not
        assert not any(p.startswith(f"{path}: ") for p in e.problems), e.problems


def test_a_huge_checkpoint_interval_is_refused_at_once():
    assert problems_of({"pipeline": {"checkpoint_interval": 1e30}}) == [
        "pipeline.checkpoint_interval: 1e+30 is out of range (allowed 1..100000)"
    ]


def test_a_model_too_large_to_train_is_refused():
    data = {"model": {"num_layers": {"min": 1, "max": 32}, "neurons_per_layer": {"min": 1, "max": 1024}}}
    [problem] = problems_of(data)
    assert problem.startswith("model.neurons_per_layer.max: 1024 units in 32 layers")


def _yaml_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("depth", [33, 500, 5000])
def test_yaml_nested_too_deep_is_one_line(tmp_path, depth):
    for text in (
        "model: " + "[" * depth + "]" * depth + "\n",
        "model: " + "{a: " * depth + "1" + "}" * depth,
    ):
        with pytest.raises(ConfigError) as e:
            load_config(_yaml_file(tmp_path, text))
        assert len(e.value.problems) == 1 and "nested more than 32 levels deep" in e.value.problems[0]


def test_an_integer_of_thousands_of_digits_is_one_line(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(_yaml_file(tmp_path, "pipeline:\n  random_seed: " + "9" * 4301 + "\n"))
    assert e.value.problems == [
        "pipeline.random_seed: an integer of 4301 characters is out of range for every key (line 2)"
    ]


def test_a_home_folder_of_an_unknown_user_is_one_line(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(_yaml_file(tmp_path, "pipeline:\n  output_dir: ~no-such-user-here/x\n"))
    assert e.value.problems == [
        "pipeline.output_dir: '~no-such-user-here/x': no home folder is known for ~no-such-user-here"
    ]


def test_a_path_no_file_system_allows_is_one_line(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(_yaml_file(tmp_path, f"pipeline:\n  output_dir: out/{'a' * 300}\n"))
    [problem] = e.value.problems
    assert problem.startswith("pipeline.output_dir: 'out/aaaa") and "longer than 255 bytes" in problem
    assert len(problem) < 200


@pytest.mark.parametrize(
    "data",
    [
        {"model": {"activation_types": ["x" * 100_000]}},
        {"hub": {"dataset_name": "a" * 100_000}},
        {"signature": {"prompt_format": {"tokenizer": "t" * 100_000}}},
        {"pipeline": {"output_dir": "d" * 100_000}},
        {"model": {"vocab_size": "7" * 100_000}},
        {"x" * 100_000: 1},
    ],
)
def test_error_lines_quote_values_cut_short(data):
    problems = problems_of(data)
    assert problems and all(len(p) < 300 for p in problems), [len(p) for p in problems]
