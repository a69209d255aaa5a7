"""The HTML writer: one self-contained page per (quiz, mode, variant) from cached fragments."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from vaequiz.bank.parametric import bind, general_form, is_parametric
from vaequiz.paths import templates_dir
from vaequiz.render.fragments import FragmentRenderer, ItemFragment, Mode, kinds_in
from vaequiz.render.markdown import code_stylesheet
from vaequiz.render.reading_rules import MAX_ANSWER_BYTES, reading_rules
from vaequiz.render.selection import Quiz
from vaequiz.render.variants import LABELS, Variant, derive_variant
from vaequiz.templating import template_environment

PAGE_TEMPLATE = "quiz.html.j2"
ASSETS = ("quiz.css", "quiz.js")


@dataclass(frozen=True)
class ShownOption:
    shown_label: str
    bank_label: str
    html: Markup
    is_key: bool
    feedback_html: Markup | None


@dataclass(frozen=True)
class ShownItem:
    """A fragment placed in a variant: its number, points and options in the shown order."""

    number: int
    points: float
    fragment: ItemFragment
    options: tuple[ShownOption, ...]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.fragment, name)


def _script_json(data: Any) -> Markup:
    """JSON safe inside <script>: no '</script>', no HTML comment openers, no line separators."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    for raw, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                         ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(raw, escaped)
    return Markup(text)


@lru_cache(maxsize=1)
def _environment(folder: str) -> jinja2.Environment:
    env = template_environment().overlay()
    assets = {name: Markup((Path(folder) / name).read_text(encoding="utf-8")) for name in ASSETS}
    assets["code.css"] = Markup(code_stylesheet())
    env.globals["asset"] = assets.__getitem__
    return env


def environment() -> jinja2.Environment:
    return _environment(str(templates_dir()))


class PageBuilder:
    """Builds pages of one quiz in one mode; fragments are rendered once, variants re-order them."""

    def __init__(self, quiz: Quiz, mode: Mode, fragments: FragmentRenderer | None = None) -> None:
        self.quiz = quiz
        self.mode = mode
        self.fragments = fragments or FragmentRenderer()
        kinds = kinds_in(mode)
        self.questions = [q for q in quiz.questions if q.kind in kinds]
        self._template = environment().get_template(PAGE_TEMPLATE)
        self._by_id = {q.id: q for q in self.questions}
        self._items = {q.id: self.fragments.fragment(q, mode) for q in self.questions if not is_parametric(q)}
        self._instructions = (
            Markup(self.fragments.markdown_of("instructions", quiz.instructions))
            if quiz.instructions
            else None
        )

    def variant(self, student: str) -> Variant:
        return derive_variant(
            self.quiz.id,
            self.quiz.seed,
            student,
            self.questions,
            shuffle_questions=self.quiz.shuffle_questions,
            shuffle_options=self.quiz.shuffle_options,
        )

    def render(self, student: str = "") -> str:
        """The page for one student ("" bakes in no student: the page asks for one)."""
        variant = self.variant(student)
        items = [self._place(n, question_id, variant) for n, question_id in enumerate(variant.question_order, 1)]
        return self._template.render(
            quiz=self.quiz,
            mode=self.mode.value,
            student=student,
            variant=variant,
            items=items,
            instructions=self._instructions,
            total_points=sum(i.points for i in items),
            time_limit_min=self._time_limit(),
            page_data=_script_json(self._page_data(variant, student, items)),
        )

    def _fragment(self, question_id: str, variant: Variant) -> ItemFragment:
        """A plain question's shared fragment, or a parametric one bound to this student's
        numbers (the general formula on an answer key for no one student)."""
        if question_id in self._items:
            return self._items[question_id]
        question = self._by_id[question_id]
        if self.mode is Mode.key and not variant.student:
            return self.fragments.fragment(general_form(question), self.mode, "general")
        values = variant.params[question_id]
        draw = json.dumps(values, sort_keys=True)
        return self.fragments.fragment(bind(question, values), self.mode, draw)

    def _place(self, number: int, question_id: str, variant: Variant) -> ShownItem:
        fragment = self._fragment(question_id, variant)
        order = variant.option_order.get(question_id, ())
        options = tuple(
            ShownOption(
                shown_label=LABELS[i],
                bank_label=bank,
                html=fragment.options[bank].html,
                is_key=fragment.options[bank].is_key,
                feedback_html=fragment.options[bank].feedback_html,
            )
            for i, bank in enumerate(order)
        )
        return ShownItem(number, self.quiz.points.get(question_id, 0.0), fragment, options)

    def _time_limit(self) -> float | None:
        """The spec's time limit, enforced on exam pages only (practice is open-ended)."""
        if self.mode is not Mode.exam:
            return None
        return self.quiz.time_limit_min

    def _page_data(self, variant: Variant, student: str, items: list[ShownItem]) -> dict[str, Any]:
        """What the page's script needs; in exam mode nothing here says which answer is right."""
        data: dict[str, Any] = {
            "quiz": self.quiz.id,
            "mode": self.mode.value,
            "student": student or None,
            "variant": variant.id,
            "labels": variant.labels(),
            "items": [{"id": i.id, "kind": i.kind, "multiple": i.multiple} for i in items],
        }
        if self.mode in (Mode.exam, Mode.practice):
            data["rules"] = reading_rules()
            data["max_answer_bytes"] = MAX_ANSWER_BYTES
            data["time_limit_min"] = self._time_limit()
        if variant.params:
            data["params"] = variant.params
        if self.mode is Mode.practice:
            checks: dict[str, Any] = {}
            for item in items:
                key = dict(item.practice_key)
                if "labels" in key:
                    key["labels"] = sorted(variant.shown_label(item.id, b) for b in key["labels"])
                if key:
                    checks[item.id] = key
            data["checks"] = checks
        return data
