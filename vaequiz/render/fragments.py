"""Per-question HTML fragments, rendered once per build and re-ordered for every variant.

What a fragment holds depends on the mode, and that is the exam's safety: key material is
never rendered into an exam fragment, so no template mistake can leak it into the page.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from markupsafe import Markup

from vaequiz.bank.models import (
    AnyQuestion,
    CodeQuestion,
    Flashcard,
    MultipleChoice,
    NumericAnswer,
    ShapeAnswer,
    ShortAnswer,
)
from vaequiz.compat import StrEnum
from vaequiz.render.markdown import MathRenderError, render_code, render_markdown


class Mode(StrEnum):
    exam = "exam"
    practice = "practice"
    key = "key"
    flashcards = "flashcards"


KIND_LABELS = {
    "mcq": "Multiple choice",
    "short_answer": "Short answer",
    "flashcard": "Recall card",
    "shape": "Tensor shape",
    "numeric": "Number",
    "code": "Code",
}
ANSWERABLE_KINDS = ("mcq", "short_answer", "shape", "numeric", "code")
FLASHCARD_KINDS = ("flashcard", "short_answer")


def kinds_in(mode: Mode) -> tuple[str, ...]:
    """Question kinds a page of this mode shows (cards are for revision, never graded)."""
    return FLASHCARD_KINDS if mode is Mode.flashcards else ANSWERABLE_KINDS


class FragmentError(ValueError):
    """A question whose text cannot be rendered; names the question and the field."""

    def __init__(self, question_id: str, field_name: str, cause: MathRenderError) -> None:
        owner = f"question '{question_id}'" if question_id else "the quiz"
        super().__init__(f"{owner}, field '{field_name}': {cause}")
        self.question_id = question_id
        self.field_name = field_name
        self.cause = cause


@dataclass(frozen=True)
class OptionFragment:
    bank_label: str
    html: Markup
    is_key: bool = False
    feedback_html: Markup | None = None


@dataclass(frozen=True)
class Mutation:
    code_html: Markup
    why_html: Markup


@dataclass(frozen=True)
class ItemFragment:
    """One question as the page shows it in one mode; key fields stay empty in exam mode."""

    id: str
    kind: str
    kind_label: str
    difficulty: str
    topics: tuple[str, ...]
    text_html: Markup
    multiple: bool = False
    options: dict[str, OptionFragment] = field(default_factory=dict)
    starter: str = ""
    hint_html: Markup | None = None
    explanation_html: Markup | None = None
    answer_html: Markup | None = None
    back_html: Markup | None = None
    model_answer_html: Markup | None = None
    rubric: tuple[tuple[str, tuple[str, ...]], ...] = ()
    pass_fraction: float | None = None
    examples: tuple[tuple[str, str, str, str], ...] = ()
    """Marked short-answer examples (key mode): answer, verdict, concepts, why."""
    reference_html: Markup | None = None
    checks: tuple[Markup, ...] = ()
    hidden_checks: int = 0
    mutants: tuple[Mutation, ...] = ()
    practice_key: dict[str, object] = field(default_factory=dict)
    """What practice-mode JavaScript needs to check an answer (bank labels, shape, number)."""


MarkdownRenderer = Callable[[str], str]


class FragmentRenderer:
    """Renders and caches fragments; ``markdown`` is swappable so benchmarks can go uncached."""

    def __init__(self, markdown: MarkdownRenderer = render_markdown, cache: bool = True) -> None:
        self._markdown = markdown
        self._cache: dict[tuple[str, Mode, str], ItemFragment] | None = {} if cache else None

    def fragment(self, question: AnyQuestion, mode: Mode, draw: str = "") -> ItemFragment:
        """``draw`` tells apart bound copies of one parametric question (one per student's
        numbers), which share its id."""
        if self._cache is None:
            return self._build(question, mode)
        key = (question.id, mode, draw)
        if key not in self._cache:
            self._cache[key] = self._build(question, mode)
        return self._cache[key]

    def markdown_of(self, field_name: str, text: str) -> str:
        """Quiz-level Markdown (instructions); a bad formula names the field."""
        try:
            return self._markdown(text)
        except MathRenderError as err:
            raise FragmentError("", field_name, err) from None

    def _md(self, question: AnyQuestion, field_name: str, text: str | None) -> Markup | None:
        if text is None:
            return None
        try:
            return Markup(self._markdown(text))
        except MathRenderError as err:
            raise FragmentError(question.id, field_name, err) from None

    def _build(self, q: AnyQuestion, mode: Mode) -> ItemFragment:
        reveals = mode in (Mode.practice, Mode.key)
        base: dict[str, object] = dict(
            id=q.id,
            kind=q.kind,
            kind_label=KIND_LABELS[q.kind],
            difficulty=str(q.difficulty),
            topics=tuple(q.topics),
            text_html=self._md(q, _text_field(q), q.text),
        )
        if reveals or mode is Mode.flashcards:
            base["hint_html"] = self._md(q, "hint", q.hint)
        if reveals:
            base["explanation_html"] = self._md(q, "explanation", q.explanation)
        if isinstance(q, MultipleChoice):
            base["multiple"] = q.multiple
            base["options"] = {
                o.label: OptionFragment(
                    bank_label=o.label,
                    html=self._option_html(q, o.label, o.text, o.code),
                    is_key=reveals and o.label in q.answer,
                    feedback_html=self._md(q, f"options.{o.label}.feedback", o.feedback)
                    if reveals
                    else None,
                )
                for o in q.options
            }
            if reveals:
                base["practice_key"] = {"labels": list(q.answer)}
        elif isinstance(q, ShapeAnswer) and reveals:
            shown = "(" + ", ".join(str(d) for d in q.answer) + ("," if len(q.answer) == 1 else "") + ")"
            base["answer_html"] = Markup("<code>{}</code>").format(shown)
            base["practice_key"] = {"shape": list(q.answer)}
        elif isinstance(q, NumericAnswer) and reveals:
            tolerance = _tolerance_text(q)
            shown = f"{q.answer:g}" if isinstance(q.answer, float) else q.answer  # a formula: general key
            base["answer_html"] = Markup("<code>{}</code>{}").format(shown, tolerance)
            base["practice_key"] = {
                "value": q.answer,
                "tolerance": q.tolerance,
                "relative_tolerance": q.relative_tolerance,
            }
        elif isinstance(q, ShortAnswer):
            if reveals or mode is Mode.flashcards:
                base["model_answer_html"] = self._md(q, "model_answer", q.model_answer)
            if mode is Mode.key:
                base["rubric"] = tuple((c.name, tuple(c.phrasings)) for c in q.rubric)
                base["pass_fraction"] = q.pass_fraction
                base["examples"] = tuple(
                    (e.answer.strip(), e.verdict, "; ".join(e.concepts) or "none", e.why or "") for e in q.examples
                )
        elif isinstance(q, Flashcard) and mode in (Mode.flashcards, Mode.key):
            base["back_html"] = self._md(q, "back", q.back)
        elif isinstance(q, CodeQuestion):
            base["starter"] = q.starter or ""
            if mode is Mode.practice:
                visible = [c for c in q.checks if not c.hidden]
                base["checks"] = tuple(Markup.escape(c.title) for c in visible)
                base["hidden_checks"] = len(q.checks) - len(visible)
            elif mode is Mode.key:
                base["checks"] = tuple(
                    Markup.escape(c.title + (" (hidden from students)" if c.hidden else ""))
                    for c in q.checks
                )
            if mode is Mode.key:
                base["reference_html"] = Markup(render_code(q.reference))
                base["mutants"] = tuple(
                    Mutation(Markup(render_code(m.code)), self._md(q, f"mutants.{i}.why", m.why) or Markup())
                    for i, m in enumerate(q.mutants)
                )
        return ItemFragment(**base)  # type: ignore[arg-type]

    def _option_html(self, q: AnyQuestion, label: str, text: str | None, code: str | None) -> Markup:
        parts = []
        if text:
            parts.append(str(self._md(q, f"options.{label}.text", text)))
        if code:
            parts.append(render_code(code, focusable=False))
        return Markup("".join(parts))


def _text_field(q: AnyQuestion) -> str:
    return {"mcq": "stem", "flashcard": "front"}.get(q.kind, "prompt")


def _tolerance_text(q: NumericAnswer) -> Markup:
    parts = []
    if q.tolerance:
        parts.append(f"± {q.tolerance:g}")
    if q.relative_tolerance:
        parts.append(f"± {q.relative_tolerance:.3g} relative")
    return Markup(" ({})").format(" or ".join(parts)) if parts else Markup("")



