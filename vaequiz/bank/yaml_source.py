"""Safe YAML reading that keeps every node's line and column.

PyYAML's own composer recurses (a 20,000-deep file overflows the stack), shares aliased nodes
(a "billion laughs" file explodes later, in validation) and silently keeps the last of two
duplicate keys. This module builds the tree itself from the parser's event stream, iteratively,
so each of those becomes an error with a location instead.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

MAX_FILE_BYTES = 5 * 1024 * 1024
MAX_DEPTH = 64
MAX_NODES = 200_000
"""Nodes after expanding aliases; far above any bank file, far below a memory problem."""

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True, order=True)
class Location:
    """A 1-based line and column in a file."""

    path: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}"


class YamlSourceError(Exception):
    """A file that cannot be read as safe YAML; carries where and why."""

    def __init__(self, location: Location, message: str) -> None:
        super().__init__(f"{location}: {message}")
        self.location = location
        self.message = message


@dataclass
class SourceMap:
    """Where each node of a document came from, keyed by its path of keys and indices.

    Positions are kept as 0-based (line, column) pairs and turned into a Location on demand,
    since only the few nodes with problems are ever looked up.
    """

    path: str
    values: dict[tuple[Any, ...], tuple[int, int]] = field(default_factory=dict)
    keys: dict[tuple[Any, ...], tuple[int, int]] = field(default_factory=dict)

    def locate(self, path: tuple[Any, ...], *, key: bool = False) -> Location:
        """The location of ``path``, or of its deepest existing ancestor."""
        if key and path in self.keys:
            line, column = self.keys[path]
            return Location(self.path, line + 1, column + 1)
        while path and path not in self.values:
            path = path[:-1]
        line, column = self.values.get(path, (0, 0))
        return Location(self.path, line + 1, column + 1)


def _loc(path: str, mark: Any) -> Location:
    return Location(path, mark.line + 1, mark.column + 1)


@dataclass
class _Node:
    kind: str  # "scalar" | "seq" | "map"
    start: Any
    value: Any = None  # scalar: python value; seq: list[_Node]; map: list[tuple[_Node, _Node]]
    size: int = 1


_constructor = yaml.constructor.SafeConstructor()
_resolver = yaml.resolver.Resolver()


@functools.lru_cache(maxsize=4096)
def _implicit_tag(value: str, implicit: tuple[bool, bool]) -> str:
    return _resolver.resolve(yaml.ScalarNode, value, implicit)


def _scalar_value(event: yaml.ScalarEvent) -> Any:
    tag = event.tag
    if tag is None or tag == "!":
        if not event.implicit[0]:  # quoted or block scalar: always a string
            return event.value
        tag = _implicit_tag(event.value, event.implicit)
    if tag == "tag:yaml.org,2002:str" or not tag.startswith("tag:yaml.org,2002:"):
        return event.value
    if tag in ("tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:binary"):
        return event.value  # text fields only; keep what the author wrote
    node = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, event.style)
    return _constructor.construct_object(node, deep=False)


def _check_size(size: int, path: str) -> None:
    if size > MAX_FILE_BYTES:
        raise YamlSourceError(
            Location(path, 1, 1),
            f"file is {size / 1e6:.1f} MB; YAML files are limited to "
            f"{MAX_FILE_BYTES // (1024 * 1024)} MB (split it into several files)",
        )


def decode_text(data: bytes, path: str) -> str:
    """Strict UTF-8, with the line and column of the first bad byte."""
    _check_size(len(data), path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        before = data[: err.start]
        line = before.count(b"\n") + 1
        column = err.start - (before.rfind(b"\n") + 1) + 1
        raise YamlSourceError(
            Location(path, line, column),
            f"byte 0x{data[err.start]:02x} is not UTF-8; save the file as UTF-8",
        ) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    for number, line_text in enumerate(text.splitlines(), 1):
        stripped = line_text.lstrip(" ")
        if stripped.startswith("\t"):
            raise YamlSourceError(
                Location(path, number, len(line_text) - len(stripped) + 1),
                "tab character in indentation; YAML indents with spaces only",
            )
    return text


def parse_yaml(text: str, path: str) -> tuple[Any, SourceMap]:
    """Parse one YAML document into plain Python data plus a map of node locations."""
    try:
        root = _compose(text, path, _Loader)
    except _LibyamlNestingLimit:
        # libyaml reads ahead and stops at its own depth limit before vaequiz's check could
        # see the events; the pure-Python parser streams them, so the located message is ours.
        root = _compose(text, path, yaml.SafeLoader)
    source_map = SourceMap(path)
    if root is None:
        return None, source_map
    if root.size > MAX_NODES:
        raise YamlSourceError(
            _loc(path, root.start),
            f"the document expands to more than {MAX_NODES:,} nodes through aliases "
            "(a 'billion laughs' pattern); write the content out instead",
        )
    return _to_python(root, (), source_map), source_map


class _LibyamlNestingLimit(Exception):
    """libyaml refused a document for nesting deeper than its own (larger) limit."""


def _compose(text: str, path: str, loader: type) -> _Node | None:
    stack: list[tuple[_Node, list[Any]]] = []
    anchors: dict[str, _Node] = {}
    pending_anchor: list[str | None] = []
    root: _Node | None = None
    documents = 0

    def attach(node: _Node) -> None:
        nonlocal root
        if not stack:
            root = node
            return
        parent, items = stack[-1]
        items.append(node)
        parent.size += node.size
        if parent.size > MAX_NODES:
            raise YamlSourceError(
                _loc(path, node.start),
                f"the document expands to more than {MAX_NODES:,} nodes through aliases "
                "(a 'billion laughs' pattern); write the content out instead",
            )

    try:
        for event in yaml.parse(text, Loader=loader):
            if isinstance(event, yaml.DocumentStartEvent):
                documents += 1
                if documents > 1:
                    raise YamlSourceError(
                        _loc(path, event.start_mark),
                        "a bank file holds one YAML document; remove the second '---'",
                    )
            elif isinstance(event, yaml.AliasEvent):
                if event.anchor not in anchors:
                    raise YamlSourceError(
                        _loc(path, event.start_mark),
                        f"alias *{event.anchor} refers to no earlier, complete anchor",
                    )
                attach(anchors[event.anchor])
            elif isinstance(event, yaml.ScalarEvent):
                node = _Node("scalar", event.start_mark, _scalar_value(event))
                attach(node)
                if event.anchor:
                    anchors[event.anchor] = node
            elif isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                if len(stack) >= MAX_DEPTH:
                    raise YamlSourceError(
                        _loc(path, event.start_mark),
                        f"nesting deeper than {MAX_DEPTH} levels; a question never needs that",
                    )
                kind = "seq" if isinstance(event, yaml.SequenceStartEvent) else "map"
                stack.append((_Node(kind, event.start_mark), []))
                pending_anchor.append(event.anchor)
            elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                node, items = stack.pop()
                anchor = pending_anchor.pop()
                if node.kind == "seq":
                    node.value = items
                else:
                    node.value = _pair_up(items, path)
                attach(node)
                if anchor:
                    anchors[anchor] = node
    except yaml.MarkedYAMLError as err:
        if loader is not yaml.SafeLoader and "maximum nesting depth" in (err.problem or ""):
            raise _LibyamlNestingLimit from None
        mark = err.problem_mark or err.context_mark
        problem = err.problem or "invalid YAML"
        if err.context:
            problem = f"{problem} ({err.context})"
        location = _loc(path, mark) if mark else Location(path, 1, 1)
        raise YamlSourceError(location, f"YAML syntax error: {problem}") from None
    except yaml.YAMLError as err:
        raise YamlSourceError(Location(path, 1, 1), f"YAML error: {err}") from None
    return root


def _pair_up(items: list[_Node], path: str) -> list[tuple[_Node, _Node]]:
    pairs: list[tuple[_Node, _Node]] = []
    seen: dict[Any, _Node] = {}
    for key, value in zip(items[0::2], items[1::2]):
        if key.kind != "scalar":
            raise YamlSourceError(_loc(path, key.start), "mapping keys must be plain scalars")
        try:
            hash(key.value)
        except TypeError:
            raise YamlSourceError(_loc(path, key.start), "mapping key is not hashable") from None
        if key.value in seen:
            first = seen[key.value].start
            raise YamlSourceError(
                _loc(path, key.start),
                f"duplicate key '{key.value}' (first at line {first.line + 1}); "
                "YAML would silently keep only the last one",
            )
        seen[key.value] = key
        pairs.append((key, value))
    return pairs


def _to_python(node: _Node, path: tuple[Any, ...], source_map: SourceMap) -> Any:
    """Plain data from the tree; depth is bounded by MAX_DEPTH, so recursion is safe here."""
    if path not in source_map.values:
        source_map.values[path] = (node.start.line, node.start.column)
    if node.kind == "scalar":
        return node.value
    if node.kind == "seq":
        return [_to_python(child, path + (i,), source_map) for i, child in enumerate(node.value)]
    result: dict[Any, Any] = {}
    keys = source_map.keys
    for key, value in node.value:
        key_path = path + (key.value,)
        if key_path not in keys:
            keys[key_path] = (key.start.line, key.start.column)
        result[key.value] = _to_python(value, key_path, source_map)
    return result


def read_yaml_file(file: Path, display: str | None = None) -> tuple[Any, SourceMap]:
    """Read, decode and parse one file; raises YamlSourceError with a location on any problem."""
    path = display or str(file)
    try:
        _check_size(file.stat().st_size, path)
        data = file.read_bytes()
    except OSError as err:
        raise YamlSourceError(Location(path, 1, 1), f"cannot read file: {err.strerror}") from None
    return parse_yaml(decode_text(data, path), path)
