"""Parametric questions: the rules between a question's ``params`` and the texts and answers that
use them, and *binding*: a question plus one student's numbers becomes a plain question.

Binding is the one mechanism every consumer uses: render, grading, verify and feedback take the
bound question (texts filled in, answers computed, the per-draw MCQ key) and need nothing new.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping, Union

from pydantic import BaseModel, ValidationError

from vaequiz.bank.models import (
    AnyQuestion,
    MultipleChoice,
    NumericAnswer,
    QuestionBase,
    RuleProblems,
    ShapeAnswer,
    is_markdown_field,
    question_adapter,
)
from vaequiz.expressions import ExpressionError, Value, evaluate, format_value
from vaequiz.params import (
    ParamError,
    Params,
    ParamSpace,
    check_names,
    describe,
    fill,
    param_space,
    placeholders,
    show_general,
)

__all__ = [
    "ParamError",
    "bind",
    "draw_for",
    "general_form",
    "is_parametric",
    "param_problems",
    "space_of",
    "text_fields",
]

PLAIN_TEXT_FIELDS = frozenset({"starter"})
"""Text fields that are not Markdown but still show a student's numbers."""

Path = tuple[Union[str, int], ...]


def is_parametric(question: Any) -> bool:
    return bool(getattr(question, "params", None))


def text_fields(model: BaseModel, path: Path = ()) -> Iterator[tuple[Path, str]]:
    """Every text that may hold placeholders, with its field path (aliases as written)."""
    for name, model_field in type(model).model_fields.items():
        value = getattr(model, name)
        key = model_field.alias or name
        if isinstance(value, str) and (is_markdown_field(model_field) or name in PLAIN_TEXT_FIELDS):
            yield path + (key,), value
        elif isinstance(value, BaseModel):
            yield from text_fields(value, path + (key,))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, BaseModel):
                    yield from text_fields(item, path + (key, i))


def _answer_expressions(question: QuestionBase) -> Iterator[tuple[Path, str]]:
    if isinstance(question, ShapeAnswer):
        yield from ((("answer", i), d) for i, d in enumerate(question.answer) if isinstance(d, str))
    elif isinstance(question, NumericAnswer) and isinstance(question.answer, str):
        yield ("answer",), question.answer
    elif isinstance(question, MultipleChoice):
        yield from ((("options", i, "correct_if"), o.correct_if) for i, o in enumerate(question.options) if o.correct_if)


def space_of(question: QuestionBase) -> ParamSpace:
    """The question's parameter space (the question is valid, so it has no problems)."""
    space, _ = param_space(question.params or {}, question.where)
    return space


def param_problems(question: QuestionBase) -> RuleProblems:
    """Every way the question's params, placeholders and answer expressions disagree, each at
    the path of the value to fix."""
    problems: RuleProblems = []
    params = question.params or {}
    known = set(params)
    if not params:
        if question.where:
            problems.append((("where",), "'where' constrains params, but the question declares none under 'params:'"))
        for at, source in _answer_expressions(question):
            what = "correct_if" if at[-1] == "correct_if" else "an answer"
            problems.append((at, f"{what} is the text {source!r}: without 'params:' write a number "
                             "(remove the quotes), or declare the params it uses"))
        for at, text in text_fields(question):
            found, _ = placeholders(text)
            named = [p for p in found if p.expression.names]
            if named:
                problems.append((at, f"placeholder {named[0].text} shows a param, but the question declares none under 'params:'"))
        return problems
    _, space_problems = param_space(params, question.where)
    problems += space_problems
    for at, source in _answer_expressions(question):
        why = check_names(source, known)
        if why:
            problems.append((at, why))
    for at, text in text_fields(question):
        found, errors = placeholders(text)
        problems += [(at, message) for message in errors]
        for placeholder in found:
            unknown = sorted(placeholder.expression.names - known)
            if unknown:
                problems.append((at, f"placeholder {placeholder.text} uses {', '.join(unknown)}, which is not a param "
                                 f"(the params are {', '.join(params)})"))
    return problems


def draw_for(question: QuestionBase, quiz_id: str, seed: int, student: str) -> Params:
    """One student's numbers for ``question`` in a quiz build (empty for a plain question)."""
    if not is_parametric(question):
        return {}
    return space_of(question).draw(quiz_id, seed, student, question.id)


def _whole(value: Value, what: str) -> int:
    if isinstance(value, bool) or not float(value).is_integer() or value < 0:
        raise ParamError(f"{what} is {format_value(value)}, not a whole number of at least 0")
    return int(value)


def per_draw_key(question: MultipleChoice, values: Mapping[str, Value]) -> list[str]:
    """The options right for ``values``: by ``correct_if`` where given, else by ``answer``."""
    key = []
    for option in question.options:
        right = bool(evaluate(option.correct_if, values)) if option.correct_if else option.label in question.answer
        if right:
            key.append(option.label)
    return key


def bind(question: AnyQuestion, values: Mapping[str, Value]) -> AnyQuestion:
    """``question`` for one student's ``values``: every placeholder filled in, every answer
    computed, the MCQ key decided per draw; the result is a plain question, validated again.

    Raises :class:`ParamError` naming the numbers when the draw makes the question unusable
    (an answer that does not evaluate, a shape size that is not whole, no right option).
    """
    if not is_parametric(question):
        return question
    missing = sorted(set(question.params or {}) - set(values))
    if missing:
        raise ParamError(f"{question.id}: no value for {', '.join(missing)}")
    numbers = describe({k: values[k] for k in question.params or {}})
    data = question.model_dump(mode="json", by_alias=True, exclude={"params", "where"})
    try:
        for path, text in text_fields(question):
            _set(data, path, fill(text, values))
        if isinstance(question, ShapeAnswer):
            data["answer"] = [
                _whole(evaluate(d, values), f"size {i + 1} ({d})") if isinstance(d, str) else d
                for i, d in enumerate(question.answer)
            ]
        elif isinstance(question, NumericAnswer) and isinstance(question.answer, str):
            data["answer"] = float(evaluate(question.answer, values))
        elif isinstance(question, MultipleChoice):
            key = per_draw_key(question, values)
            data["answer"] = key
            for option in data["options"]:
                option.pop("correct_if", None)
    except (ExpressionError, ParamError) as err:
        raise ParamError(f"{question.id}: for {numbers}: {err}") from None
    try:
        return question_adapter.validate_python(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"][1:])
        raise ParamError(f"{question.id}: for {numbers}: {where}: {first['msg']}") from None


def general_form(question: AnyQuestion) -> AnyQuestion:
    """``question`` as a general answer key shows it: placeholders as their expressions, the
    params described before the text, answers as formulas, conditions beside the options.

    Not validated again (an answer may be a formula); only render it."""
    if not is_parametric(question):
        return question
    general = question.model_copy(deep=True)
    for path, text in text_fields(question):
        _set_attribute(general, path, show_general(text))
    field = {"mcq": "stem", "flashcard": "front"}.get(question.kind, "prompt")
    intro = f"*For each student:* {space_of(question).describe()}.\n\n"
    object.__setattr__(general, field, intro + getattr(general, field))
    if isinstance(general, MultipleChoice):
        for option in general.options:
            if option.correct_if:
                note = f"Right when `{option.correct_if}`."
                object.__setattr__(option, "feedback", note + (" " + option.feedback if option.feedback else ""))
    return general


def _set(data: Any, path: Path, value: str) -> None:
    node = data
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value


def _set_attribute(model: Any, path: Path, value: str) -> None:
    node = model
    for i, part in enumerate(path):
        if isinstance(part, int):
            node = node[part]
            continue
        attribute = next(
            (name for name, f in type(node).model_fields.items() if part in (name, f.alias)), str(part)
        )
        if i == len(path) - 1:
            object.__setattr__(node, attribute, value)
        else:
            node = getattr(node, attribute)


def sample_students(question: QuestionBase, count: int, quiz_id: str = "verify", seed: int = 0) -> list[Params]:
    """``count`` draws as ``count`` different students would get them (for verify and tests)."""
    space = space_of(question)
    return [space.draw(quiz_id, seed, f"student-{i}", question.id) for i in range(count)]


def used_names(question: QuestionBase) -> set[str]:
    """Params the question's texts, answers or other params read."""
    from vaequiz.params import placeholders as find

    used: set[str] = set()
    for _, text in text_fields(question):
        used |= {name for p in find(text)[0] for name in p.expression.names}
    for _, source in _answer_expressions(question):
        used |= _names_of(source)
    space = space_of(question)
    for expression in space.derived.values():
        used |= expression.names
    return used


def shown_names(question: QuestionBase) -> set[str]:
    """Params some text shows the student (directly or through a derived one it uses)."""
    from vaequiz.params import placeholders as find

    space = space_of(question)
    shown = {name for _, text in text_fields(question) for p in find(text)[0] for name in p.expression.names}
    changed = True
    while changed:
        extra = {n for name in shown if name in space.derived for n in space.derived[name].names} - shown
        shown |= extra
        changed = bool(extra)
    return shown


def _names_of(source: str) -> set[str]:
    from vaequiz.expressions import parse_expression

    return set(parse_expression(source).names)
