"""GIFT, Moodle's plain-text question format.

Kinds: mcq (single ``=``/``~``; multiple with ``~%w%`` weights: each key 100/k, each wrong
option -100/(n-k)), numeric (``{#answer:tolerance}``), shape (short answer listing every
accepted spelling), short_answer and code (essay ``{}``; GIFT has no grader information, so the
rubric and checks are lost). GIFT has no syntax for points: Moodle imports every question as 1
mark, and the export says on stderr which questions that changes. Flashcards are skipped. Text
is written as ``[html]`` with math as MathML; the special characters ``~ = # { } :`` and
backslash are escaped with a backslash and line breaks as ``\\n``, since a blank line ends a
GIFT question.
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
    ExportResult,
    ExportSet,
    absolute_tolerance,
    carried,
    code_html,
    code_prompt_html,
    fixed_variants,
    html,
    shape_spellings,
)
from vaequiz.export.moodle import moodle_fraction

GIFT_SPECIAL = "\\~=#{}:"
MOODLE_DEFAULT_MARK = 1.0
"""The mark Moodle gives every question it imports from GIFT, which has no syntax for points."""
LISTED = 8
"""How many of the questions whose points GIFT loses stderr names."""


def escape_gift(text: str) -> str:
    """Backslash-escape GIFT's special characters; newlines become ``\\n``."""
    escaped = "".join("\\" + c if c in GIFT_SPECIAL else c for c in text)
    return escaped.replace("\r\n", "\n").replace("\n", "\\n")


def _number(value: float) -> str:
    return repr(float(value))


def _option_html(option: object) -> str:
    text = getattr(option, "text", None)
    code = getattr(option, "code", None)
    return (html(text) if text else "") + (code_html(code) if code else "")


def _feedback(markdown: str | None) -> str:
    return f" #{escape_gift(html(markdown))}" if markdown else ""


def _answers(question: AnyQuestion) -> str | None:
    """The inside of the answer braces, or None for kinds GIFT cannot hold."""
    if isinstance(question, MultipleChoice):
        keys = set(question.answer)
        wrong = len(question.options) - len(keys)
        parts = []
        for option in question.options:
            text = escape_gift(_option_html(option)) + _feedback(option.feedback)
            if not question.multiple:
                parts.append(("=" if option.label in keys else "~") + text)
                continue
            percent = 100 / len(keys) if option.label in keys else -100 / max(1, wrong)
            parts.append(f"~%{moodle_fraction(percent)}%{text}")
        return "\n" + "\n".join("\t" + p for p in parts) + "\n"
    if isinstance(question, NumericAnswer):
        return f"#{_number(question.answer)}:{_number(absolute_tolerance(question))}"
    if isinstance(question, ShapeAnswer):
        return " ".join("=" + escape_gift(s) for s in shape_spellings(question.answer))
    if isinstance(question, (ShortAnswer, CodeQuestion)):
        return ""
    return None


def _stem(question: AnyQuestion) -> str:
    if isinstance(question, CodeQuestion):
        return code_prompt_html(question)
    return html(question.text)


def question_gift(question: AnyQuestion, title: str | None = None) -> str | None:
    """One GIFT question (``::title::[html]stem {answers ####explanation}``, titled with its
    id unless ``title`` says otherwise), or None."""
    answers = _answers(question)
    if answers is None:
        return None
    if question.explanation:
        answers += f"####{escape_gift(html(question.explanation))}"
        answers += "\n" if answers.startswith("\n") else ""
    return f"::{escape_gift(title or question.id)}::[html]{escape_gift(_stem(question))} {{{answers}}}"


def variant_title(question_id: str, numbers: str) -> str:
    """The title of one fixed draw: the question's id and the numbers it shows."""
    return f"{question_id} ({numbers})"


def _variants(selection: ExportSet, question: AnyQuestion, result: ExportResult) -> list[str] | None:
    """A parametric question as fixed draws in a category of its own, then back to the quiz's
    category; None for kinds GIFT cannot hold."""
    category = f"$course$/top/{selection.name}/{question.id}"
    blocks = [f"$CATEGORY: {category}"]
    variants = fixed_variants(selection, question)
    for numbers, bound in variants:
        text = question_gift(bound, variant_title(question.id, numbers))
        if text is None:
            return None
        blocks.append(text)
    blocks.append(f"$CATEGORY: $course$/top/{selection.name}")
    carried(selection, result, question.id,
            f"written as {len(variants)} fixed variant(s), each titled with its numbers, in category "
            f"{category}: in a Moodle quiz, add a random question from that category so each student "
            "gets one (GIFT has no variables)")
    return blocks


def export(selection: ExportSet, out: Path) -> ExportResult:
    """Write one GIFT file, questions separated by blank lines, topics as a category."""
    result = ExportResult(out)
    title = " ".join(selection.title.split())
    blocks = [f"// vaequiz export: {title}", f"$CATEGORY: $course$/top/{selection.name}"]
    for question in selection.questions:
        if question.id in selection.parametric:
            written = _variants(selection, question, result)
        else:
            text = question_gift(question)
            written = None if text is None else [text]
        if written is None:
            result.skipped.append((question.id, f"{question.kind} questions are not graded"))
            continue
        blocks.extend(written)
        result.written.append(question.id)
    unlike = [f"{qid}: {selection.points[qid]:g}" for qid in result.written
              if selection.points[qid] != MOODLE_DEFAULT_MARK]
    if unlike:
        listed = ", ".join(unlike[:LISTED]) + (f" and {len(unlike) - LISTED} more" if len(unlike) > LISTED else "")
        result.lost.append(
            f"GIFT cannot carry points: Moodle imports every question as {MOODLE_DEFAULT_MARK:g} "
            f"mark, so {len(unlike)} question(s) lose theirs ({listed}); set their marks in "
            f"Moodle after the import, or use --format moodle, which keeps them")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
    return result
