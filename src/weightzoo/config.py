"""The run's YAML config: one small pydantic model per section, and validation that reports every problem.

`load_config(path)` reads a YAML file; `parse_config(mapping)` does the same for a dict. Both return a
`Config` or raise `ConfigError` holding one line per problem, each naming the key path, the bad value and
what is allowed. Validation runs in two passes:

1. per key (pydantic): types, ranges, allowed values, unknown keys (with a did-you-mean);
2. across keys (`_cross_field_problems`): min <= max, batch sizes against the enabled patterns, the
   dataset limits, tokens inside the vocabulary, patterns that have members in the sequence space.

A cross-key check is skipped when a key it reads already failed the first pass, so one mistake is never
reported twice. Paths in the config are resolved against the config file's folder. docs/config.md
describes every key.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import math
import re
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml
from pydantic import (
    AfterValidator,
    AllowInfNan,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    Strict,
    ValidationError,
    ValidationInfo,
    model_validator,
    with_config,
)
from pydantic_core import PydanticCustomError
from typing_extensions import TypedDict, is_typeddict

from weightzoo.activations import NAMES as ACTIVATION_NAMES
from weightzoo.errors import ConfigError, shorten
from weightzoo.space import LETTERS, SequenceSpace

__all__ = ["Config", "load_config", "parse_config", "PROFILE_METHOD_DEFAULTS"]


# ---------------------------------------------------------------------------------------------------------
# Value types. Strict where pydantic's lax mode would surprise: no bool or "3" for an int, no 2.5 for an int,
# no string for a number or a bool. An int is a fine float, and 1000.0 is a fine int.
# ---------------------------------------------------------------------------------------------------------


def _problem(message: str, *, value: Any = None, **text: str) -> PydanticCustomError:
    """A per-key problem whose message is already in our format (the key path is added later).

    `{value}` in the message is the bad value as written in YAML; other fields are plain text.
    """
    return PydanticCustomError("weightzoo", message, {"value": _fmt(value), **text})


# Maxima of the sizes and counts a run can hold: past these, a run would run out of memory or time long
# before it wrote anything (a cohort of 1e30 indices, 5,000 cluster centres per neuron), so they are
# config errors. docs/config.md states each one.
MAX_ROWS = 100_000  # rows of one subject dataset, a minibatch, a held-out set
MAX_POOL = 200_000  # sequences kept per pattern pool (each worker holds every pool)
MAX_DATASET = 10_000_000  # accepted examples of one dataset
MAX_EPOCHS = 10_000
MAX_COHORT = 100_000  # examples per cohort (shards are written a work unit at a time)
MAX_THREADS = 1024
MAX_SEED = 2**64 - 1
MAX_COMPONENTS = 64  # values per neuron of pca, svd and clustering
MAX_BINS = 1000
MAX_FREQUENCIES = 512
MAX_PARAMETERS = 1_000_000  # of the largest subject model the ranges allow
MAX_DEPTH = 32  # levels of YAML nesting (the config itself needs four)
MAX_TEXT = 1000  # characters of a string value
MAX_PATH = 3800  # characters of a resolved path, leaving room under PATH_MAX (4096) for the files below it
MAX_NAME = 255  # bytes of one path component (NAME_MAX)


def _short_text(value: str) -> str:
    if len(value) > MAX_TEXT:
        raise _problem("is {n} characters long (at most {most})", n=str(len(value)), most=str(MAX_TEXT))
    return value


def _integral_float_to_int(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


Int = Annotated[int, BeforeValidator(_integral_float_to_int), Strict()]
Float = Annotated[float, Strict(), AllowInfNan(False)]
Bool = Annotated[bool, Strict()]
Str = Annotated[str, Strict()]


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


def between(
    lo: float | None = None, hi: float | None = None, *, lo_open: bool = False, hi_open: bool = False
) -> AfterValidator:
    """A range check whose error says what is allowed: '5..26', '>= 1', '>= 0 and < 1', ..."""
    if lo is not None and hi is not None and not lo_open and not hi_open:
        allowed = f"{_num(lo)}..{_num(hi)}"
    else:
        parts = []
        if lo is not None:
            parts.append(f"{'>' if lo_open else '>='} {_num(lo)}")
        if hi is not None:
            parts.append(f"{'<' if hi_open else '<='} {_num(hi)}")
        allowed = " and ".join(parts)

    def check(value: float) -> float:
        too_low = lo is not None and (value < lo or (lo_open and value == lo))
        too_high = hi is not None and (value > hi or (hi_open and value == hi))
        if too_low or too_high:
            # its own kind, so the message can show the value as written (0, not the 0.0 it became)
            raise PydanticCustomError(
                "weightzoo_range", "out of range (allowed {allowed})", {"allowed": allowed}
            )
        return value

    return AfterValidator(check)


def at_least(lo: float) -> AfterValidator:
    return between(lo)


def _unique(items: list) -> list:
    seen = set()
    for item in items:
        if item in seen:
            raise _problem("{value} is listed more than once", value=item)
        seen.add(item)
    return items


def _non_empty(items: Any) -> Any:
    if not items:
        raise _problem("is empty; list at least one")
    return items


def _path_string(value: Any) -> Any:
    if isinstance(value, Path):
        return value
    if not isinstance(value, str) or not value.strip():
        raise _problem("{value} is not a path (expected a non-empty string)", value=value)
    if "\x00" in value:
        raise _problem("{value} is not a path (it holds a NUL character)", value=value)
    try:
        path = Path(value).expanduser()
    except RuntimeError as e:  # ~name of a user this machine does not know
        raise _problem(
            "{value}: no home folder is known for {user}", value=value, user=value.split("/")[0]
        ) from e
    if len(str(path)) > MAX_PATH:
        raise _problem("is {n} characters long (at most {most})", n=str(len(str(path))), most=str(MAX_PATH))
    for part in path.parts:
        if len(part.encode("utf-8", "surrogateescape")) > MAX_NAME:
            raise _problem(
                "{value}: a folder or file name in it is longer than {most} bytes (no file system allows it)",
                value=value,
                most=str(MAX_NAME),
            )
    return path


def _capital_letter(value: str) -> str:
    if len(value) != 1 or value not in LETTERS:
        raise _problem("{value} is not a single capital letter A..Z", value=value)
    return value


_HUB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


def _hub_name(value: str | None) -> str | None:
    if value is not None and len(value) > 200:
        raise _problem("is {n} characters long (at most 200)", n=str(len(value)))
    if value is not None and not _HUB_NAME.match(value):
        raise _problem("{value} is not of the form owner/name", value=value)
    return value


def _pattern_table() -> dict:
    from weightzoo.patterns import PATTERNS  # imported late: patterns imports numpy and knows nothing of us

    return PATTERNS


def _known_pattern(name: str) -> str:
    names = list(_pattern_table())
    if name not in names:
        close = difflib.get_close_matches(name, names, n=1)
        if close:
            raise _problem(
                "{value} is not a known pattern (did you mean {close}?)", value=name, close=repr(close[0])
            )
        raise _problem("{value} is not one of {allowed}", value=name, allowed=", ".join(names))
    return name


Path_ = Annotated[Path, BeforeValidator(_path_string)]
Letter = Annotated[Str, AfterValidator(_capital_letter)]
Activation = Literal[ACTIVATION_NAMES]  # type: ignore[valid-type]
PatternName = Annotated[Str, AfterValidator(_known_pattern)]


class Section(BaseModel):
    """A YAML mapping: unknown keys are errors, and an empty (null) mapping means 'all defaults'."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _null_means_defaults(cls, data: Any) -> Any:
        return {} if data is None else data


# ---------------------------------------------------------------------------------------------------------
# signature
# ---------------------------------------------------------------------------------------------------------

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


def _null_is_empty(value: Any) -> Any:
    return {} if value is None else value


def _some_method(methods: dict) -> dict:
    if not methods:
        raise _problem("no method is enabled; enable at least one of {allowed}", allowed=_ALL_METHODS)
    return methods


_ALL_METHODS = ", ".join(PROFILE_METHOD_DEFAULTS)


class PromptFormat(Section):
    style: Literal["separate", "interwoven"] = "separate"
    decimals: Annotated[Int, between(1, 8)] = 4
    compact_numbers: Bool = True
    tokenizer: Annotated[Str, AfterValidator(_short_text)] | None = None


class SignatureSection(Section):
    dataset_path: Path_ = Path("signature_dataset.json")
    # method name -> params with defaults filled in, e.g. {"mean": {}, "pca": {"components": 3}}
    neuron_profile_methods: Annotated[
        ProfileMethods, BeforeValidator(_null_is_empty), AfterValidator(_some_method)
    ] = Field(default_factory=lambda: {"mean": {}, "std": {}})
    prompt_format: PromptFormat = Field(default_factory=PromptFormat)


# ---------------------------------------------------------------------------------------------------------
# model
# ---------------------------------------------------------------------------------------------------------


class LayerRange(Section):
    min: Annotated[Int, between(1, 32)] = 6
    max: Annotated[Int, between(1, 32)] = 9


class WidthRange(Section):
    min: Annotated[Int, between(1, 1024)] = 25
    max: Annotated[Int, between(1, 1024)] = 40


class LearningRateRange(Section):
    min: Annotated[Float, between(0, 10, lo_open=True)] = 0.001
    max: Annotated[Float, between(0, 10, lo_open=True)] = 0.01


class ModelSection(Section):
    num_layers: LayerRange = Field(default_factory=LayerRange)
    neurons_per_layer: WidthRange = Field(default_factory=WidthRange)
    activation_types: Annotated[list[Activation], AfterValidator(_non_empty), AfterValidator(_unique)] = [
        "relu",
        "gelu",
    ]
    dropout_rate: Annotated[Float, between(0, 1, hi_open=True)] = 0.0
    vocab_size: Annotated[Int, between(5, 26)] = 7
    sequence_length: Annotated[Int, between(4, 20)] = 7
    precision: Literal["float32", "float16", "bfloat16"] = "float32"
    quantization: Literal["none", "int8", "int4", "binary", "ternary"] = "none"
    learning_rate: LearningRateRange = Field(default_factory=LearningRateRange)
    input_encoding: Literal["index", "one_hot"] = "index"
    # each first-layer unit starts with weights from this many sequence positions (null: all of them)
    sparse_init: Annotated[Int, between(1, 20)] | None = None


# ---------------------------------------------------------------------------------------------------------
# dataset
# ---------------------------------------------------------------------------------------------------------


class SampleCount(Section):
    min: Annotated[Int, between(1, MAX_ROWS)] = 10


class PatternsSection(Section):
    """`dataset.patterns`: which patterns, how many per model, and how many rows each gets."""

    enabled_patterns: Annotated[list[PatternName], AfterValidator(_non_empty), AfterValidator(_unique)] = (
        Field(default_factory=lambda: list(_pattern_table()))
    )
    min_patterns_per_batch: Annotated[Int, between(1, 15)] = 2
    max_patterns_per_batch: Annotated[Int, between(1, 15)] = 5
    samples_per_pattern: SampleCount = Field(default_factory=SampleCount)
    # negatives per positive, as the seed's code reads it (0.5: one negative for two positives)
    negative_ratio: Annotated[Float, between(0, 100)] = 0.5
    target_total_examples: Annotated[Int, between(1, MAX_ROWS)] = 500
    max_total_examples: Annotated[Int, between(1, MAX_ROWS)] = 2500
    starts_with_token: Letter = "A"
    ends_with_token: Letter = "B"
    pool_size: Annotated[Int, between(1, MAX_POOL)] = 2000
    # pattern -> multiplier of its share of a model's positive rows (default 1): harder patterns need
    # more distinct rows to be learned (see docs/design.md, "Subject models and their training")
    pattern_rows: dict[PatternName, Annotated[Float, between(0, 100, lo_open=True)]] = Field(
        default_factory=dict
    )

    # pattern -> multiplier of the whole dataset of a model that selects it (the largest of its
    # patterns' applies, default 1): some patterns need many more distinct rows than the others
    pattern_dataset_factor: dict[PatternName, Annotated[Float, between(1, 100)]] = Field(default_factory=dict)

    def row_weights(self, selected: tuple[str, ...]) -> tuple[float, ...]:
        """Each selected pattern's multiplier of its share of positive rows."""
        return tuple(float(self.pattern_rows.get(name, 1.0)) for name in selected)

    def dataset_factor(self, selected: tuple[str, ...]) -> float:
        """How many times `target_total_examples` rows a model with these patterns gets."""
        return max((float(self.pattern_dataset_factor.get(name, 1.0)) for name in selected), default=1.0)

    def total_rows(self, selected: tuple[str, ...]) -> int:
        """The rows a model with these patterns aims at, before `max_total_examples`."""
        return round(self.target_total_examples * self.dataset_factor(selected))


class DatasetSection(Section):
    output_dataset_length: Annotated[Int, between(1, MAX_DATASET)] = 1000
    patterns: PatternsSection = Field(default_factory=PatternsSection)


# ---------------------------------------------------------------------------------------------------------
# training, staged_training, validation
# ---------------------------------------------------------------------------------------------------------


class EarlyStopping(Section):
    patience: Annotated[Int, between(1, MAX_EPOCHS)] = 5
    min_delta: Annotated[Float, between(0, 1)] = 0.0


class TrainingSection(Section):
    epochs: Annotated[Int, between(1, MAX_EPOCHS)] = 20
    batch_size: Annotated[Int, between(1, MAX_ROWS)] = 128
    early_stopping: EarlyStopping = Field(default_factory=EarlyStopping)
    min_degradation_threshold: Annotated[Float, between(0, 1)] = 0.05
    validation_split: Annotated[Float, between(0, 1, lo_open=True, hi_open=True)] = 0.2
    standardize_inputs: Bool = True


class StagedTrainingSection(Section):
    max_degraded_epochs: Annotated[Int, between(1, MAX_EPOCHS)] = 10
    min_improvement_threshold: Annotated[Float, between(0, 1, hi_open=True)] = 0.05
    improvement_epochs: Annotated[Int, between(1, MAX_EPOCHS)] = 10
    improvement_lr_factor: Annotated[Float, between(0, 1000, lo_open=True)] = 1.0
    corruption_rate: Annotated[Float, between(0, 1, lo_open=True)] = 0.3
    stage2_watch: Literal["loss", "target"] = "loss"


class ValidationSection(Section):
    pattern_specific: Bool = True
    min_pattern_improvement: Annotated[Float, between(0, 1)] = 0.05
    max_other_degradation: Annotated[Float, between(0, 1)] = 0.02
    # null: negatives are held to max_other_degradation; a number gives them a limit of their own
    max_negative_degradation: Annotated[Float, between(0, 1)] | None = None
    test_set_size: Annotated[Int, between(1, MAX_ROWS)] = 100
    # The quality gate: the improved model's held-out recall of every selected pattern, and its
    # specificity, must reach these (0 turns a check off); see validation.py
    min_pattern_accuracy: Annotated[Float, between(0, 1)] = 0.85
    min_negative_accuracy: Annotated[Float, between(0, 1)] = 0.85


# ---------------------------------------------------------------------------------------------------------
# pipeline, metrics, task_generation, hub
# ---------------------------------------------------------------------------------------------------------


class PipelineSection(Section):
    output_dir: Path_ = Path("datasets")
    random_seed: Annotated[Int, between(0, MAX_SEED)] = 42
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    checkpoint_interval: Annotated[Int, between(1, MAX_COHORT)] = 1000
    max_threads: Annotated[Int, between(1, MAX_THREADS)] = 4
    num_workers: Annotated[Int, between(0, MAX_THREADS)] = 4
    pin_memory: Bool = True
    # Where work units run (executors.py): worker processes here, or Ray tasks
    backend: Literal["local", "ray"] = "local"
    ray_address: Annotated[Str, AfterValidator(_short_text)] | None = None  # null: start a local Ray
    ray_cpus_per_task: Annotated[Float, between(0, 1024, lo_open=True)] = 1.0
    ray_gpus_per_task: Annotated[Float, between(0, 64)] = 0.0


class TensorBoard(Section):
    enabled: Bool = False
    auto_launch: Bool = False
    port: Annotated[Int, between(1, 65535)] = 6006
    update_freq: Literal["epoch", "batch"] = "epoch"


class Checkpoint(Section):
    save_every_epoch: Bool = False
    save_optimizer_state: Bool = False


class MetricsSection(Section):
    dir: Path_ = Path("training_runs")
    tensorboard: TensorBoard = Field(default_factory=TensorBoard)
    checkpoint: Checkpoint = Field(default_factory=Checkpoint)


class TaskGenerationSection(Section):
    include_modification: Bool = True
    include_classification: Bool = False


class HubSection(Section):
    dataset_name: Annotated[Str | None, AfterValidator(_hub_name)] = None
    # A secret: kept out of model_dump (so out of config_hash and any config written beside a dataset).
    token: Str | None = Field(default=None, exclude=True, repr=False)
    private: Bool = False


# ---------------------------------------------------------------------------------------------------------
# the whole config
# ---------------------------------------------------------------------------------------------------------


class Config(Section):
    signature: SignatureSection = Field(default_factory=SignatureSection)
    model: ModelSection = Field(default_factory=ModelSection)
    dataset: DatasetSection = Field(default_factory=DatasetSection)
    training: TrainingSection = Field(default_factory=TrainingSection)
    staged_training: StagedTrainingSection = Field(default_factory=StagedTrainingSection)
    validation: ValidationSection = Field(default_factory=ValidationSection)
    pipeline: PipelineSection = Field(default_factory=PipelineSection)
    metrics: MetricsSection = Field(default_factory=MetricsSection)
    task_generation: TaskGenerationSection = Field(default_factory=TaskGenerationSection)
    hub: HubSection = Field(default_factory=HubSection)

    _source_path: Path | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _resolve_paths(self, info: ValidationInfo) -> Config:
        """Relative paths are relative to the config file's folder (the working directory for a dict)."""
        base = Path((info.context or {}).get("base_dir") or Path.cwd())
        self.signature.dataset_path = (base / self.signature.dataset_path).resolve()
        self.pipeline.output_dir = (base / self.pipeline.output_dir).resolve()
        self.metrics.dir = (base / self.metrics.dir).resolve()
        tokenizer = self.signature.prompt_format.tokenizer
        if tokenizer is not None and not Path(tokenizer).is_absolute():
            try:
                if (base / tokenizer).exists():  # a file beside the config (else a name, or a path below cwd)
                    self.signature.prompt_format.tokenizer = str((base / tokenizer).resolve())
            except OSError:
                pass  # a name no file system takes is looked up as a name, and reported then
        return self

    @property
    def source_path(self) -> Path | None:
        """The YAML file this config was read from, or None when it came from a mapping."""
        return self._source_path

    @property
    def space(self) -> SequenceSpace:
        """The sequence space the subject models work in."""
        patterns = self.dataset.patterns
        return SequenceSpace(
            self.model.vocab_size,
            self.model.sequence_length,
            starts_with_token=LETTERS.index(patterns.starts_with_token),
            ends_with_token=LETTERS.index(patterns.ends_with_token),
        )

    @property
    def config_hash(self) -> str:
        """sha256 of the canonical JSON of the validated config (hub.token excluded)."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    @property
    def recipe_hash(self) -> str:
        """sha256 of the keys that decide a dataset's examples: every key but where files are
        (`RECIPE_EXCLUDES`: the folders, the signature file's path, whose content is hashed on its own)
        and how many processes run, which never change a byte. Two runs of one recipe write the same
        bytes, in any folder, so their files may be mixed; the store checks this hash, not
        `config_hash`, and a dataset moved with its config resumes."""
        dump = self.model_dump(mode="json")
        for path in RECIPE_EXCLUDES:
            *parents, last = path.split(".")
            node = dump
            for key in parents:
                node = node[key]
            node.pop(last, None)
        canonical = json.dumps(dump, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


RECIPE_EXCLUDES = (
    "signature.dataset_path",
    "pipeline.output_dir",
    "pipeline.checkpoint_interval",  # the cohort size, which the store checks on its own
    "pipeline.max_threads",
    "pipeline.num_workers",
    "pipeline.pin_memory",
    "pipeline.backend",
    "pipeline.ray_address",
    "pipeline.ray_cpus_per_task",
    "pipeline.ray_gpus_per_task",
    "metrics.dir",
    "metrics.tensorboard.auto_launch",
    "metrics.tensorboard.port",
    "hub",
)


# ---------------------------------------------------------------------------------------------------------
# cross-key checks
# ---------------------------------------------------------------------------------------------------------


def _cross_field_problems(cfg: Config, failed: list[str]) -> list[str]:
    """Problems that involve more than one key. A check is skipped when a key it reads failed already."""
    problems: list[str] = []

    def clean(*paths: str) -> bool:
        return not any(_overlaps(path, bad) for path in paths for bad in failed)

    m, p = cfg.model, cfg.dataset.patterns

    ranges = {
        "model.num_layers": m.num_layers,
        "model.neurons_per_layer": m.neurons_per_layer,
        "model.learning_rate": m.learning_rate,
    }
    for path, r in ranges.items():
        if clean(path) and r.min > r.max:
            problems.append(f"{path}: min {_fmt(r.min)} is greater than max {_fmt(r.max)}")

    pp = "dataset.patterns"
    if clean(f"{pp}.min_patterns_per_batch", f"{pp}.max_patterns_per_batch"):
        if p.min_patterns_per_batch > p.max_patterns_per_batch:
            problems.append(
                f"{pp}.min_patterns_per_batch: {p.min_patterns_per_batch} is greater than "
                f"max_patterns_per_batch {p.max_patterns_per_batch}"
            )
    n_enabled = len(p.enabled_patterns)
    for key in ("min_patterns_per_batch", "max_patterns_per_batch"):
        if clean(f"{pp}.{key}", f"{pp}.enabled_patterns") and getattr(p, key) > n_enabled:
            problems.append(f"{pp}.{key}: {getattr(p, key)} is more than the {n_enabled} enabled patterns")

    if clean(f"{pp}.target_total_examples", f"{pp}.max_total_examples"):
        if p.target_total_examples > p.max_total_examples:
            problems.append(
                f"{pp}.target_total_examples: {p.target_total_examples} is greater than "
                f"max_total_examples {p.max_total_examples}"
            )
    implied = (f"{pp}.samples_per_pattern", f"{pp}.max_patterns_per_batch", f"{pp}.negative_ratio")
    if clean(*implied, f"{pp}.max_total_examples"):
        # the smallest dataset: every pattern at its floor, and its negatives (rounded as dataset_sizes does)
        positives = p.samples_per_pattern.min * p.max_patterns_per_batch
        smallest = positives + round(positives * p.negative_ratio)
        if smallest > p.max_total_examples:
            problems.append(
                f"{pp}.max_total_examples: {p.max_total_examples} is less than the smallest dataset the "
                f"config implies, {smallest} (samples_per_pattern.min {p.samples_per_pattern.min}"
                f" * max_patterns_per_batch {p.max_patterns_per_batch}"
                f" * (1 + negative_ratio {_fmt(p.negative_ratio)}))"
            )

    # tokens the starts_with / ends_with patterns ask for must be letters of the vocabulary
    tokens_ok = {}
    for key in ("starts_with_token", "ends_with_token"):
        letter = getattr(p, key)
        tokens_ok[key] = clean(f"{pp}.{key}", "model.vocab_size") and LETTERS.index(letter) < m.vocab_size
        if clean(f"{pp}.{key}", "model.vocab_size") and not tokens_ok[key]:
            letters = LETTERS[: m.vocab_size]
            problems.append(
                f"{pp}.{key}: {letter!r} is not in the vocabulary {letters[0]}..{letters[-1]} "
                f"(vocab_size {m.vocab_size})"
            )

    if clean(f"{pp}.enabled_patterns", "model.vocab_size", "model.sequence_length"):
        space = SequenceSpace(
            m.vocab_size,
            m.sequence_length,
            starts_with_token=LETTERS.index(p.starts_with_token) if tokens_ok["starts_with_token"] else 0,
            ends_with_token=LETTERS.index(p.ends_with_token) if tokens_ok["ends_with_token"] else 1,
        )
        # a pattern that reads a token which is itself wrong is not counted (its problem is reported above)
        skip = {
            "starts_with": not tokens_ok["starts_with_token"],
            "ends_with": not tokens_ok["ends_with_token"],
        }
        table = _pattern_table()
        for name in p.enabled_patterns:
            if not skip.get(name) and table[name].count(space) == 0:
                problems.append(
                    f"{pp}.enabled_patterns: {name!r} has no members at vocab_size {m.vocab_size}, "
                    f"sequence_length {m.sequence_length}"
                )

    model_keys = ("model.num_layers", "model.neurons_per_layer", "model.input_encoding")
    if clean(*model_keys, "model.vocab_size", "model.sequence_length"):
        inputs = m.sequence_length * (m.vocab_size if m.input_encoding == "one_hot" else 1)
        layers, width = m.num_layers.max, m.neurons_per_layer.max
        largest = inputs * width + width + (layers - 1) * (width * width + width) + width + 1
        if largest > MAX_PARAMETERS:
            problems.append(
                f"model.neurons_per_layer.max: {width} units in {layers} layers (num_layers.max) make a "
                f"model of {largest:,} parameters, more than the {MAX_PARAMETERS:,} a run can hold"
            )

    for key, path in (
        ("signature.dataset_path", cfg.signature.dataset_path),
        ("pipeline.output_dir", cfg.pipeline.output_dir),
        ("metrics.dir", cfg.metrics.dir),
    ):
        if clean(key) and len(str(path)) > MAX_PATH:
            problems.append(f"{key}: resolved, the path is {len(str(path))} characters (at most {MAX_PATH})")

    t = cfg.task_generation
    if clean("task_generation") and not (t.include_modification or t.include_classification):
        problems.append(
            "task_generation: include_modification and include_classification are both false; "
            "at least one must be true"
        )
    return problems


# ---------------------------------------------------------------------------------------------------------
# turning pydantic's errors into our lines
# ---------------------------------------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    """A value as the user wrote it in YAML, short."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    if isinstance(value, int) and value.bit_length() > 128:  # str() of a huge int is slow, or refused
        return f"an integer of about {int(value.bit_length() * math.log10(2)) + 1} digits"
    return shorten(repr(value))


def _path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if part == "[key]":  # pydantic's marker for a mapping's key: the key itself is named already
            continue
        part = part if isinstance(part, int) else shorten(part, 40)  # a key as long as a book stays short
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _overlaps(a: str, b: str) -> bool:
    """True when one key path is the other or lies inside it."""
    if a == b:
        return True
    short, long = sorted((a, b), key=len)
    return short == "" or long.startswith(short + ".") or long.startswith(short + "[")


def _strip(tp: Any) -> Any:
    """Annotated[X, ...] and X | None -> X."""
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
        elif origin is Union or origin is types.UnionType:
            args = [a for a in get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


def _fields(tp: Any) -> dict[str, Any]:
    """The keys a mapping type accepts, with their types."""
    tp = _strip(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return {name: f.annotation for name, f in tp.model_fields.items()}
    if is_typeddict(tp):
        return get_type_hints(tp, include_extras=True)
    return {}


def _known_keys(loc: tuple) -> list[str]:
    tp: Any = Config
    for part in loc:
        if isinstance(part, int):
            args = get_args(_strip(tp))
            tp = args[0] if args else None
        else:
            tp = _fields(tp).get(part)
        if tp is None:
            return []
    return list(_fields(tp))


_MESSAGES = {
    "int_type": "{value} is not an integer",
    "float_type": "{value} is not a number",
    "finite_number": "{value} is not a finite number",
    "bool_type": "{value} is not true or false",
    "string_type": "{value} is not a string",
    "list_type": "{value} is not a list",
    "dict_type": "{value} is not a mapping",
    "model_type": "{value} is not a mapping",
    "model_attributes_type": "{value} is not a mapping",
}


def _describe(error: dict) -> str:
    loc, kind, value = tuple(error["loc"]), error["type"], error.get("input")
    path = _path(loc) or "(top level)"
    if kind == "extra_forbidden":
        known = _known_keys(loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        if close:
            return f"{path}: unknown key (did you mean {close[0]!r}?)"
        return f"{path}: unknown key (known keys: {', '.join(known)})" if known else f"{path}: unknown key"
    if kind == "invalid_key":
        return f"{_path(loc[:-1]) or '(top level)'}: key {_fmt(value)} is not a string"
    if kind == "literal_error":
        allowed = ", ".join(re.findall(r"'([^']*)'", error["ctx"]["expected"]))
        return f"{path}: {_fmt(value)} is not one of {allowed}"
    if kind == "weightzoo_range":
        return f"{path}: {_fmt(value)} is {error['msg']}"
    if kind == "weightzoo":
        return f"{path}: {error['msg']}"
    if kind in _MESSAGES:
        return f"{path}: " + _MESSAGES[kind].format(value=_fmt(value))
    return f"{path}: {_fmt(value)}: {error['msg']}"


def _without(data: dict, loc: tuple) -> None:
    """Delete, in place, the mapping key a failed loc points at (or the key holding a failed list item)."""
    parent, key, node = None, None, data
    for part in loc:
        if not isinstance(node, dict):
            break  # a list item or a bad value inside: drop the key holding it
        if part not in node:
            return  # already dropped
        parent, key, node = node, part, node[part]
    if parent is not None:
        del parent[key]


# ---------------------------------------------------------------------------------------------------------
# entry points
# ---------------------------------------------------------------------------------------------------------


def parse_config(data: Any, source: str = "<dict>", base_dir: Path | str | None = None) -> Config:
    """Validate a mapping shaped like the YAML config; raise ConfigError listing every problem.

    Relative paths are resolved against base_dir (default: the working directory).
    """
    return _parse(data, source, base_dir, [], None)


def _parse(
    data: Any, source: str, base_dir: Path | str | None, problems: list[str], source_path: Path | None
) -> Config:
    """Validate `data`; `problems` may already hold problems found while reading the YAML."""
    if not isinstance(data, Mapping):
        problems.append(f"(top level): {_fmt(data)} is not a mapping of sections (signature, model, ...)")
        raise ConfigError(source, problems)
    context = {"base_dir": Path(base_dir if base_dir is not None else Path.cwd()).resolve()}
    failed: list[str] = []
    cfg: Config | None = None
    try:
        cfg = Config.model_validate(data, context=context)
    except ValidationError as e:
        for error in e.errors():
            problems.append(_describe(error))
            failed.append(_path(tuple(error["loc"])))
        # Validate again with the failed keys removed (so defaults stand in), to run the cross-key checks
        # that read only keys that passed.
        repaired, errors = copy.deepcopy(dict(data)), e.errors()
        for _ in range(3):
            for error in errors:
                _without(repaired, tuple(error["loc"]))
            try:
                cfg = Config.model_validate(repaired, context=context)
                break
            except ValidationError as again:
                errors = again.errors()
                failed += [_path(tuple(error["loc"])) for error in errors]
    if cfg is not None:
        problems.extend(_cross_field_problems(cfg, failed))
    if problems:
        raise ConfigError(source, problems)
    cfg._source_path = source_path
    return cfg


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads YAML 1.2 floats such as 1e-6 (YAML 1.1 wants 1.0e-6, else a string)."""


_Loader.yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


# The tags of plain values: a config is mappings, lists, strings, numbers, booleans and null.
_PLAIN_TAGS = {
    f"tag:yaml.org,2002:{name}" for name in ("map", "seq", "str", "int", "float", "bool", "null", "merge")
}


def _tag_problems(node: yaml.Node | None, path: str = "", seen: set | None = None) -> list[str]:
    """Tags that make other values than plain ones (`!!set`, `!!timestamp`, `!!binary`, `!!python/...`)
    are refused: a set's order, for one, changes with PYTHONHASHSEED, and the examples and the config
    hash with it."""
    seen = set() if seen is None else seen
    if node is None or id(node) in seen:  # an alias to a node already checked (or to itself)
        return []
    seen.add(id(node))
    if node.tag not in _PLAIN_TAGS:
        tag = node.tag.removeprefix("tag:yaml.org,2002:")
        return [
            f"{path or '(top level)'}: the YAML tag !!{tag} makes a value a config cannot hold "
            f"(line {node.start_mark.line + 1}); write a plain mapping, list, string or number"
        ]
    if isinstance(node, yaml.MappingNode):
        problems = []
        for key_node, value_node in node.value:
            key = shorten(key_node.value, 40) if isinstance(key_node, yaml.ScalarNode) else "?"
            child = f"{path}.{key}" if path else key
            problems += _tag_problems(key_node, child, seen) + _tag_problems(value_node, child, seen)
        return problems
    if isinstance(node, yaml.SequenceNode):
        return [p for i, item in enumerate(node.value) for p in _tag_problems(item, f"{path}[{i}]", seen)]
    return []


def _duplicate_keys(node: yaml.Node | None, path: str = "", seen: set | None = None) -> list[str]:
    """YAML keeps the last of two equal keys without a word; we report them."""
    seen = set() if seen is None else seen
    if node is None or id(node) in seen:
        return []
    seen.add(id(node))
    problems = []
    if isinstance(node, yaml.MappingNode):
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else None
            child = f"{path}.{shorten(key, 40)}" if path else shorten(key, 40)
            if key is not None and key != "<<":
                line = key_node.start_mark.line + 1
                if key in first_line:
                    problems.append(f"{child}: duplicate key (line {first_line[key]} and line {line})")
                else:
                    first_line[key] = line
            problems += _duplicate_keys(value_node, child, seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            problems += _duplicate_keys(item, f"{path}[{i}]", seen)
    return problems


def _shape_problems(node: yaml.Node | None) -> list[str]:
    """Nesting deeper than MAX_DEPTH, and integers too long to be any key's value (Python refuses to
    read one of more than 4,300 digits): walked without recursion, before anything else reads the tree."""
    problems: list[str] = []
    seen: set[int] = set()
    todo = [(node, "", 0)] if node is not None else []
    while todo:
        node, path, depth = todo.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if depth > MAX_DEPTH:
            return [f"{path or '(top level)'}: nested more than {MAX_DEPTH} levels deep"]
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                key = shorten(key_node.value, 40) if isinstance(key_node, yaml.ScalarNode) else "?"
                child = f"{path}.{key}" if path else key
                todo += [(key_node, child, depth + 1), (value_node, child, depth + 1)]
        elif isinstance(node, yaml.SequenceNode):
            todo += [(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(node.value)]
        elif node.tag == "tag:yaml.org,2002:int" and len(node.value) > 40:
            problems.append(
                f"{path or '(top level)'}: an integer of {len(node.value)} characters is out of range "
                f"for every key (line {node.start_mark.line + 1})"
            )
    return problems


MAX_VALUES = 100_000  # values in a config, counting each use of a YAML alias (a config has about 150)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [child for pair in node.value for child in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _expansion_problem(root: yaml.Node | None) -> str | None:
    """Aliases let a few lines of YAML stand for billions of values (nine aliases of nine aliases
    ...), or for a value that holds itself; either would hang whatever reads it. Counted without
    recursion, each node once (its count remembered)."""
    if root is None:
        return None
    counts: dict[int, int] = {}
    open_nodes = {id(root)}
    stack = [(root, iter(_children(root)))]
    while stack:
        node, children = stack[-1]
        child = next(children, None)
        if child is None:
            stack.pop()
            open_nodes.discard(id(node))
            counts[id(node)] = min(MAX_VALUES + 1, 1 + sum(counts[id(c)] for c in _children(node)))
            if counts[id(node)] > MAX_VALUES:
                return f"(top level): the config stands for more than {MAX_VALUES:,} values (YAML aliases)"
            continue
        if id(child) in open_nodes:
            line = child.start_mark.line + 1
            return f"(top level): a YAML alias makes a value that holds itself (line {line})"
        if id(child) not in counts:
            open_nodes.add(id(child))
            stack.append((child, iter(_children(child))))
    return None


def _read_yaml(text: str) -> tuple[Any, list[str]]:
    loader = _Loader(text)
    try:
        try:
            node = loader.get_single_node()
        except RecursionError:  # the parser recurses once per level of a flow collection
            return {}, [f"(top level): nested more than {MAX_DEPTH} levels deep"]
        shape = _shape_problems(node)
        if shape:
            return {}, shape
        expansion = _expansion_problem(node)
        if expansion:
            return {}, [expansion]
        tags = _tag_problems(node)
        if tags:
            return {}, tags  # not constructed: such a value may not even be buildable
        problems = _duplicate_keys(node)
        data = loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()
    return data, problems


def _yaml_problem(e: yaml.MarkedYAMLError) -> str:
    def at(mark) -> str:
        return f"line {mark.line + 1}, column {mark.column + 1}"

    mark = e.problem_mark or e.context_mark
    text = f"YAML syntax error at {at(mark)}: " if mark else "YAML syntax error: "
    text += str(e.problem or e.context)
    if e.problem and e.context:
        text += f" ({e.context}" + (f" at {at(e.context_mark)})" if e.context_mark else ")")
    return text


def load_config(path: Path | str) -> Config:
    """Read and validate a YAML config file; raise ConfigError listing every problem."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(source, ["file not found"]) from None
    except IsADirectoryError:
        raise ConfigError(source, ["is a directory, not a YAML file"]) from None
    except UnicodeDecodeError as e:
        raise ConfigError(source, [f"not UTF-8 text (byte {e.start})"]) from None
    except OSError as e:
        raise ConfigError(source, [f"cannot be read: {e.strerror}"]) from None
    try:
        data, problems = _read_yaml(text)
    except yaml.MarkedYAMLError as e:
        raise ConfigError(source, [_yaml_problem(e)]) from None
    except yaml.YAMLError as e:
        raise ConfigError(source, [f"YAML syntax error: {e}"]) from None
    if data is None:
        raise ConfigError(source, ["(top level): the file is empty; expected a mapping of sections"])
    return _parse(data, source, path.parent, problems, path.resolve())
