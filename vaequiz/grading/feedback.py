"""Feedback pages in the student's own terms: one self-contained HTML page per student.

A page speaks the language of the student's exam, not the bank's: questions carry the number
and order the student saw ("Question 3"), MCQ options carry the letters the student clicked
(shuffled variants map them through the sheet's ``labels``), the quiz has its title, and no
question id or kind name appears. What it reveals (the key, explanations, reference solutions,
the known mistake an answer behaves like) is the quiz spec's ``feedback`` choice for the mode
the sheet was saved in. Code answers are shown with line numbers, each different error once,
and the hints and diagnosis the grader worked out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from markupsafe import Markup

from vaequiz.bank.loader import Bank
from vaequiz.bank.models import (
    AnyQuestion,
    CodeQuestion,
    MultipleChoice,
    NumericAnswer,
    ShapeAnswer,
    ShortAnswer,
)
from vaequiz.grading.code import error_pattern
from vaequiz.grading.grader import ShownAs
from vaequiz.grading.models import AnswerSheet, CheckResult, ItemResult
from vaequiz.grading.objective import format_dims
from vaequiz.grading.parametric import bound_for_feedback
from vaequiz.grading.reports import REVIEW_NOTE, by_student, safe_file_stem, visible_message
from vaequiz.render.fragments import Mode, kinds_in
from vaequiz.render.markdown import code_stylesheet, render_code, render_inline, render_markdown
from vaequiz.render.quiz_spec import FeedbackOptions, FeedbackPolicy, QuizSpecError, find_quiz_spec
from vaequiz.render.selection import Quiz, quiz_for
from vaequiz.render.variants import derive_variant
from vaequiz.templating import template_environment

# --------------------------------------------------------------------------- what each page showed


class QuizLookup:
    """Quizzes by id, for titles, feedback options and question order: the ``--quiz`` spec,
    else the bank's own ``*.quiz.yaml`` with that id. Specs are read once. ``seed`` is the
    ``--seed`` the ``--quiz`` pages were built with, if it overrode the spec's."""

    def __init__(self, bank: Bank, quiz_file: Path | None = None, seed: int | None = None) -> None:
        self.bank = bank
        self._found: dict[str, Quiz | None] = {}
        self.default: Quiz | None = None
        """The ``--quiz`` quiz: also the quiz of sheets that do not name one."""
        if quiz_file is not None:
            try:
                self.default = quiz_for(bank, quiz_file, seed)
                self._found[self.default.id] = self.default
            except QuizSpecError:
                pass

    def get(self, quiz_id: str | None) -> Quiz | None:
        if not quiz_id:
            return self.default
        if quiz_id not in self._found:
            path = find_quiz_spec(self.bank.root, quiz_id) if self.bank.root.is_dir() else None
            try:
                self._found[quiz_id] = quiz_for(self.bank, path) if path else None
            except QuizSpecError:
                self._found[quiz_id] = None
        return self._found[quiz_id]


def page_order(sheet: AnswerSheet, quiz: Quiz | None) -> list[str] | None:
    """Question ids in the order the student's page numbered them: the sheet's own ``order``,
    else the quiz's variant for this student (when it is the variant the sheet names)."""
    if sheet.order:
        return list(sheet.order)
    if quiz is None:
        return None
    mode = Mode.practice if sheet.mode == "practice" else Mode.exam
    questions = [q for q in quiz.questions if q.kind in kinds_in(mode)]
    variant = derive_variant(
        quiz.id,
        quiz.seed,
        sheet.student,
        questions,
        shuffle_questions=quiz.shuffle_questions,
        shuffle_options=quiz.shuffle_options,
    )
    if sheet.variant and sheet.variant != variant.id:  # built with another seed
        return None if quiz.shuffle_questions else [q.id for q in questions]
    return list(variant.question_order)


@dataclass
class SheetLayouts:
    """How each sheet's page showed each question (recorded with its result)."""

    quizzes: QuizLookup
    run_order: list[str]
    """The run's questions, numbering pages whose order is unknown."""
    _numbers: dict[str, dict[str, int]] = field(default_factory=dict)

    def shown(self, sheet: AnswerSheet, question_id: str, labels: dict[str, str] | None = None) -> ShownAs:
        """``labels``: the letters the answer was read with, when they were re-derived rather
        than saved on the sheet."""
        if sheet.student not in self._numbers:
            numbers: dict[str, int] = {}
            for known in (page_order(sheet, self.quizzes.get(sheet.quiz)) or [], self.run_order):
                for question in known:  # the page's questions, then any other graded ones
                    numbers.setdefault(question, len(numbers) + 1)
            self._numbers[sheet.student] = numbers
        return ShownAs(
            number=self._numbers[sheet.student].get(question_id),
            labels=labels if labels is not None else sheet.labels.get(question_id),
            mode=sheet.mode,
        )


# --------------------------------------------------------------------------- one page's contents


@dataclass(frozen=True)
class OptionView:
    letter: str
    html: Markup
    chosen: bool
    correct: bool | None
    """None when the key is not revealed."""
    feedback: Markup | None


@dataclass(frozen=True)
class Problem:
    """One distinct message, with the checks it made fail."""

    message: str
    checks: list[str]


@dataclass
class ItemView:
    number: int
    result: ItemResult
    prompt: Markup
    options: list[OptionView] = field(default_factory=list)
    answer: str = ""
    code_lines: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    checks: list[CheckResult] = field(default_factory=list)
    show_checks: bool = True
    correct: Markup | None = None
    explanation: Markup | None = None
    solution: Markup | None = None
    mistake: Markup | None = None
    hints: list[str] = field(default_factory=list)


def _answer_labels(item: ItemResult) -> list[str]:
    if item.answer is None:
        return []
    return list(item.answer) if isinstance(item.answer, list) else [a.strip() for a in item.answer.split(",")]


def _option_html(question: MultipleChoice, label: str) -> Markup:
    option = next(o for o in question.options if o.label == label)
    if option.code:
        return Markup(render_code(option.code, focusable=False))
    return Markup(render_inline(option.text or ""))


def _mcq(view: ItemView, question: MultipleChoice, item: ItemResult, policy: FeedbackPolicy) -> None:
    """Options in the student's order and letters; key and option feedback as the policy allows."""
    bank_labels = [o.label for o in question.options]
    shown_to_bank = item.labels or {}
    if sorted(shown_to_bank.values()) != sorted(bank_labels):  # not a relabelling of these options
        shown_to_bank = {label: label for label in bank_labels}
    order = list(shown_to_bank.items())
    chosen = set(_answer_labels(item))
    feedback = {o.label: o.feedback for o in question.options}
    view.options = [
        OptionView(
            letter=shown,
            html=_option_html(question, bank),
            chosen=bank in chosen,
            correct=(bank in question.answer) if policy.key else None,
            feedback=Markup(render_inline(feedback[bank].strip()))
            if policy.explanations and bank in chosen and feedback[bank]
            else None,
        )
        for shown, bank in sorted(order)
    ]
    unknown = chosen - set(bank_labels)
    # The grader's MCQ messages name bank letters; the options above say it in the student's.
    view.show_checks = False
    if unknown or not chosen:
        view.problems = [Problem(item.error or visible_message(c), []) for c in item.checks if not c.passed][:1]
    elif question.multiple and not item.passed:
        missed = len(set(question.answer) - chosen)
        if missed:
            view.problems = [Problem(f"{missed} correct option(s) not ticked", [])]


def _distinct_problems(item: ItemResult) -> list[Problem]:
    """Each different reason once, naming the checks it failed: an error raised on every hidden
    input reads once, not once per check. Plain text: messages quote what the student wrote."""
    groups: dict[str, list[str]] = {}
    patterns: dict[str, str] = {}
    for error in item.errors:
        groups.setdefault(f"your code raised {error}", [])
        patterns[f"your code raised {error}"] = error_pattern(error)
    for check in item.checks:
        message = visible_message(check)
        if not message:
            continue
        pattern = error_pattern(message)
        owner = next((key for key, p in patterns.items() if p in pattern), None)
        groups.setdefault(owner or message, []).append(check.name)
    if item.error and not any(error_pattern(item.error) in error_pattern(key) for key in groups):
        groups = {item.error: [], **groups}
    return [Problem(message, checks) for message, checks in groups.items()]


def _correct_answer(question: AnyQuestion) -> Markup | None:
    if isinstance(question, ShapeAnswer):
        return Markup("<code>{}</code>").format(format_dims(list(question.answer)))
    if isinstance(question, NumericAnswer):
        tolerance = f" (within {question.tolerance:g})" if question.tolerance else ""
        return Markup("{}{}").format(f"{question.answer:g}", tolerance)
    if isinstance(question, ShortAnswer):
        return Markup(render_markdown(question.model_answer))
    return None


def item_view(number: int, item: ItemResult, question: AnyQuestion | None, policy: FeedbackPolicy) -> ItemView:
    view = ItemView(number=number, result=item, prompt=Markup(render_markdown(question.text)) if question else Markup(""))
    view.checks = list(item.checks)
    if isinstance(question, MultipleChoice):
        _mcq(view, question, item, policy)
    else:
        text = item.answer if isinstance(item.answer, str) else ", ".join(item.answer or [])
        if isinstance(question, CodeQuestion):
            view.code_lines = text.splitlines() if text.strip() else []
        else:
            view.answer = text
        view.problems = _distinct_problems(item)
        if isinstance(question, (ShapeAnswer, NumericAnswer)):  # one check, named "shape" or "value"
            view.show_checks = False
            view.problems = [Problem(p.message, []) for p in view.problems]
        if policy.key:
            view.correct = _correct_answer(question) if question else None
        if isinstance(question, CodeQuestion) and policy.solutions:
            view.solution = Markup(render_code(question.reference, focusable=False))
    if question is not None and policy.explanations and question.explanation:
        view.explanation = Markup(render_markdown(question.explanation))
    if item.mistake and policy.mistakes:
        view.mistake = Markup(render_inline(item.mistake))
    view.hints = list(item.hints)
    return view


# --------------------------------------------------------------------------- pages


def write_feedback_pages(
    folder: Path,
    results: list[ItemResult],
    questions: list[str],
    bank_questions: dict[str, AnyQuestion] | None = None,
    quizzes: QuizLookup | None = None,
) -> dict[str, Path]:
    """``folder/<student>.html`` for every student in ``results``, numbered as their page was."""
    folder.mkdir(parents=True, exist_ok=True)
    template = template_environment().get_template("feedback.html.j2")
    bank_questions = bank_questions or {}
    run_order = {q: i for i, q in enumerate(questions)}
    written: dict[str, Path] = {}
    for student, items in by_student(results).items():
        ordered = sorted(
            items.values(),
            key=lambda i: (i.number is None, i.number or 0, run_order.get(i.question, len(run_order))),
        )
        quiz_ids = {i.quiz for i in ordered}
        quiz = quizzes.get(next(iter(quiz_ids))) if quizzes and len(quiz_ids) == 1 else None
        options = quiz.feedback if quiz else FeedbackOptions()
        modes = {i.mode for i in ordered if i.mode}
        policy = options.resolve(next(iter(modes)) if len(modes) == 1 else None)
        numbered = all(i.number is not None for i in ordered)
        views = [
            item_view(
                item.number if numbered and item.number else position,
                item,
                bound_for_feedback(bank_questions.get(item.question), item.params),  # the student's numbers
                policy,
            )
            for position, item in enumerate(ordered, 1)
        ]
        page = template.render(
            student=student,
            title=quiz.title if quiz else None,
            items=views,
            total=sum(i.points for i in ordered),
            max_total=sum(i.max_points for i in ordered),
            code_css=Markup(code_stylesheet()),
            review_note=REVIEW_NOTE,
        )
        path = folder / f"{safe_file_stem(student)}.html"
        path.write_text(page, encoding="utf-8")
        written[student] = path
    return written
