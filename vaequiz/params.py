"""Per-student numbers of a parametric question: the space they come from, stable draws, and the
``{{ name }}`` placeholders texts show them through.

It works on plain values (lists, ranges, expression texts), so the bank's models, render and
grading all use it without importing one another. Draws use :class:`vaequiz.variants.StableRandom`
(SHA-256 of quiz, seed, student and question), so a page rebuilt years later shows the same
numbers and a grader re-derives them to cross-check a sheet.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence, Union

from vaequiz.expressions import (
    RESERVED,
    Expression,
    ExpressionError,
    Value,
    evaluate,
    format_value,
    parse_expression,
)
from vaequiz.variants import StableRandom

MAX_TRIES = 1000
"""Draws tried before ``where:`` is declared unsatisfiable for a student."""
MAX_RANGE_VALUES = 100_000
"""Most values one range may hold."""

PLACEHOLDER = re.compile(r"\{\{\s*(.*?)\s*\}\}", re.DOTALL)
"""``{{ expression }}`` or ``{{ expression:format }}`` in a text field."""
FORMAT_SPEC = re.compile(r"^[<>^=]?[+\- ]?#?0?\d*[,_]?(?:\.\d+)?[eEfFgGdn%]?$")

Params = dict[str, Value]
Problems = list[tuple[tuple[Union[str, int], ...], str]]


class ParamError(ValueError):
    """Draws that cannot be made or used (an unsatisfiable ``where:``, an answer that fails to
    evaluate for some draw); the message names the question's numbers."""


@dataclass(frozen=True)
class Placeholder:
    """One ``{{ ... }}`` in a text: the expression it shows and its number format."""

    text: str
    expression: Expression
    spec: str


def placeholders(text: str) -> tuple[list[Placeholder], list[str]]:
    """Every placeholder of ``text``, and a message for each one that does not parse."""
    found: list[Placeholder] = []
    errors: list[str] = []
    for match in PLACEHOLDER.finditer(text):
        body = match.group(1)
        source, _, spec = body.partition(":")
        spec = spec.strip()
        if spec and not FORMAT_SPEC.match(spec):
            errors.append(f"{match.group(0)}: {spec!r} is not a number format (like .2f, .3g or d)")
            continue
        try:
            found.append(Placeholder(match.group(0), parse_expression(source), spec))
        except ExpressionError as err:
            errors.append(f"{match.group(0)}: {err}")
    return found, errors


def fill(text: str, values: Mapping[str, Value]) -> str:
    """``text`` with every placeholder replaced by its value for ``values``."""

    def value_of(match: re.Match[str]) -> str:
        source, _, spec = match.group(1).partition(":")
        try:
            return format_value(evaluate(source, values), spec.strip())
        except ExpressionError as err:
            raise ParamError(f"{match.group(0)}: {err}") from None

    return PLACEHOLDER.sub(value_of, text)


def show_general(text: str) -> str:
    """``text`` with every placeholder replaced by its expression (``{{ B }}`` -> ``B``): the
    general form an answer key shows when it is for no one student."""

    def general(match: re.Match[str]) -> str:
        source = match.group(1).partition(":")[0].strip()
        in_math = text.count("$", 0, match.start()) % 2 == 1
        return source if in_math or source.isidentifier() else f"`{source}`"

    return PLACEHOLDER.sub(general, text)


@dataclass(frozen=True)
class ParamSpace:
    """Where a question's numbers come from: free params with their values, derived params in
    evaluation order, and the constraints every draw must satisfy."""

    free: dict[str, tuple[Value, ...]] = field(default_factory=dict)
    derived: dict[str, Expression] = field(default_factory=dict)
    where: tuple[Expression, ...] = ()

    @property
    def names(self) -> list[str]:
        return list(self.free) + list(self.derived)

    @property
    def size(self) -> int:
        """How many combinations of free values there are (before ``where:``)."""
        return math.prod(len(v) for v in self.free.values())

    def draw(self, *key: object) -> Params:
        """The numbers for ``key`` (quiz id, seed, student, question id): free values drawn
        uniformly, derived ones computed, redrawn until every ``where:`` holds."""
        rng = StableRandom("params", *key)
        for _ in range(MAX_TRIES):
            values: Params = {name: options[rng.below(len(options))] for name, options in self.free.items()}
            try:
                values = self.complete(values)
            except ExpressionError as err:
                raise ParamError(f"a derived param cannot be computed for {describe(values)}: {err}") from None
            if all(self.holds(values)):
                return values
        shown = "; ".join(w.source for w in self.where)
        raise ParamError(f"no draw satisfied 'where' ({shown}) in {MAX_TRIES} tries; loosen it or widen the params")

    def complete(self, free: Mapping[str, Value]) -> Params:
        """Free values plus every derived value computed from them."""
        values: Params = dict(free)
        for name, expression in self.derived.items():
            values[name] = evaluate(expression, values)
        return values

    def holds(self, values: Mapping[str, Value]) -> list[bool]:
        """Whether each ``where:`` holds for ``values`` (a constraint that fails to evaluate
        does not hold)."""
        results = []
        for constraint in self.where:
            try:
                results.append(bool(evaluate(constraint, values)))
            except ExpressionError:
                results.append(False)
        return results

    def describe(self) -> str:
        """One line per param for a general answer key."""
        parts = []
        for name, options in self.free.items():
            shown = [format_value(v) for v in (options if len(options) <= 8 else options[:3])]
            if len(options) > 8:
                shown += ["...", format_value(options[-1])]
            parts.append(f"{name} ∈ {{{', '.join(shown)}}}")
        parts += [f"{name} = {expression.source}" for name, expression in self.derived.items()]
        if self.where:
            parts.append("where " + " and ".join(w.source for w in self.where))
        return "; ".join(parts)


def describe(values: Mapping[str, Value]) -> str:
    """``B = 32 and D = 8`` for a message to the student."""
    parts = [f"{name} = {format_value(value)}" for name, value in values.items()]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _range_values(spec: Any) -> tuple[Value, ...]:
    low, high, step = (_attribute(spec, k) for k in ("low", "high", "step"))
    if step is None:
        step = 1
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high, step)):
        raise ParamError("a range needs numbers low, high and step")
    if step <= 0:
        raise ParamError("step must be positive")
    if high < low:
        raise ParamError(f"high ({high}) is below low ({low})")
    count = int(math.floor((high - low) / step + 1e-9)) + 1
    if count > MAX_RANGE_VALUES:
        raise ParamError(f"the range holds {count:,} values; at most {MAX_RANGE_VALUES:,}")
    whole = all(isinstance(v, int) or float(v).is_integer() for v in (low, high, step))
    if whole:
        return tuple(int(low) + k * int(step) for k in range(count))
    return tuple(round(low + k * step, 12) for k in range(count))


def _attribute(spec: Any, name: str) -> Any:
    return spec.get(name) if isinstance(spec, dict) else getattr(spec, name, None)


def param_space(params: Mapping[str, Any], where: Sequence[str] = ()) -> tuple[ParamSpace, Problems]:
    """The space a question's ``params``/``where`` describe, and every problem with its path
    (``("params", "H")``, ``("where", 0)``). Each param is a list of values (a choice), a range
    (``low``, ``high``, ``step``) or an expression text (derived from other params)."""
    problems: Problems = []
    free: dict[str, tuple[Value, ...]] = {}
    derived_sources: dict[str, Expression] = {}
    for name, spec in params.items():
        at: tuple[Union[str, int], ...] = ("params", name)
        if name in RESERVED or name.startswith("__"):
            problems.append((at, f"{name!r} is reserved (a function or constant name); choose another name"))
            continue
        if isinstance(spec, str):
            try:
                derived_sources[name] = parse_expression(spec)
            except ExpressionError as err:
                problems.append((at, str(err)))
        elif isinstance(spec, (list, tuple)):
            values = tuple(spec)
            if len(set(values)) != len(values):
                problems.append((at, "a choice lists a value twice"))
            free[name] = values
        else:
            try:
                free[name] = _range_values(spec)
            except ParamError as err:
                problems.append((at, str(err)))
    known = set(params)
    for name, expression in derived_sources.items():
        unknown = sorted(expression.names - known)
        if unknown:
            problems.append((("params", name), f"unknown name(s) {', '.join(unknown)}; the params are {', '.join(params)}"))
    derived, cycle = _evaluation_order(derived_sources)
    if cycle:
        problems.append((("params", cycle[0]), f"derived params depend on each other in a cycle: {' -> '.join(cycle)}"))
    constraints: list[Expression] = []
    for i, source in enumerate(where):
        try:
            constraint = parse_expression(source)
        except ExpressionError as err:
            problems.append((("where", i), str(err)))
            continue
        unknown = sorted(constraint.names - known)
        if unknown:
            problems.append((("where", i), f"unknown name(s) {', '.join(unknown)}; the params are {', '.join(params) or 'none'}"))
            continue
        constraints.append(constraint)
    return ParamSpace(free, derived, tuple(constraints)), problems


def _evaluation_order(derived: dict[str, Expression]) -> tuple[dict[str, Expression], list[str]]:
    """Derived params ordered so each comes after those it reads; a cycle, if any, as a path."""
    ordered: dict[str, Expression] = {}
    state: dict[str, str] = {}
    cycle: list[str] = []

    def visit(name: str, path: list[str]) -> None:
        nonlocal cycle
        if cycle or state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            cycle = path[path.index(name):] + [name]
            return
        state[name] = "visiting"
        for dependency in sorted(derived[name].names & set(derived)):
            visit(dependency, path + [name])
        state[name] = "done"
        ordered[name] = derived[name]

    for name in derived:
        visit(name, [])
    return ordered, cycle


def check_names(source: str, known: set[str]) -> str | None:
    """Why ``source`` is not an expression of ``known`` names, or None when it is."""
    try:
        expression = parse_expression(source)
    except ExpressionError as err:
        return str(err)
    unknown = sorted(expression.names - known)
    if unknown:
        listed = ", ".join(sorted(known)) if known else "none (declare them under 'params:')"
        return f"unknown name(s) {', '.join(unknown)} in {source!r}; the params are {listed}"
    return None
