"""Entry points: `load_config` (a YAML file, read safely: no tags, no duplicate keys, bounded nesting and
alias expansion) and `parse_config` (a mapping).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    ValidationError,
)

from weightzoo.config.checks import _cross_field_problems
from weightzoo.config.messages import _describe, _path, _without
from weightzoo.config.sections import Config
from weightzoo.config.values import MAX_DEPTH, _fmt
from weightzoo.errors import ConfigError, shorten

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
