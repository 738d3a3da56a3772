"""Prompt text: subject-model weights and signatures written compactly, and read back.

Modules: `numbers.py` (how one number is written), `prompts.py` (blocks and prompts), `parse.py`
(reading a weights block back), `tokens.py` (sizes: characters, tokenizers, token counts).

Numbers
    `NumberFormat(decimals=4, compact=True)`. Every value is rounded to `decimals` places (half to
    even on the scaled value), then written without trailing zeros. Compact numbers drop the leading
    zero (`-.123`, `.5`, `2`, `0` for zero); each weight-matrix row is one line, numbers separated by
    one space. Non-compact writes each matrix as indented JSON nested lists (numbers keep their leading
    zero, so the block is valid JSON). The default spends about 5-6 characters per parameter on
    models of the seed's sizes (the seed spent ~17, one number per line).

Weights block
    For each Linear layer, in `network` index order::

        layer 0 weight [32 x 7]:
        .123 -.5 0 ...          (one line per output neuron; `in` numbers each)
        layer 0 bias:
        .01 -.2 ...             (one line, `out` numbers)

Signature block
    Per layer (the signature's layer keys are Linear indices, as in COMPAT.md), a header naming the
    method values, then one line per neuron (neuron 0 first) with that neuron's method values in the
    method order (list values flattened), always in compact numbers::

        layer 0 signature [32 neurons: mean std]:
        .41 .2

Prompts
    `modification` and `classification` return `(prompt, completion)`;
    the dataset's `_text` column is `prompt + completion`. Style `separate` writes all weights and then
    the whole signature; `interwoven` writes each layer's signature right after that layer's weights.

Reading back
    `parse_weights(text, spec)` finds a weights block in any text (a prompt, a completion, or both
    joined: by default the last block, i.e. the completion's) and returns the state dict. Compact and
    JSON bodies are both recognised. Malformed or mis-shaped blocks raise `ValueError` naming the layer.

Configuration (the config keys, and the function arguments they become):
    signature.prompt_format.style            -> `style` ("separate")
    signature.prompt_format.decimals         -> `NumberFormat.decimals` (3)
    signature.prompt_format.compact_numbers  -> `NumberFormat.compact` (True)
"""

from __future__ import annotations

from weightzoo.text.numbers import MAX_DECIMALS, NumberFormat, parse_number
from weightzoo.text.parse import parse_weights
from weightzoo.text.prompts import (
    STYLES,
    architecture_header,
    classification,
    model_block,
    modification,
    num_parameters,
    pattern_descriptions,
    signature_block,
    weights_block,
)
from weightzoo.text.tokens import CHARS_PER_TOKEN_ESTIMATE, chars_per_parameter, count_tokens, load_tokenizer

__all__ = [
    "CHARS_PER_TOKEN_ESTIMATE",
    "MAX_DECIMALS",
    "NumberFormat",
    "STYLES",
    "architecture_header",
    "chars_per_parameter",
    "classification",
    "count_tokens",
    "load_tokenizer",
    "model_block",
    "modification",
    "num_parameters",
    "parse_number",
    "parse_weights",
    "pattern_descriptions",
    "signature_block",
    "weights_block",
]
