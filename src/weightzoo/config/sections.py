"""The config's sections, one small pydantic model each, and `Config`, the whole of it, with the recipe
hash (the config minus paths and process counts).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PrivateAttr,
    ValidationInfo,
    model_validator,
)

# ---------------------------------------------------------------------------------------------------------
# signature
# ---------------------------------------------------------------------------------------------------------
from weightzoo.config.profile_methods import PROFILE_METHOD_DEFAULTS, ProfileMethods
from weightzoo.config.values import (
    MAX_COHORT,
    MAX_DATASET,
    MAX_EPOCHS,
    MAX_POOL,
    MAX_ROWS,
    MAX_SEED,
    MAX_THREADS,
    Activation,
    Bool,
    Float,
    Int,
    Letter,
    Path_,
    PatternName,
    Section,
    Str,
    _hub_name,
    _non_empty,
    _pattern_table,
    _problem,
    _short_text,
    _unique,
    _url,
    at_least,
    between,
)
from weightzoo.data.space import LETTERS, SequenceSpace


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
    numbers: Literal["decimal", "grid"] = "decimal"  # grid: three digits per value (text/numbers.py)
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
    negative_ratio: Annotated[Float, at_least(0)] = 0.5
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
    # A copy of the dataset at an fsspec URL, kept in step as shards are written (output/mirror.py)
    output_url: Annotated[Str, AfterValidator(_short_text), AfterValidator(_url)] | None = None
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
    "pipeline.output_url",
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
