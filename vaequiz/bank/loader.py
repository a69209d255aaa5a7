"""Load a bank folder into validated models, collecting every problem with its file:line:column."""

from __future__ import annotations

import difflib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Literal

from pydantic import BaseModel, TypeAdapter, ValidationError

from vaequiz.bank.models import (
    QUESTION_KINDS,
    AnyQuestion,
    CodeQuestion,
    MultipleChoice,
    is_markdown_field,
    models_in,
    question_adapter,
)
from vaequiz.bank.yaml_source import (
    Location,
    SourceMap,
    YamlSourceError,
    read_yaml_file,
)
from vaequiz.formulas import formula_errors


@dataclass(frozen=True, order=True)
class Problem:
    """One thing an author must fix, printed as ``file:line:column: field.path: message``."""

    location: Location
    field_path: str
    message: str

    def __str__(self) -> str:
        prefix = f"{self.location}: "
        return prefix + (f"{self.field_path}: " if self.field_path else "") + self.message


@dataclass
class Bank:
    """A loaded bank: questions in file order, where each came from, and what is wrong."""

    root: Path
    questions: list[AnyQuestion] = field(default_factory=list)
    locations: dict[str, Location] = field(default_factory=dict)
    source_maps: dict[str, tuple[SourceMap, tuple[Any, ...]]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def get(self, question_id: str) -> AnyQuestion:
        for question in self.questions:
            if question.id == question_id:
                return question
        raise KeyError(question_id)

    def by_id(self) -> dict[str, AnyQuestion]:
        return {q.id: q for q in self.questions}

    def locate(self, question_id: str, field_path: tuple[Any, ...] = ()) -> Location:
        """Where a question, or one of its fields, is written."""
        source_map, prefix = self.source_maps[question_id]
        return source_map.locate(prefix + field_path)


class BankLoadError(Exception):
    """Raised by :func:`load_bank_or_raise` when the bank has problems."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


def _display(file: Path, root: Path) -> str:
    try:
        return str(file.relative_to(Path.cwd()))
    except ValueError:
        return str(file)


QUIZ_SUFFIXES = (".quiz.yaml", ".quiz.yml")
"""Quiz specs may sit beside the questions; they are not question files."""


def bank_files(root: Path) -> list[Path]:
    """Every ``*.yaml``/``*.yml`` question file under ``root``, sorted; hidden folders and quiz
    specs (``*.quiz.yaml``) skipped."""
    if root.is_file():
        return [root]
    files = [
        p
        for p in root.rglob("*")
        if p.suffix in (".yaml", ".yml")
        and not p.name.endswith(QUIZ_SUFFIXES)
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    ]
    return sorted(files)


def load_bank(root: Path | str, *, check_formulas: bool = False) -> Bank:
    """Load and validate every question under ``root``; never raises for bad content.

    With ``check_formulas`` (``validate``, ``lint``), a formula in any Markdown field that cannot
    be converted to MathML is a problem too; other commands leave that to the pages that
    render the field, so an exam builds while an unshown explanation is being fixed.
    """
    root = Path(root)
    bank = Bank(root=root)
    if not root.exists():
        bank.problems.append(Problem(Location(str(root), 1, 1), "", "no such file or folder"))
        return bank
    bank.files = bank_files(root)
    if not bank.files:
        bank.problems.append(
            Problem(Location(str(root), 1, 1), "", "no .yaml files found in this folder")
        )
    first_seen: dict[str, Location] = {}
    for file in bank.files:
        display = _display(file, root)
        for question, location, source_map, prefix in _load_file(file, display, bank.problems):
            if question.id in first_seen:
                bank.problems.append(
                    Problem(
                        source_map.locate(prefix + ("id",)),
                        "id",
                        f"duplicate id '{question.id}' (first defined at {first_seen[question.id]}); "
                        "ids must be unique across the bank",
                    )
                )
                continue
            first_seen[question.id] = location
            bank.questions.append(question)
            bank.locations[question.id] = location
            bank.source_maps[question.id] = (source_map, prefix)
            if check_formulas:
                bank.problems.extend(formula_problems(question, source_map, prefix))
    bank.problems.extend(_cross_question_problems(bank))
    bank.problems.sort()
    return bank


def load_bank_or_raise(root: Path | str) -> Bank:
    bank = load_bank(root)
    if bank.problems:
        raise BankLoadError(bank.problems)
    return bank


def _load_file(
    file: Path, display: str, problems: list[Problem]
) -> Iterable[tuple[AnyQuestion, Location, SourceMap, tuple[Any, ...]]]:
    try:
        data, source_map = read_yaml_file(file, display)
    except YamlSourceError as err:
        problems.append(Problem(err.location, "", err.message))
        return
    if data is None:
        problems.append(
            Problem(
                Location(display, 1, 1),
                "",
                "file is empty; write a list of questions (or delete the file)",
            )
        )
        return
    if isinstance(data, dict):
        entries: list[tuple[Any, tuple[Any, ...]]] = [(data, ())]
    elif isinstance(data, list):
        entries = [(item, (i,)) for i, item in enumerate(data)]
        if not entries:
            problems.append(Problem(Location(display, 1, 1), "", "file holds an empty list"))
    else:
        problems.append(
            Problem(
                source_map.locate(()),
                "",
                "a bank file holds a list of questions (or one question as a mapping), "
                f"not a {type(data).__name__}",
            )
        )
        return
    for item, prefix in entries:
        found = validate_located(question_adapter, item, source_map, prefix, _question_hint)
        if isinstance(found, list):
            problems.extend(found)
        else:
            yield found, source_map.locate(prefix), source_map, prefix


def _question_hint(item: Any) -> type[BaseModel] | None:
    if isinstance(item, dict):
        return QUESTION_KINDS.get(str(item.get("kind")))
    return None


def validate_located(
    adapter: TypeAdapter[Any],
    item: Any,
    source_map: SourceMap,
    prefix: tuple[Any, ...] = (),
    model_hint: Any = None,
) -> Any:
    """Validate ``item``; on failure return a list of located, author-friendly problems."""
    try:
        return adapter.validate_python(item)
    except ValidationError as err:
        model = model_hint(item) if model_hint else None
        errors = err.errors()
        problems = [_problem_from_error(e, item, source_map, prefix, model) for e in errors]
        return _merge_union_alternatives(problems, errors)


def _merge_union_alternatives(problems: list[Problem], errors: list[Any]) -> list[Problem]:
    """One problem per value: a value that fits no member of a union (``shape: [1.5]``, where
    a size or a name fits) gets one line naming every type it may have, not one per member."""
    merged: list[Problem] = []
    alternatives: list[str] = []
    for problem, error in zip(problems, errors):
        is_type_error = error["type"].endswith("_type")
        previous = merged[-1] if merged else None
        if (
            is_type_error
            and previous is not None
            and alternatives
            and (previous.location, previous.field_path) == (problem.location, problem.field_path)
        ):
            alternatives.append(error["msg"].removeprefix("Input should be "))
            message = "Input should be " + " or ".join(alternatives)
            merged[-1] = Problem(
                problem.location, problem.field_path, message + _how_yaml_read(error["input"], "")
            )
            continue
        merged.append(problem)
        alternatives = [error["msg"].removeprefix("Input should be ")] if is_type_error else []
    return merged


_TAGS = set(QUESTION_KINDS)


def _problem_from_error(
    error: Any,
    item: Any,
    source_map: SourceMap,
    prefix: tuple[Any, ...],
    model: type[BaseModel] | None,
) -> Problem:
    loc = tuple(error["loc"])
    # Discriminated unions put the tag first ("mcq", "options", ...); nested unions add the
    # tag of the chosen member ("tensor", "check" values) or a class name: drop those parts.
    clean: list[Any] = []
    node: Any = item
    for part in loc:
        if isinstance(node, dict) and part in node:
            clean.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            clean.append(part)
            node = node[part]
        elif isinstance(node, dict) and error["type"] in ("missing", "field_missing", "extra_forbidden"):
            if part == loc[-1]:
                clean.append(part)
        # else: a union tag or model name inserted by pydantic, or an index into a value
        # written as a scalar (``answer: E``); skip it
    path = tuple(clean)
    field_path = ".".join(str(p) for p in path)
    kind = error["type"]
    message = error["msg"]
    if kind == "extra_forbidden":
        location = source_map.locate(prefix + path, key=True)
        allowed = _allowed_fields(item, path[:-1], model)
        suggestion = difflib.get_close_matches(str(path[-1]), allowed, n=1)
        message = f"unknown field '{path[-1]}'"
        if suggestion:
            message += f"; did you mean '{suggestion[0]}'?"
        elif allowed:
            message += f"; allowed fields: {', '.join(sorted(allowed))}"
        return Problem(location, field_path, message)
    if kind in ("missing", "field_missing"):
        location = source_map.locate(prefix + path[:-1])
        message = message if kind == "field_missing" else f"missing required field '{path[-1]}'"
        return Problem(location, field_path, message)
    if kind == "union_tag_invalid":
        ctx = error.get("ctx", {})
        tag = ctx.get("discriminator", "kind").strip("'")
        message = (
            f"unknown {tag} {ctx.get('tag')!r}; expected one of {ctx.get('expected_tags')}"
        )
        return Problem(source_map.locate(prefix + path + (tag,)), f"{field_path}.{tag}".strip("."), message)
    if kind == "union_tag_not_found":
        ctx = error.get("ctx", {})
        tag = ctx.get("discriminator", "kind").strip("'")
        return Problem(
            source_map.locate(prefix + path), field_path, f"missing required field '{tag}'"
        )
    if kind == "value_error":
        message = message.removeprefix("Value error, ")
    elif kind.endswith("_type") or kind == "enum":
        message += _how_yaml_read(error.get("input"), kind)
    elif kind == "string_pattern_mismatch":
        message = _pattern_message(path, error)
    return Problem(source_map.locate(prefix + path), field_path, message)


_EXPECTED_BY_TYPE = {"int_type": "int", "float_type": "float", "bool_type": "bool"}


def _how_yaml_read(value: Any, kind: str) -> str:
    """What YAML made of a value of the wrong type, and the fix, for a type error's message.

    YAML types unquoted scalars by their look (``12345`` is a number, ``yes`` a boolean), so
    the author often wrote what they meant and only the quotes are wrong.
    """
    wants_text = kind == "string_type"
    if isinstance(value, bool):
        shown = str(value).lower()
        fix = ": put it in quotes" if wants_text else ""
        return f"; YAML read this value as the boolean {shown} (yes/no/on/off/true/false){fix}"
    if value is None:
        return "; the value is empty (YAML null)"
    if isinstance(value, (int, float)):
        return f"; YAML read this value as the number {value!r}" + (": put it in quotes" if wants_text else "")
    if isinstance(value, str):
        if kind == "enum":
            return ""  # the message names the allowed values already
        expected = _EXPECTED_BY_TYPE.get(kind)
        if expected == "bool" and value.lower() in ("true", "false", "yes", "no", "on", "off"):
            return f"; {value!r} is quoted, so it is text: write true or false without quotes"
        if expected in ("int", "float") and _parses_as(value, int if expected == "int" else float):
            return f"; {value!r} is quoted, so it is text: remove the quotes"
        return f"; the value is the text {value!r}"
    if isinstance(value, list):
        return "; YAML read this value as a list"
    if isinstance(value, dict):
        return "; YAML read this value as a mapping (key: value)"
    return ""


def _parses_as(text: str, number: type) -> bool:
    try:
        number(text)
    except ValueError:
        return False
    return True


def _pattern_message(path: tuple[Any, ...], error: Any) -> str:
    name = str(path[-1]) if path else ""
    value = error.get("input")
    if name in ("id", "code_question") or (len(path) >= 2 and path[-2] == "topics"):
        return f"{value!r} is not kebab-case (lowercase letters, digits and single hyphens)"
    if name == "label" or (len(path) >= 2 and path[-2] == "answer") or name == "answer":
        return f"{value!r} is not an option label (a single capital letter: A, B, C, ...)"
    if name == "source":
        return f"{value!r} is not a seed name (e.g. '002_b75ee90b928972ce#q4') or 'original'"
    return f"{value!r} does not match the expected form {error.get('ctx', {}).get('pattern')}"


def _allowed_fields(item: Any, parent: tuple[Any, ...], model: type[BaseModel] | None) -> list[str]:
    """Field names allowed at ``parent``, found by walking the models along the data path.

    A field's annotation is resolved to a model only at the node that holds its value, so each
    element of a list or mapping of a union (checks, given inputs) picks its own member.
    """
    if model is None:
        return []
    annotation: Any = model
    node: Any = item
    for part in parent:
        if not isinstance(part, int):
            current = _pick_model(annotation, node)
            fields = {f.alias or n: f for n, f in current.model_fields.items()} if current else {}
            if part in fields:
                annotation = fields[part].annotation
            elif current is not None:
                return []
            # else: a key of a mapping field (a given name); its value has the same annotation
        node = node[part] if isinstance(node, (dict, list)) else None
    current = _pick_model(annotation, node)
    return [f.alias or name for name, f in current.model_fields.items()] if current else []


def _pick_model(annotation: Any, node: Any) -> type[BaseModel] | None:
    """The model ``node`` is validated as: the only one the annotation allows, or the member of a
    tagged union whose tag (``kind``, ``check``, ``type``, ``probe``) the node names."""
    if not isinstance(node, dict):
        return None
    candidates = models_in(annotation)
    if len(candidates) == 1:
        return candidates[0]
    for candidate in candidates:
        for name, f in candidate.model_fields.items():
            tag = typing.get_args(f.annotation)
            if tag and typing.get_origin(f.annotation) is Literal and node.get(name) in tag:
                return candidate
    return None


def markdown_fields(model: BaseModel, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], str]]:
    """Every Markdown text in a question with its field path, found from the models' types."""
    for name, model_field in type(model).model_fields.items():
        value = getattr(model, name)
        key = model_field.alias or name
        if isinstance(value, str) and is_markdown_field(model_field):
            yield path + (key,), value
        elif isinstance(value, BaseModel):
            yield from markdown_fields(value, path + (key,))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, BaseModel):
                    yield from markdown_fields(item, path + (key, i))


def formula_problems(
    question: BaseModel, source_map: SourceMap, prefix: tuple[Any, ...] = ()
) -> list[Problem]:
    """A formula in any Markdown field that cannot be converted to MathML would stop every page
    showing it; it is a problem of the bank, located at its field."""
    problems = []
    for path, text in markdown_fields(question):
        for err in formula_errors(text):
            problems.append(
                Problem(
                    source_map.locate(prefix + path),
                    ".".join(map(str, path)),
                    f"{err}; fix the LaTeX (`vaequiz render` shows the result)",
                )
            )
    return problems


def _cross_question_problems(bank: Bank) -> list[Problem]:
    problems: list[Problem] = []
    by_id = bank.by_id()
    for question in bank.questions:
        if isinstance(question, MultipleChoice) and question.code_question:
            target = by_id.get(question.code_question)
            if not isinstance(target, CodeQuestion):
                what = "no question" if target is None else f"a {target.kind} question"
                problems.append(
                    Problem(
                        bank.locate(question.id, ("code_question",)),
                        "code_question",
                        f"'{question.code_question}' is {what}; it must name a code question",
                    )
                )
    return problems
