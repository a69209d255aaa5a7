"""`vaequiz verify`: prove the bank's keys against its own checks.

For every code question the reference must pass every check and every mutant must fail at
least one (the failing checks are reported, so an author sees *why* it is rejected); for every
MCQ linked to a code question, exactly the keyed options must pass; every short answer's model
answer must pass its own rubric and every marked example must be graded as the teacher marked it
(the same pass/fail and the same concepts), and every shape and numeric key must grade as right.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

from vaequiz.bank.loader import Bank
from vaequiz.bank.models import (
    AnyQuestion,
    CodeQuestion,
    MultipleChoice,
    NumericAnswer,
    ShapeAnswer,
    ShortAnswer,
)
from vaequiz.bank.parametric import is_parametric
from vaequiz.grading.grader import Grader
from vaequiz.grading.verify_params import DEFAULT_DRAWS, check_draws
from vaequiz.grading.objective import Graded, format_dims


@dataclass(frozen=True)
class Case:
    """One thing verify runs: an answer to a question and whether it must pass."""

    question: AnyQuestion
    subject: str
    answer: str
    must_pass: bool
    graded_as: AnyQuestion
    concepts: frozenset[str] | None = None
    """For a marked short-answer example: the concepts the teacher sees (must match exactly)."""


@dataclass(frozen=True)
class Finding:
    """A row of the verify table."""

    question: str
    subject: str
    expected: Literal["pass", "fail"]
    got: Literal["pass", "fail"]
    detail: str
    concepts_agree: bool = True
    measured: str = ""
    """Code: "out-of-process" when every measurement came from the answer's program, "values
    only" for a question without probes, else "measured in-process: why"; empty for other
    kinds."""

    @property
    def agrees(self) -> bool:
        return self.expected == self.got and self.concepts_agree


def cases(bank: Bank) -> list[Case]:
    """Everything verify checks, in bank order."""
    by_id = bank.by_id()
    found: list[Case] = []
    for q in bank.questions:
        if is_parametric(q) and not isinstance(q, CodeQuestion):
            continue  # checked draw by draw (verify_params)
        if isinstance(q, CodeQuestion):
            found.append(Case(q, "reference", q.reference, True, q))
            found += [Case(q, f"mutant {i + 1}", m.code, False, q) for i, m in enumerate(q.mutants)]
        elif isinstance(q, MultipleChoice) and q.code_question:
            target = by_id.get(q.code_question)
            if isinstance(target, CodeQuestion):
                found += [
                    Case(q, f"option {o.label}", o.code or "", o.label in q.answer, target) for o in q.options
                ]
        elif isinstance(q, ShortAnswer):
            found.append(Case(q, "model answer", q.model_answer, True, q))
            found += [
                Case(q, f"example {i + 1}", e.answer, e.verdict == "pass", q, frozenset(e.concepts))
                for i, e in enumerate(q.examples)
            ]
        elif isinstance(q, ShapeAnswer):
            found.append(Case(q, "key", format_dims(list(q.answer)), True, q))
        elif isinstance(q, NumericAnswer):
            found.append(Case(q, "key", repr(q.answer), True, q))
    return found


def _detail(graded: Graded, must_pass: bool) -> str:
    failed = [c for c in graded.checks if not c.passed]
    if not failed:
        return "all checks pass" if graded.checks else ""
    if must_pass:
        return "; ".join(f"{c.name}: {c.message}" for c in failed)
    return "fails: " + ", ".join(c.name for c in failed)


def run_case(grader: Grader, case: Case) -> Finding:
    """Grade one case and compare with what it should do."""
    concepts_agree = True
    measured = ""
    try:
        graded = grader.grade(case.graded_as, case.answer, diagnose=False)
        passed, detail = bool(graded.passed), _detail(graded, case.must_pass)
        if isinstance(case.graded_as, CodeQuestion):
            probed = any(run.probes for run in grader.prepared(case.graded_as).runs)
            measured = graded.in_process or (OUT_OF_PROCESS if probed else VALUES_ONLY)
        if case.concepts is not None:
            detail, concepts_agree = _compare_concepts(graded, case.concepts)
    except Exception as err:  # report, never crash the table
        passed, detail = False, f"could not be graded: {type(err).__name__}: {err}"
    return Finding(
        question=case.question.id,
        subject=case.subject,
        expected="pass" if case.must_pass else "fail",
        got="pass" if passed else "fail",
        detail=detail,
        concepts_agree=concepts_agree,
        measured=measured,
    )


OUT_OF_PROCESS = "out-of-process"
VALUES_ONLY = "values only"
"""A code question without probes: the grader checks the values the answer bound, and there is
nothing else to measure (forging a right value means computing it), so no program is replayed."""


def measurements_by_question(findings: list[Finding]) -> dict[str, str]:
    """Per code question: "out-of-process" when every answer verify ran (reference, mutants,
    linked options) was measured from its program, "values only" for a question without
    probes, else how many were measured in-process."""
    answers: dict[str, list[str]] = {}
    for finding in findings:
        if finding.measured:
            answers.setdefault(finding.question, []).append(finding.measured)
    summary = {}
    for question, measured in answers.items():
        inside = [m for m in measured if m not in (OUT_OF_PROCESS, VALUES_ONLY)]
        summary[question] = (
            f"{measured[0]} (all {len(measured)} answers)" if not inside
            else f"in-process for {len(inside)} of {len(measured)} answers"
        )
    return summary


def _compare_concepts(graded: Graded, teacher: frozenset[str]) -> tuple[str, bool]:
    """A marked example agrees only when the grader finds exactly the teacher's concepts."""
    found = {c.name for c in graded.checks if c.passed}
    extra, missed = sorted(found - teacher), sorted(teacher - found)
    if not extra and not missed:
        return f"{len(found)} of {len(graded.checks)} concepts, as marked", True
    reasons = {c.name: c.evidence or c.message for c in graded.checks}
    parts = [f"grader finds '{name}' ({reasons[name]})" for name in extra]
    parts += [f"grader misses '{name}' ({reasons[name]})" for name in missed]
    return "; ".join(parts), False


def verify(bank: Bank, grader: Grader, workers: int, draws: int = DEFAULT_DRAWS) -> list[Finding]:
    """Run every case on a pool of ``workers`` threads, then ``draws`` draws of every
    parametric question; findings in bank order."""
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        findings = list(pool.map(lambda case: run_case(grader, case), cases(bank)))
    for question in bank.questions:
        if is_parametric(question) and not isinstance(question, CodeQuestion):
            checked = check_draws(question, draws)
            findings.append(
                Finding(question.id, f"{draws} draws", "pass", "pass" if checked.ok else "fail", checked.detail())
            )
    return findings


def needs_sandbox(bank: Bank) -> bool:
    return any(isinstance(q, CodeQuestion) for q in bank.questions)
