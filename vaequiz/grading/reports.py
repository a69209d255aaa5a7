"""What grade-sheets writes from results: grades.csv and Gradescope JSON (feedback pages: feedback.py)."""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections import defaultdict
from pathlib import Path

from vaequiz.grading.models import CheckResult, ItemResult

HIDDEN_MESSAGE = "details hidden until results are released"
REVIEW_NOTE = "A teacher will confirm this grade."


def safe_file_stem(student: str) -> str:
    """A file name for a student: letters, digits, '.', '_', '-'; a short hash keeps it unique
    when characters had to be replaced."""
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", student).strip("._") or "student"
    if stem != student:
        stem = f"{stem[:80]}-{hashlib.sha256(student.encode()).hexdigest()[:8]}"
    return stem


def by_student(results: list[ItemResult]) -> dict[str, dict[str, ItemResult]]:
    grouped: dict[str, dict[str, ItemResult]] = defaultdict(dict)
    for item in results:
        grouped[item.student][item.question] = item
    return dict(sorted(grouped.items()))


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(cell: str) -> str:
    """A text cell a spreadsheet shows as text, never runs: one that would start a formula
    gets a leading ``'`` (OWASP's advice against CSV injection)."""
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


def write_grades_csv(path: Path, results: list[ItemResult], questions: list[str]) -> None:
    """One row per student: points per question (blank if not graded), the total, then the
    questions whose grade a teacher should confirm and those a teacher's review decided.
    Text cells (names, headers) are made spreadsheet-safe; points are never negative."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([spreadsheet_safe(c) for c in ["student", *questions, "total", *REVIEW_COLUMNS]])
        for student, items in by_student(results).items():
            row = [f"{items[q].points:g}" if q in items else "" for q in questions]
            total = sum(i.points for i in items.values())
            review = [spreadsheet_safe(c) for c in review_cells(items, questions)]
            writer.writerow([spreadsheet_safe(student), *row, f"{total:g}", *review])


# --- review columns (short answers: fragile verdicts and teachers' overrides) ---------------

REVIEW_COLUMNS = ("needs_review", "reviewed")


def review_cells(items: dict[str, ItemResult], questions: list[str]) -> list[str]:
    """Question ids (space-separated) still awaiting a teacher, and those a teacher decided."""
    flagged = [q for q in questions if q in items and items[q].needs_review]
    reviewed = [q for q in questions if q in items and items[q].reviewed_by]
    return [" ".join(flagged), " ".join(reviewed)]


def visible_message(check: CheckResult) -> str:
    """What a student may read about a check: hidden checks show only pass or fail."""
    if check.passed:
        return ""
    return HIDDEN_MESSAGE if check.hidden else check.message


def gradescope_payload(items: list[ItemResult]) -> dict[str, object]:
    """Gradescope's autograder ``results.json``: total score and one test per question."""
    tests = []
    for item in items:
        lines = [f"{'passed' if c.passed else 'FAILED'}: {c.name}" + (f": {m}" if (m := visible_message(c) or c.evidence) else "") for c in item.checks]
        if item.needs_review:
            lines.append(REVIEW_NOTE)
        if item.error and not any(item.error in line for line in lines):
            lines.insert(0, item.error)
        if item.in_process:
            lines.append(item.in_process)
        if item.mistake:
            lines.append(f"This looks like a common mistake: {item.mistake}")
        lines += [f"Hint: {hint}" for hint in item.hints]
        tests.append(
            {
                "name": item.question,
                "score": item.points,
                "max_score": item.max_points,
                "output": "\n".join(lines),
                "visibility": "visible",
            }
        )
    return {"score": round(sum(i.points for i in items), 6), "tests": tests}


def write_gradescope(folder: Path, results: list[ItemResult], questions: list[str]) -> dict[str, Path]:
    """``folder/<student>/results.json`` for every student."""
    written: dict[str, Path] = {}
    order = {q: i for i, q in enumerate(questions)}
    for student, items in by_student(results).items():
        ordered = sorted(items.values(), key=lambda i: order.get(i.question, len(order)))
        path = folder / safe_file_stem(student) / "results.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(gradescope_payload(ordered), indent=2, ensure_ascii=False), encoding="utf-8")
        written[student] = path
    return written
