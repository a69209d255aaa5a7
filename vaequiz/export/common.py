"""What every export shares: the questions to write, their HTML, and what a format skipped."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

from vaequiz.bank.loader import Bank
from vaequiz.bank.models import AnyQuestion, CodeQuestion, NumericAnswer, ShortAnswer
from vaequiz.render.markdown import render_code, render_markdown


DEFAULT_VARIANTS = 5
"""How many fixed draws a format that lists draws writes for each parametric question."""


class ExportError(ValueError):
    """The export cannot be written; the message says why and what to change."""


@dataclass(frozen=True)
class ExportSet:
    """The questions to export, in order, with their effective points (a quiz may override)."""

    name: str
    title: str
    questions: list[AnyQuestion]
    points: dict[str, float]
    bank: Bank
    fixed_draws: dict[str, str] = field(default_factory=dict)
    """Parametric questions exported as one fixed draw: question id -> its numbers. A format
    that carries a question's params itself removes its id (the command reports the rest)."""
    quiz_id: str = ""
    """The quiz id pages are built with (the whole bank's is ``question-bank``): with ``seed``
    it keys every draw, so an export's numbers are the ones `vaequiz build` gives."""
    seed: int = 0
    """The quiz's seed (0 for the whole bank)."""
    parametric: dict[str, AnyQuestion] = field(default_factory=dict)
    """Parametric questions as the bank has them, before the fixed draw bound them."""
    variants: int = DEFAULT_VARIANTS
    """How many fixed draws a format that lists draws writes (``vaequiz export --variants``)."""


@dataclass
class ExportResult:
    """What a format wrote and what it had to leave out, with the reason for each."""

    out: Path
    written: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    """What the format could not carry for the questions it wrote, said on stderr."""


_HIGHLIGHT_SPAN = re.compile(r"</?span[^>]*>")


def _plain_code(rendered: str) -> str:
    """Drop the highlighter's spans: an LMS page lacks their stylesheet, and the bare spans
    would only bloat every export. The renderer escapes raw HTML, so every span is its own."""
    return _HIGHLIGHT_SPAN.sub("", rendered).replace(' tabindex="0"', "")


def html(markdown: str) -> str:
    """Bank Markdown as HTML: math as MathML, code as plain ``<pre><code>``, raw HTML escaped."""
    return _plain_code(render_markdown(markdown)).strip()


def code_html(source: str) -> str:
    """A Python snippet as a ``<pre><code>`` block."""
    return _plain_code(render_code(source)).strip()


def shape_spellings(dims: list[int]) -> list[str]:
    """Accepted ways to write a shape, for formats that match text exactly."""
    if not dims:
        return ["()", "[]", "torch.Size([])", "scalar"]
    comma = ", ".join(map(str, dims))
    tight = ",".join(map(str, dims))
    tuple_comma = comma + ("," if len(dims) == 1 else "")
    tuple_tight = tight + ("," if len(dims) == 1 else "")
    spellings = [
        f"({tuple_comma})", f"({tuple_tight})", f"[{comma}]", f"[{tight}]", comma, tight,
        f"torch.Size([{comma}])", f"torch.Size([{tight}])",
        "x".join(map(str, dims)), " x ".join(map(str, dims)),
    ]
    return list(dict.fromkeys(spellings))


def canonical_shape(dims: list[int]) -> str:
    return shape_spellings(dims)[0]


def absolute_tolerance(question: NumericAnswer) -> float:
    """One absolute tolerance for formats that have no relative one: the wider of the two."""
    return max(question.tolerance, question.relative_tolerance * abs(question.answer))


def grader_info_html(question: AnyQuestion) -> str:
    """What a human marker needs: the model answer and rubric, or the reference and checks."""
    parts: list[str] = []
    if isinstance(question, ShortAnswer):
        parts.append("<p><strong>Model answer</strong></p>" + html(question.model_answer))
        items = []
        for concept in question.rubric:
            accepted = [escape(p) for p in concept.phrasings] + [
                f"<code>{escape(p)}</code>" for p in concept.patterns
            ]
            items.append(f"<li>{escape(concept.name)}: {', '.join(accepted)}</li>")
        parts.append(
            f"<p><strong>Rubric</strong> (pass with {question.pass_fraction:.0%} of the "
            f"concepts)</p><ul>{''.join(items)}</ul>"
        )
    elif isinstance(question, CodeQuestion):
        parts.append("<p><strong>Reference solution</strong></p>" + code_html(question.reference))
        checks = "".join(f"<li>{escape(c.name or c.check)}</li>" for c in question.checks)
        parts.append(
            "<p><strong>Automatic checks</strong> (run by <code>vaequiz grade</code>)</p>"
            f"<ul>{checks}</ul>"
        )
    if question.explanation:
        parts.append("<p><strong>Explanation</strong></p>" + html(question.explanation))
    return "\n".join(parts)


def code_prompt_html(question: CodeQuestion) -> str:
    """The prompt of a code question plus its starter code, for essay-style formats."""
    text = html(question.prompt)
    if question.starter:
        text += "\n<p>Starter code:</p>\n" + code_html(question.starter)
    return text


def load_export_set(bank_path: Path, quiz_path: Path | None = None,
                    variants: int = DEFAULT_VARIANTS) -> ExportSet:
    """The whole bank, or the questions a quiz spec selects (same draw as `vaequiz build`)."""
    from vaequiz.bank.loader import load_bank
    from vaequiz.render.selection import WHOLE_BANK_ID

    bank = load_bank(bank_path)
    if bank.problems:
        listed = "\n".join(str(p) for p in bank.problems[:20])
        raise ExportError(f"the bank has problems; fix them first (`vaequiz validate`):\n{listed}")
    if quiz_path is None:
        return _fixed_draws(ExportSet(
            name=bank_path.resolve().stem or "question-bank",
            title="Question bank",
            questions=list(bank.questions),
            points={q.id: q.points for q in bank.questions},
            bank=bank,
            quiz_id=WHOLE_BANK_ID,
            variants=variants,
        ))
    from vaequiz.render.quiz_spec import QuizSpecError
    from vaequiz.render.selection import quiz_for

    try:
        quiz = quiz_for(bank, quiz_path)
    except QuizSpecError as err:
        raise ExportError("the quiz spec has problems:\n" + str(err)) from None
    return _fixed_draws(ExportSet(quiz.id, quiz.title, list(quiz.questions), dict(quiz.points), bank,
                                  quiz_id=quiz.id, seed=quiz.seed, variants=variants))


def _fixed_draws(selection: ExportSet) -> ExportSet:
    """Parametric questions bound to the anonymous page's draw: the formats carry one set of
    numbers for everyone (the command says so for each)."""
    from vaequiz.bank.parametric import bind, draw_for, is_parametric
    from vaequiz.params import ParamError, describe

    questions: list[AnyQuestion] = []
    for question in selection.questions:
        if is_parametric(question):
            try:
                values = draw_for(question, selection.quiz_id, selection.seed, "")
                selection.fixed_draws[question.id] = describe({k: values[k] for k in question.params or {}})
                selection.parametric[question.id] = question
                question = bind(question, values)
            except ParamError as err:
                raise ExportError(f"parametric question {question.id!r} cannot be drawn: {err}") from None
        questions.append(question)
    selection.questions[:] = questions
    return selection


def distinct_draws(question: AnyQuestion, count: int, quiz_id: str, seed: int) -> list[dict[str, Any]]:
    """Up to ``count`` different draws of a parametric question, stable for (quiz, seed), for
    formats that export fixed variants. Fewer when the question has fewer distinct draws."""
    from vaequiz.bank.parametric import draw_for

    draws: list[dict[str, Any]] = []
    seen: set[tuple[tuple[str, Any], ...]] = set()
    for n in range(count * 20):
        values = draw_for(question, quiz_id, seed, f"variant-{n + 1}")
        numbers = tuple((name, values[name]) for name in question.params or {})
        if numbers not in seen:
            seen.add(numbers)
            draws.append(values)
            if len(draws) == count:
                break
    return draws


def fixed_variants(selection: ExportSet, question: AnyQuestion) -> list[tuple[str, AnyQuestion]]:
    """A parametric question as ``selection.variants`` fixed draws (fewer when it has fewer),
    each bound and with its numbers as text (``B = 32 and D = 8``), for formats that list draws."""
    from vaequiz.bank.parametric import bind
    from vaequiz.params import ParamError, describe

    original = selection.parametric.get(question.id, question)
    try:
        return [
            (describe({k: values[k] for k in original.params or {}}), bind(original, values))
            for values in distinct_draws(original, selection.variants, selection.quiz_id, selection.seed)
        ]
    except ParamError as err:
        raise ExportError(f"parametric question {question.id!r} cannot be drawn: {err}") from None


def carried(selection: ExportSet, result: ExportResult, question_id: str, how: str) -> None:
    """A format carried a parametric question its own way: stderr says how, instead of the
    one-fixed-draw note."""
    selection.fixed_draws.pop(question_id, None)
    result.lost.append(f"{question_id}: parametric; {how}")
