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

Modules, each using only those before it: `values.py` (value types, maxima), `sections.py` (the
sections and `Config`), `messages.py` (pydantic's errors as our lines), `checks.py` (across keys),
`loading.py` (YAML and mappings in, a `Config` out).
"""

from weightzoo.config.loading import load_config, parse_config
from weightzoo.config.sections import (
    PROFILE_METHOD_DEFAULTS,
    RECIPE_EXCLUDES,
    Config,
    ValidationSection,
)
from weightzoo.config.values import (
    MAX_BINS,
    MAX_COHORT,
    MAX_COMPONENTS,
    MAX_DATASET,
    MAX_DEPTH,
    MAX_EPOCHS,
    MAX_FREQUENCIES,
    MAX_PARAMETERS,
    MAX_PATH,
    MAX_POOL,
    MAX_ROWS,
    MAX_SEED,
    MAX_THREADS,
)

__all__ = [
    "Config",
    "load_config",
    "parse_config",
    "PROFILE_METHOD_DEFAULTS",
    "RECIPE_EXCLUDES",
    "ValidationSection",
    "MAX_BINS",
    "MAX_COHORT",
    "MAX_COMPONENTS",
    "MAX_DATASET",
    "MAX_DEPTH",
    "MAX_EPOCHS",
    "MAX_FREQUENCIES",
    "MAX_PARAMETERS",
    "MAX_PATH",
    "MAX_POOL",
    "MAX_ROWS",
    "MAX_SEED",
    "MAX_THREADS",
]
