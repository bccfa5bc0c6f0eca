"""Load YAML keeping the line of every key, so config errors can say `file:line: key.path`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class LoadedYaml:
    data: Any
    lines: dict[Path_, int]  # 1-based line of each key path

    def line_of(self, loc: Path_) -> int:
        """Line of `loc`, or of its nearest ancestor that exists in the file."""
        for end in range(len(loc), 0, -1):
            if loc[:end] in self.lines:
                return self.lines[loc[:end]]
        return 1


class YamlError(ValueError):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


def _build(node: yaml.Node, path: Path_, lines: dict[Path_, int]) -> Any:
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _build(key_node, (), {})
            if isinstance(key, (dict, list)):
                raise YamlError(key_node.start_mark.line + 1, "mapping keys must be plain scalars")
            if key in out:
                msg = f"duplicate key {key!r}"
                raise YamlError(key_node.start_mark.line + 1, msg)
            child = (*path, str(key))
            lines[child] = key_node.start_mark.line + 1
            out[key] = _build(value_node, child, lines)
        return out
    if isinstance(node, yaml.SequenceNode):
        items = []
        for i, item in enumerate(node.value):
            lines[(*path, i)] = item.start_mark.line + 1
            items.append(_build(item, (*path, i), lines))
        return items
    return yaml.SafeLoader(  # resolve the scalar's tag (int, bool, null, ...) the way safe_load does
        ""
    ).construct_object(node)


def load_yaml(path: Path) -> LoadedYaml:
    """Parse a YAML file; syntax errors are raised as YamlError with the offending line."""
    text = path.read_text(encoding="utf-8")
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        line = (e.problem_mark.line + 1) if e.problem_mark else 1
        raise YamlError(line, f"invalid YAML: {e.problem}") from None
    except yaml.YAMLError as e:  # e.g. a control character the reader refuses
        line = text.count("\n", 0, getattr(e, "position", 0) or 0) + 1
        raise YamlError(line, f"invalid YAML: {getattr(e, 'reason', None) or e}") from None
    if root is None:
        return LoadedYaml({}, {})
    lines: dict[Path_, int] = {}
    try:
        return LoadedYaml(_build(root, (), lines), lines)
    except yaml.MarkedYAMLError as e:  # e.g. an unknown tag
        line = (e.problem_mark.line + 1) if e.problem_mark else 1
        raise YamlError(line, f"invalid YAML: {e.problem}") from None
