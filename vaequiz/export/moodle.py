"""Moodle XML (question bank import format).

Kinds: mcq -> multichoice (single or multiple), short_answer -> essay with the model answer and
rubric as grader information, shape -> shortanswer with every accepted spelling, numeric ->
numerical (one absolute tolerance), code -> essay with the prompt and starter code (Moodle
cannot run the checks). Flashcards are not graded and are skipped. Text is HTML in CDATA with
math as MathML (rendered natively by browsers) and code as highlighted ``<pre><code>``.

Parametric questions: a numeric one becomes a ``calculated`` question: ``{B}`` wildcards in its
texts (``{=formula}`` where a placeholder computes), its answer as a Moodle formula
(:mod:`vaequiz.export.moodle_formula`) and a private dataset whose items are vaequiz's own draws
(so ``where:`` holds and derived params agree; each item number is one joint draw). Any other
parametric question, and a numeric one whose answer or texts Moodle cannot compute, goes out as
``--variants`` fixed draws in a category of its own with a ``random`` question drawing from it.
"""

from __future__ import annotations

import ast
import math
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

from vaequiz.bank.models import (
    AnyQuestion,
    CodeQuestion,
    MultipleChoice,
    NumericAnswer,
    ShapeAnswer,
    ShortAnswer,
)
from vaequiz.export.common import (
    ExportResult,
    ExportSet,
    absolute_tolerance,
    carried,
    code_html,
    code_prompt_html,
    distinct_draws,
    fixed_variants,
    grader_info_html,
    html,
    shape_spellings,
)
from vaequiz.export.moodle_formula import NotExpressible, moodle_formula, moodle_value, same_number, wildcard
from vaequiz.expressions import Expression, evaluate, parse_expression
from vaequiz.params import PLACEHOLDER, describe, placeholders

DATASET_ITEMS = 50
"""Joint draws written into a calculated question's dataset (Moodle's editor allows 100)."""
TOLERANCE_RELATIVE, TOLERANCE_NOMINAL = 1, 2
"""Moodle's ``tolerancetype`` codes (qtype_numerical: relative, nominal, geometric = 3)."""
ANSWER_DECIMALS, ANSWER_SIGNIFICANT = 1, 2
"""Moodle's ``correctanswerformat`` codes: how the shown correct answer is rounded."""
_TOKEN = "7391046"
"""Prefix of the digit strings that stand for placeholders while Markdown and math render:
digits pass through Markdown, code highlighting and LaTeX (as one ``<mn>``) unchanged."""

MOODLE_FRACTIONS = (
    100, 90, 83.33333, 80, 75, 70, 66.66667, 60, 50, 40, 33.33333, 30, 25, 20, 16.66667,
    14.28571, 12.5, 11.11111, 10, 5, 0,
)
"""The grades Moodle's question editor offers; an import with any other value is refused."""


def moodle_fraction(percent: float) -> str:
    """The Moodle grade nearest to ``percent`` (sign kept), written as Moodle writes it."""
    nearest = min(MOODLE_FRACTIONS, key=lambda f: abs(f - abs(percent)))
    value = -nearest if percent < 0 else nearest
    return f"{value:.5f}".rstrip("0").rstrip(".") if value else "0"


def cdata(text: str) -> str:
    """Wrap text in CDATA; a ``]]>`` inside is split across two sections so it survives."""
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def _text(tag: str, content: str, *, fmt: str | None = "html") -> str:
    attribute = f' format="{fmt}"' if fmt else ""
    return f"<{tag}{attribute}><text>{cdata(content)}</text></{tag}>"


def _plain(tag: str, value: object) -> str:
    from xml.sax.saxutils import escape

    return f"<{tag}>{escape(str(value))}</{tag}>"


def _head(question: AnyQuestion, kind: str, text: str, points: float,
          feedback: str | None = None) -> list[str]:
    if feedback is None:
        feedback = html(question.explanation) if question.explanation else ""
    return [
        f'<question type="{kind}">',
        f"<name>{_plain('text', question.id)}</name>",
        _text("questiontext", text),
        _text("generalfeedback", feedback),
        _plain("defaultgrade", f"{points:g}"),
        _plain("penalty", "0.3333333"),
        _plain("hidden", 0),
        _plain("idnumber", question.id),
    ]


def _tags(question: AnyQuestion) -> str:
    tags = [*question.topics, f"difficulty-{question.difficulty}"]
    return "<tags>" + "".join(f"<tag>{_plain('text', t)}</tag>" for t in tags) + "</tags>"


def _option_html(option: object) -> str:
    text = getattr(option, "text", None)
    code = getattr(option, "code", None)
    return (html(text) if text else "") + (code_html(code) if code else "")


def multichoice(question: MultipleChoice, points: float) -> list[str]:
    """Single: key 100, others 0. Multiple: each key 100/k; each wrong option -100/(n-k), so
    ticking everything scores 0 (Moodle never goes below 0 for the question)."""
    lines = _head(question, "multichoice", html(question.stem), points)
    keys = set(question.answer)
    wrong = len(question.options) - len(keys)
    lines += [
        _plain("single", "false" if question.multiple else "true"),
        _plain("shuffleanswers", "true" if question.shuffle else "false"),
        _plain("answernumbering", "ABCD"),
        _text("correctfeedback", "Your answer is correct."),
        _text("partiallycorrectfeedback", "Your answer is partially correct."),
        _text("incorrectfeedback", "Your answer is incorrect."),
    ]
    for option in question.options:
        if option.label in keys:
            percent = 100 / len(keys)
        else:
            percent = -100 / wrong if question.multiple and wrong else 0
        lines.append(f'<answer fraction="{moodle_fraction(percent)}" format="html">'
                     f"<text>{cdata(_option_html(option))}</text>"
                     + _text("feedback", html(option.feedback) if option.feedback else "")
                     + "</answer>")
    if question.hint:
        lines.append(_text("hint", html(question.hint)))
    return lines


def essay(question: AnyQuestion, points: float, text: str, template: str = "",
          monospaced: bool = False) -> list[str]:
    lines = _head(question, "essay", text, points)
    lines += [
        _plain("responseformat", "monospaced" if monospaced else "editor"),
        _plain("responserequired", 1),
        _plain("responsefieldlines", 15),
        _plain("attachments", 0),
        _plain("attachmentsrequired", 0),
        _text("graderinfo", grader_info_html(question)),
        _text("responsetemplate", template, fmt="plain_text" if monospaced else "html"),
    ]
    return lines


def shortanswer(question: ShapeAnswer, points: float) -> list[str]:
    lines = _head(question, "shortanswer", html(question.prompt), points)
    lines.append(_plain("usecase", 0))
    for spelling in shape_spellings(question.answer):
        lines.append(f'<answer fraction="100" format="moodle_auto_format">'
                     f"{_plain('text', spelling)}{_text('feedback', '')}</answer>")
    return lines


def numerical(question: NumericAnswer, points: float) -> list[str]:
    lines = _head(question, "numerical", html(question.prompt), points)
    lines.append(f'<answer fraction="100" format="moodle_auto_format">'
                 f"{_plain('text', repr(float(question.answer)))}"
                 f"{_plain('tolerance', repr(absolute_tolerance(question)))}"
                 f"{_text('feedback', '')}</answer>")
    lines += [_plain("unitgradingtype", 0), _plain("unitpenalty", "0.1000000"),
              _plain("showunits", 3), _plain("unitsleft", 0)]
    return lines


class _Wildcards:
    """Placeholders of a parametric question's texts turned into Moodle's ``{B}`` and
    ``{=formula}``, collecting the names shown and the number formats Moodle cannot keep."""

    def __init__(self) -> None:
        self.names: set[str] = set()
        self.formats: set[str] = set()
        self.computed: list[Expression] = []
        """The expressions shown as ``{=formula}``, checked against vaequiz for every draw."""

    def html(self, markdown: str) -> str:
        """``markdown`` as HTML with Moodle's wildcards in place of the placeholders."""
        found, errors = placeholders(markdown)
        if errors or len(found) != len(PLACEHOLDER.findall(markdown)):
            raise NotExpressible("a placeholder does not parse")
        if _TOKEN in markdown:
            raise NotExpressible(f"the text holds the digits {_TOKEN}, which stand for placeholders")
        tokens: dict[str, str] = {}

        def token(match: re.Match[str]) -> str:
            placeholder = found[len(tokens)]
            key = f"{_TOKEN}{len(tokens):05d}"
            tokens[key] = self._moodle(placeholder.expression, placeholder.spec)
            return key

        rendered = html(PLACEHOLDER.sub(token, markdown))
        braces = re.search(r"\{=|\{[A-Za-z][A-Za-z0-9\-_\s]*\}", rendered)
        if braces:
            raise NotExpressible(f"its text holds {braces.group(0)!r}, which Moodle would read as a wildcard")
        for key, wild in tokens.items():
            if key not in rendered:
                raise NotExpressible("a placeholder did not survive rendering")
            rendered = rendered.replace(key, wild)
        return rendered

    def _moodle(self, expression: Expression, spec: str) -> str:
        self.names |= set(expression.names)
        if isinstance(expression.tree, ast.Name) and not spec:
            return wildcard(expression.source)
        formula = moodle_formula(expression)
        self.computed.append(expression)
        decimals = re.fullmatch(r"\.(\d+)f", spec)
        if decimals:
            return "{=round(" + formula + ", " + decimals.group(1) + ")}"
        if spec:
            self.formats.add(spec)
        return "{=" + formula + "}"


def _dataset_value(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise NotExpressible(f"the value {value!r} is not a number")
    return str(value) if isinstance(value, int) else repr(float(value))


def _decimals(text: str) -> int:
    return max(0, -int(Decimal(text).as_tuple().exponent))


def _dataset(name: str, values: list[str]) -> str:
    numbers = [float(v) for v in values]
    items = "".join(f"<dataset_item>{_plain('number', i)}{_plain('value', v)}</dataset_item>"
                    for i, v in enumerate(values, 1))
    low = values[numbers.index(min(numbers))]
    high = values[numbers.index(max(numbers))]
    return ("<dataset_definition>"
            f"<status>{_plain('text', 'private')}</status><name>{_plain('text', name)}</name>"
            f"{_plain('type', 'calculated')}<distribution>{_plain('text', 'uniform')}</distribution>"
            f"<minimum>{_plain('text', low)}</minimum><maximum>{_plain('text', high)}</maximum>"
            f"<decimals>{_plain('text', max(_decimals(v) for v in values))}</decimals>"
            f"{_plain('itemcount', len(values))}<dataset_items>{items}</dataset_items>"
            f"{_plain('number_of_items', len(values))}</dataset_definition>")


def _tolerance(question: NumericAnswer, answers: list[float], lost: list[str]) -> tuple[int, float]:
    """Moodle's tolerance type and value for vaequiz's (absolute or relative) acceptance."""
    if not question.relative_tolerance:
        return TOLERANCE_NOMINAL, question.tolerance
    if not question.tolerance:
        return TOLERANCE_RELATIVE, question.relative_tolerance
    strictest = min(max(question.tolerance, question.relative_tolerance * abs(a)) for a in answers)
    lost.append(f"{question.id}: Moodle has one kind of tolerance; the absolute ± {strictest:g} is "
                "the strictest over the dataset, so some answers vaequiz accepts are refused")
    return TOLERANCE_NOMINAL, strictest


def _answer_rounding(kind: int, tolerance: float, answers: list[float]) -> tuple[int, int]:
    """How Moodle shows the correct answer: one digit finer than the tolerance."""
    if tolerance > 0:
        digits = min(10, max(0, math.ceil(-math.log10(tolerance)) + 1))
        return (ANSWER_SIGNIFICANT, max(1, digits)) if kind == TOLERANCE_RELATIVE else (ANSWER_DECIMALS, digits)
    whole = all(float(a).is_integer() for a in answers)
    return ANSWER_DECIMALS, 0 if whole else 6


def _same_in_moodle(expression: Expression, values: dict[str, Any]) -> None:
    """Refuse a formula Moodle would compute differently for ``values`` (float floor division
    at a boundary, say): the question then falls back to fixed draws."""
    vaequiz = float(evaluate(expression, values))
    try:
        moodle = moodle_value(expression, values)
    except (ArithmeticError, ValueError):
        moodle = math.nan
    if not same_number(moodle, vaequiz):
        raise NotExpressible(f"for {describe(values)}, Moodle's {moodle_formula(expression)} gives "
                             f"{moodle:g} where vaequiz's {expression.source} gives {vaequiz:g}")


def calculated(question: NumericAnswer, points: float, draws: list[dict[str, Any]],
               lost: list[str]) -> list[str]:
    """A parametric numeric question as a Moodle ``calculated`` question over ``draws``, or
    :class:`NotExpressible` saying why Moodle cannot compute it."""
    from vaequiz.bank.parametric import bind

    if not isinstance(question.answer, str):
        raise NotExpressible("its answer does not depend on the params")
    if question.hint and PLACEHOLDER.search(question.hint):
        raise NotExpressible("its hint shows numbers, and Moodle does not fill hints in")
    answer = parse_expression(question.answer)
    formula = moodle_formula(answer)
    texts = _Wildcards()
    texts.names |= set(answer.names)
    prompt = texts.html(question.prompt)
    feedback = texts.html(question.explanation) if question.explanation else ""
    lowered = [n.lower() for n in texts.names]
    if len(set(lowered)) != len(lowered):
        raise NotExpressible("two params differ only in case, which Moodle's dataset names do not tell apart")
    answers = [float(bind(question, values).answer) for values in draws]
    for values in draws:
        for expression in [answer, *texts.computed]:
            _same_in_moodle(expression, values)
    kind, tolerance = _tolerance(question, answers, lost)
    answer_format, answer_length = _answer_rounding(kind, tolerance, answers)
    datasets = [_dataset(name, [_dataset_value(values[name]) for values in draws])
                for name in sorted(texts.names)]
    if texts.formats:
        lost.append(f"{question.id}: Moodle shows computed numbers unformatted (format "
                    f"{', '.join(sorted(texts.formats))} dropped; .Nf becomes round(x, N))")
    lines = _head(question, "calculated", prompt, points, feedback)
    lines += [
        _plain("synchronize", 0), _plain("single", 0), _plain("answernumbering", "abc"),
        _plain("shuffleanswers", 0),
        _text("correctfeedback", ""), _text("partiallycorrectfeedback", ""), _text("incorrectfeedback", ""),
        f'<answer fraction="100">{_plain("text", formula)}{_plain("tolerance", repr(float(tolerance)))}'
        f"{_plain('tolerancetype', kind)}{_plain('correctanswerformat', answer_format)}"
        f"{_plain('correctanswerlength', answer_length)}{_text('feedback', '')}</answer>",
        _plain("unitgradingtype", 0), _plain("unitpenalty", "0.1000000"), _plain("showunits", 3),
        _plain("unitsleft", 0),
        "<dataset_definitions>" + "".join(datasets) + "</dataset_definitions>",
    ]
    if question.hint:
        lines.append(_text("hint", html(question.hint)))
    return lines + [_tags(question), "</question>"]


def _renamed(lines: list[str], name: str, idnumber: str) -> list[str]:
    """A question's lines under another name and idnumber (one fixed draw of many)."""
    renamed = {"<name>": f"<name>{_plain('text', name)}</name>", "<idnumber>": _plain("idnumber", idnumber)}
    return [next((v for k, v in renamed.items() if line.startswith(k)), line) for line in lines]


def random_category(selection: ExportSet, question: AnyQuestion,
                    points: float) -> tuple[list[str], int, int] | None:
    """Fixed draws of a parametric question in a category of their own, a ``random`` question
    drawing one of them per attempt, then back to the quiz's category; with how many draws were
    written and how many left out (an MCQ whose keys Moodle's grades cannot split). None for
    kinds Moodle cannot hold."""
    lines = _category(f"{selection.name}/{question.id}")
    drawn = fixed_variants(selection, question)
    variants = [(numbers, bound) for numbers, bound in drawn
                if not isinstance(bound, MultipleChoice) or _grades_add_up(bound)]
    if not variants:
        return None
    for number, (numbers, bound) in enumerate(variants, 1):
        written = question_xml(bound, points)
        if written is None:
            return None
        lines += _renamed(written, f"{question.id} ({numbers})", f"{question.id}-{number}")
    lines += [
        '<question type="random">', f"<name>{_plain('text', f'Random ({question.id})')}</name>",
        _text("questiontext", "0"), _text("generalfeedback", ""),
        _plain("defaultgrade", f"{points:g}"), _plain("penalty", "0"), _plain("hidden", 0),
        "</question>", *_category(selection.name),
    ]
    return lines, len(variants), len(drawn) - len(variants)


def parametric_xml(selection: ExportSet, question: AnyQuestion, points: float,
                   result: ExportResult) -> list[str] | None:
    """A parametric question as a calculated question where Moodle can compute it, else as
    fixed draws behind a random question (stderr says which, and why)."""
    original = selection.parametric[question.id]
    why = ""
    if isinstance(original, NumericAnswer):
        draws = distinct_draws(original, DATASET_ITEMS, selection.quiz_id, selection.seed)
        lost: list[str] = []
        try:
            lines = calculated(original, points, draws, lost)
        except NotExpressible as err:
            why = f" (not a calculated question: {err})"
        else:
            carried(selection, result, question.id, f"written as a Moodle calculated question, its "
                                                    f"dataset {len(draws)} draw(s) made by vaequiz")
            result.lost += lost
            return lines
    written = random_category(selection, question, points)
    if written is None:
        return None
    if written[2]:
        why += f" ({written[2]} draw(s) left out: Moodle's grades cannot split 100% over their keys)"
    carried(selection, result, question.id,
            f"written as {written[1]} fixed variant(s) in category {selection.name}/{question.id}, "
            f"with a random question giving each attempt one of them{why}")
    return written[0]


def question_xml(question: AnyQuestion, points: float) -> list[str] | None:
    """One ``<question>`` element as lines, or None for kinds Moodle cannot hold."""
    if isinstance(question, MultipleChoice):
        lines = multichoice(question, points)
    elif isinstance(question, ShortAnswer):
        lines = essay(question, points, html(question.prompt))
    elif isinstance(question, ShapeAnswer):
        lines = shortanswer(question, points)
    elif isinstance(question, NumericAnswer):
        lines = numerical(question, points)
    elif isinstance(question, CodeQuestion):
        lines = essay(question, points, code_prompt_html(question), question.starter or "",
                      monospaced=True)
    else:
        return None
    return lines + [_tags(question), "</question>"]


def _grades_add_up(question: MultipleChoice) -> bool:
    share = float(moodle_fraction(100 / len(question.answer)))
    return abs(share * len(question.answer) - 100) < 0.01


def _category(name: str) -> list[str]:
    return ['<question type="category">', _text("category", f"$course$/top/{name}", fmt=None),
            "</question>"]


def export(selection: ExportSet, out: Path) -> ExportResult:
    """Write one Moodle XML file holding a category named after the bank or quiz."""
    result = ExportResult(out)
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', "<quiz>", *_category(selection.name)]
    for question in selection.questions:
        if question.id in selection.parametric:
            written = parametric_xml(selection, question, selection.points[question.id], result)
        elif isinstance(question, MultipleChoice) and not _grades_add_up(question):
            result.skipped.append((question.id, f"Moodle's grades cannot split 100% over "
                                                f"{len(question.answer)} keys"))
            continue
        else:
            written = question_xml(question, selection.points[question.id])
        if written is None:
            result.skipped.append((question.id, "Moodle's grades cannot split 100% over the keys of any of its draws"
                                   if isinstance(question, MultipleChoice) else
                                   f"{question.kind} questions are not graded"))
            continue
        lines.extend(written)
        result.written.append(question.id)
    lines.append("</quiz>")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return result

