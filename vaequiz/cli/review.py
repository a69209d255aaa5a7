"""`vaequiz review DIR`: a teacher settles flagged short-answer verdicts, concept by concept."""

from __future__ import annotations

import getpass
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Callable, Optional

import typer

from vaequiz.cli.app import EXIT_INVALID, BankOption, app, fail, resolve_bank

if TYPE_CHECKING:
    from vaequiz.bank.loader import Bank
    from vaequiz.grading.models import ItemResult
    from vaequiz.grading.review import Override


def _default_reviewer() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "teacher"


@app.command()
def review(
    folder: Annotated[Path, typer.Argument(help="A grade-sheets output folder (with results.jsonl).")],
    bank: BankOption = None,
    export: Annotated[
        Optional[Path], typer.Option("--export", help="Write the flagged answers to a CSV to fill in.")
    ] = None,
    import_csv: Annotated[
        Optional[Path], typer.Option("--import", help="Read a filled-in review CSV back.")
    ] = None,
    reviewer: Annotated[
        Optional[str], typer.Option("--reviewer", help="Name stored with each override (default: login name).")
    ] = None,
) -> None:
    """Go through flagged short answers in the terminal (or --export / --import a CSV); overrides
    go to DIR/overrides.jsonl and grades.csv and feedback pages are rewritten. Exit 1 if a CSV
    row could not be used."""
    from vaequiz.bank.loader import load_bank
    from vaequiz.grading.results import RESULTS_FILE, read_results
    from vaequiz.grading.review import ReviewError, append_override, pending, read_review_csv, write_review_csv

    if export is not None and import_csv is not None:
        fail("give --export or --import, not both")
    results_path = folder / RESULTS_FILE
    if not results_path.is_file():
        fail(f"{results_path} does not exist; run `vaequiz grade-sheets ... --out {folder}` first")
    loaded = load_bank(resolve_bank(bank))
    results, warnings = read_results(results_path, repair=False)
    for warning in warnings:
        typer.echo(f"vaequiz: warning: {warning}", err=True)
    name = reviewer or _default_reviewer()
    waiting = pending(results, folder)
    if export is not None:
        rows = write_review_csv(export, waiting)
        typer.echo(f"wrote {len(waiting)} flagged answer(s), {rows} concept row(s), to {export}; fill in "
                   "the 'teacher' column (yes/no; empty keeps the grader's) and run "
                   f"`vaequiz review {folder} --import {export}`")
        return
    problems: list[str] = []
    if import_csv is not None:
        if not import_csv.is_file():
            fail(f"{import_csv} does not exist")
        try:
            overrides, problems = read_review_csv(import_csv, results, name)
        except ReviewError as err:
            fail(str(err), EXIT_INVALID)
        for override in overrides:
            append_override(folder, override)
        for problem in problems:
            typer.echo(f"vaequiz: {problem}", err=True)
        stored = len(overrides)
    else:
        stored = _interactive(folder, waiting, loaded, name, append_override)
    written = _rewrite_gradebook(folder, results, loaded)
    left = len(pending(results, folder))
    typer.echo(f"stored {stored} override(s) in {folder / 'overrides.jsonl'}; {left} flagged answer(s) "
               f"left; rewrote {', '.join(str(p) for p in written)}")
    if problems:
        raise typer.Exit(EXIT_INVALID)


def _interactive(
    folder: Path, waiting: list[ItemResult], bank: Bank, name: str, store: Callable[[Path, Override], None]
) -> int:
    """Ask concept by concept on stdin; Enter keeps the grader's verdict, s skips, q stops."""
    from vaequiz.grading.review import Override, answer_fingerprint

    questions = bank.by_id()
    stored = 0
    for number, item in enumerate(waiting, start=1):
        question = questions.get(item.question)
        typer.echo(f"\n[{number}/{len(waiting)}] {item.student} / {item.question}: "
                   f"{'passed' if item.passed else 'not passed'}, score {item.score:.0%}")
        if question is not None:
            typer.echo(f"  question: {question.text.strip()}")
        typer.echo("  answer:   " + _indent(str(item.answer or "")))
        for reason in item.review_reasons:
            typer.echo(f"  flagged:  {reason}")
        concepts: dict[str, bool] = {}
        for check in item.checks:
            grader = "yes" if check.passed else "no"
            typer.echo(f"  - {check.name}\n    grader: {grader}: {check.evidence or check.message}")
            reply = _ask("    present? [y/n, Enter keeps the grader's, s skips this answer, q quits] ")
            if reply in ("q", None):
                return stored
            if reply == "s":
                concepts = {}
                break
            concepts[check.name] = check.passed if reply == "" else reply.startswith("y")
        if concepts:
            override = Override(student=item.student, question=item.question, concepts=concepts,
                                answer_sha256=answer_fingerprint(item.answer), reviewer=name)
            store(folder, override)
            stored += 1
    return stored


def _ask(prompt: str) -> str | None:
    """One answer from stdin: '', 'y', 'n', 's' or 'q'; None at end of input."""
    while True:
        typer.echo(prompt, nl=False)
        line = sys.stdin.readline()
        if not line:
            typer.echo("")
            return None
        reply = line.strip().lower()
        if reply in ("", "y", "yes", "n", "no", "s", "q"):
            return reply
        typer.echo("    please answer y, n, s, q or press Enter")


def _indent(text: str) -> str:
    return text.strip().replace("\n", "\n            ")


def _rewrite_gradebook(folder: Path, results: list[ItemResult], bank: Bank) -> list[Path]:
    """grades.csv and feedback pages (and Gradescope files if there) with overrides applied."""
    from vaequiz.grading.reports import write_feedback_pages, write_gradescope, write_grades_csv
    from vaequiz.grading.review import apply_overrides

    questions = bank.by_id()
    graded = {r.question for r in results}
    order = [q.id for q in bank.questions if q.id in graded]
    order += sorted(graded - set(order))
    gradebook, warnings = apply_overrides(results, folder, questions)
    for warning in warnings:
        typer.echo(f"vaequiz: warning: {warning}", err=True)
    write_grades_csv(folder / "grades.csv", gradebook, order)
    write_feedback_pages(folder / "feedback", gradebook, order, questions)
    written = [folder / "grades.csv", folder / "feedback"]
    if (folder / "gradescope").is_dir():
        write_gradescope(folder / "gradescope", gradebook, order)
        written.append(folder / "gradescope")
    return written
