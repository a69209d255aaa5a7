"""Moodle XML (question bank import format).

Kinds: mcq -> multichoice (single or multiple), short_answer -> essay with the model answer and
rubric as grader information, shape -> shortanswer with every accepted spelling, numeric ->
numerical (one absolute tolerance), code -> essay with the prompt and starter code (Moodle
cannot run the checks). Flashcards are not graded and are skipped. Text is HTML in CDATA with
math as MathML (rendered natively by browsers) and code as highlighted ``<pre><code>``.
"""

from __future__ import annotations

from pathlib import Path
from vaequiz.bank.models import (
    AnyQuestion,
    CodeQuestion,
    MultipleChoice,
    NumericAnswer,
    ShapeAnswer,
    ShortAnswer,
)
from vaequiz.export.common import (
    code_html,
    ExportResult,
    ExportSet,
    absolute_tolerance,
    code_prompt_html,
    grader_info_html,
    html,
    shape_spellings,
)

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


def _head(question: AnyQuestion, kind: str, text: str, points: float) -> list[str]:
    return [
        f'<question type="{kind}">',
        f"<name>{_plain('text', question.id)}</name>",
        _text("questiontext", text),
        _text("generalfeedback", html(question.explanation) if question.explanation else ""),
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
        if isinstance(question, MultipleChoice) and not _grades_add_up(question):
            result.skipped.append((question.id, f"Moodle's grades cannot split 100% over "
                                                f"{len(question.answer)} keys"))
            continue
        written = question_xml(question, selection.points[question.id])
        if written is None:
            result.skipped.append((question.id, f"{question.kind} questions are not graded"))
            continue
        lines.extend(written)
        result.written.append(question.id)
    lines.append("</quiz>")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return result

