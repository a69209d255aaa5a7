"""Grading commands: grade one answer, grade answer sheets in bulk, verify the bank's keys."""

from __future__ import annotations

import json
import os
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from vaequiz.bank.loader import Bank, load_bank
from vaequiz.bank.models import AnyQuestion, CodeQuestion
from vaequiz.cli.app import (
    EXIT_INVALID,
    BankArgument,
    BankOption,
    app,
    fail,
    resolve_bank,
)
from vaequiz.compat import StrEnum
from vaequiz.terminal import printable

if TYPE_CHECKING:  # torch-heavy modules are imported when a command runs, not at start-up
    from vaequiz.grading.batch import BatchReport
    from vaequiz.grading.code import SandboxRunner
    from vaequiz.grading.objective import Graded
    from vaequiz.grading.remote import RemoteGrading
    from vaequiz.grading.sheets import QuizIdentity
    from vaequiz.grading.verify import Finding


class Device(StrEnum):
    cpu = "cpu"
    cuda = "cuda"


class SheetFormat(StrEnum):
    default = "default"
    gradescope = "gradescope"


DeviceOpt = Annotated[Device, typer.Option("--device", help="Where inputs, snippets and checks run.")]


def all_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def check_device(device: Device) -> None:
    """``--device cuda`` needs a CUDA device; say so instead of failing later."""
    if device is Device.cuda:
        import torch

        if not torch.cuda.is_available():
            fail("--device cuda was given but no CUDA device is available; use --device cpu")


def check_semantic() -> None:
    """``VAEQUIZ_SEMANTIC=1`` needs the semantic extra and its pinned model; say so up front."""
    from vaequiz.grading.semantic import SemanticUnavailable, flagger_if_requested

    try:
        flagger_if_requested()
    except SemanticUnavailable as err:
        fail(str(err))


def check_workers(workers: int) -> None:
    if workers < 1:
        fail(f"--workers must be at least 1 (got {workers})")


def load_checked_bank(path: Path | None) -> Bank:
    """The bank; its problems are printed (grading goes on with the questions that loaded)."""
    bank = load_bank(resolve_bank(path))
    if bank.problems:
        typer.echo(
            f"vaequiz: warning: the bank has {len(bank.problems)} problem(s); run `vaequiz validate` "
            "for details. Grading uses the questions that loaded.",
            err=True,
        )
    return bank


def apply_quiz(
    bank: Bank, quiz_file: Path | None, seed: int | None = None
) -> tuple[list[str] | None, QuizIdentity]:
    """The quiz's question ids (None without a spec: grade what the sheets answer) and what its
    pages' letters derive from; its points overrides replace the bank's points for grading.
    Without a spec, letters derive from the whole-bank page (`vaequiz build` without --quiz)."""
    from vaequiz.grading.sheets import QuizIdentity
    from vaequiz.render.quiz_spec import QuizSpecError
    from vaequiz.render.selection import quiz_for

    if quiz_file is not None and not quiz_file.is_file():
        fail(f"quiz spec {quiz_file} does not exist")
    try:
        quiz = quiz_for(bank, quiz_file, seed)
    except QuizSpecError as err:
        fail(f"the quiz spec has {len(err.problems)} problem(s):\n{err}", EXIT_INVALID)
    identity = QuizIdentity(quiz.id, quiz.seed, quiz.shuffle_options)
    if quiz_file is None:
        return None, identity
    bank.questions = [
        q.model_copy(update={"points": quiz.points[q.id]}) if q.id in quiz.points else q
        for q in bank.questions
    ]
    return [q.id for q in quiz.questions], identity


def hidden_paths(bank: Bank, *extra: Path) -> list[Path]:
    """Folders the snippet must not read: the bank, the reference implementation, sheets, output."""
    paths = [bank.root.resolve(), *(p.resolve() for p in extra)]
    try:
        from vaequiz.paths import reference_impl_dir

        paths.append(reference_impl_dir())
    except ImportError:
        pass
    return paths


def open_sandbox(workers: int, device: Device, hide: list[Path]) -> AbstractContextManager[SandboxRunner]:
    """Start the sandbox, report hardening layers that are unavailable, exit 2 if it cannot start."""
    from vaequiz.grading.sandbox import Sandbox
    from vaequiz.grading.sandbox.api import SandboxUnavailable

    class _Started:
        def __enter__(self) -> SandboxRunner:
            try:
                self.sandbox = Sandbox(workers=workers, device=device.value, hide_paths=hide)
                runner = self.sandbox.__enter__()
            except SandboxUnavailable as err:
                fail(f"the sandbox could not start: {err}")
            for line in runner.hardening():  # say which isolation layers this machine lacks
                if not line.endswith(": active"):
                    typer.echo(f"vaequiz: sandbox: {line}", err=True)
            return runner

        def __exit__(self, *exc: object) -> None:
            self.sandbox.__exit__(*exc)

    return _Started()


def _find_question(bank: Bank, question_id: str) -> AnyQuestion:
    try:
        return bank.get(question_id)
    except KeyError:
        import difflib

        close = difflib.get_close_matches(question_id, [q.id for q in bank.questions], n=1)
        hint = f"; did you mean '{close[0]}'?" if close else "; `vaequiz list` shows the ids"
        fail(f"unknown question '{question_id}' in bank {bank.root}{hint}")


def _result_json(question: AnyQuestion, graded: Graded) -> dict[str, object]:
    from vaequiz.grading.reports import visible_message

    return {
        "question": question.id,
        "kind": question.kind,
        "passed": bool(graded.passed),
        "score": round(min(1.0, max(0.0, graded.score)), 9),
        "points": round(min(1.0, max(0.0, graded.score)) * question.points, 9),
        "max_points": question.points,
        "error": graded.error,
        "checks": [
            {
                "name": c.name,
                "passed": c.passed,
                "message": visible_message(c),
                "points": c.points,
                "hidden": c.hidden,
                "evidence": c.evidence,
            }
            for c in graded.checks
        ],
        "output": graded.output,
        "mistake": graded.mistake,
        "hints": graded.hints,
        "needs_review": graded.needs_review,
        "review_reasons": graded.review_reasons,
        "in_process": graded.in_process,
    }


def _print_report(question: AnyQuestion, graded: Graded) -> None:
    from vaequiz.grading.reports import visible_message

    verdict = "PASSED" if graded.passed else "NOT PASSED"
    typer.echo(
        f"{question.id}: {verdict}, score {graded.score:.0%} "
        f"({round(graded.score * question.points, 2):g} of {question.points:g} points)"
    )
    if graded.error:
        typer.echo(printable(f"  {graded.error}"))
    for check in graded.checks:
        mark = "ok  " if check.passed else "FAIL"
        message = visible_message(check)
        typer.echo(printable(f"  [{mark}] {check.name}" + (f": {message or check.evidence}" if message or check.evidence else "")))
    if graded.in_process:
        typer.echo(printable(f"  {graded.in_process}"))
    if graded.mistake:
        typer.echo(printable(f"  This looks like a common mistake: {graded.mistake}"))
    for hint in graded.hints:
        typer.echo(printable(f"  Hint: {hint}"))
    if graded.needs_review:
        typer.echo(printable("  a teacher will confirm this grade: " + "; ".join(graded.review_reasons)))
    if graded.output.strip():
        typer.echo("  your code printed:")
        for line in graded.output.rstrip().split("\n")[:40]:
            typer.echo(printable(f"    {line}"))


@app.command()
def grade(
    question_id: Annotated[str, typer.Argument(help="Id of the question (see `vaequiz list`).")],
    file: Annotated[Path, typer.Argument(help="The answer: a Python snippet, or text for other kinds.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print exactly one JSON object on stdout.")] = False,
    device: DeviceOpt = Device.cpu,
    bank: BankOption = None,
    student: Annotated[Optional[str], typer.Option(
        "--student", help="A parametric question is graded with this student's numbers.")] = None,
    quiz_id: Annotated[str, typer.Option(
        "--quiz-id", help="With --student: the quiz id the pages were built with.")] = "question-bank",  # a whole-bank build's
    seed: Annotated[int, typer.Option("--seed", min=0, help="With --student: the seed the pages were built with.")] = 0,
) -> None:
    """Grade one answer. Exit 0 passed, 1 not passed, 2 usage error."""
    from vaequiz.bank.parametric import bind, draw_for, is_parametric
    from vaequiz.grading.answers import read_answer
    from vaequiz.grading.grader import Grader, refused
    from vaequiz.grading.parametric import grade_with_params
    from vaequiz.grading.sandbox import source_problem
    from vaequiz.params import ParamError

    check_device(device)
    check_semantic()
    loaded = load_checked_bank(bank)
    question = _find_question(loaded, question_id)
    if not file.is_file():
        fail(f"answer file {file} does not exist" if not file.exists() else f"{file} is not a file")
    params = None
    if is_parametric(question) and student is not None:
        try:
            params = draw_for(question, quiz_id, seed, student)
            bound = bind(question, params)
        except ParamError as err:
            fail(f"cannot draw {question.id}'s numbers for {student!r}: {err}", EXIT_INVALID)
    elif is_parametric(question):
        fail(f"{question.id} is parametric: give --student (and --quiz-id and --seed, as the pages "
             "were built) to grade with that student's numbers", EXIT_INVALID)
    else:
        bound = question
    raw = file.read_bytes()
    try:
        text = raw.decode("utf-8")
        graded: Graded | None = None
    except UnicodeDecodeError as err:
        text = ""
        graded = refused(f"the answer is not UTF-8 text (byte {err.start}); save it as UTF-8")
    if graded is None and isinstance(question, CodeQuestion) and (problem := source_problem(raw)):
        graded = refused(problem)
    reading = read_answer(text, bound)
    if graded is None and reading.problem is not None:
        graded = refused(reading.problem)
    if graded is None:
        if isinstance(question, CodeQuestion):
            with open_sandbox(1, device, hidden_paths(loaded, file.parent)) as sandbox:
                grader = Grader(sandbox, device.value)
                graded = grade_with_params(lambda q: grader.grade(q, text), question, params)
        else:
            grader = Grader(None, device.value)
            graded = grade_with_params(lambda q: grader.grade(q, reading.answer), question, params)  # type: ignore[arg-type]
    if as_json:
        result = _result_json(question, graded)
        if params is not None:
            result["params"] = {name: params[name] for name in question.params or {}}
        typer.echo(json.dumps(result))
    else:
        if params is not None:
            from vaequiz.params import describe

            typer.echo(f"{question.id}: graded with {student}'s numbers, "
                       f"{describe({name: params[name] for name in question.params or {}})}")
        _print_report(question, graded)
    raise typer.Exit(0 if graded.passed else EXIT_INVALID)


QuizOpt = Annotated[
    Optional[Path],
    typer.Option("--quiz", help="Quiz spec: grade its questions, with its points overrides; refuse other quizzes' sheets."),
]
WorkersOpt = Annotated[int, typer.Option("--workers", help="Sandbox workers (default: all cores).")]
SeedOpt = Annotated[
    Optional[int],
    typer.Option("--seed", min=0, help="The seed the pages were built with, if `build --seed` overrode the spec's."),
]
FormatOpt = Annotated[
    SheetFormat, typer.Option("--format", help="gradescope: also write Gradescope results.json files.")
]


def _print_run(report: BatchReport, out: Path, output_format: SheetFormat) -> None:
    """Warnings and problems on stderr; what was regraded and why; the one-line summary."""
    for warning in report.warnings:
        typer.echo(printable(f"vaequiz: warning: {warning}"), err=True)
    for problem in report.problems:
        typer.echo(printable(f"vaequiz: {problem}"), err=True)
    for line in report.regrade_summary():
        typer.echo(printable(line))
    regraded = len(report.regraded)
    typer.echo(
        f"graded {report.graded} answer(s)"
        + (f" ({regraded} regraded)" if regraded else "")
        + f", {report.resumed} already in {out / 'results.jsonl'} and up to date; "
        f"{report.students} student(s), {len(report.questions)} question(s); "
        f"wrote {out / 'grades.csv'} and {out / 'feedback'}/"
        + (f" and {out / 'gradescope'}/" if output_format is SheetFormat.gradescope else "")
    )


@app.command("grade-sheets")
def grade_sheets_command(
    sheets: Annotated[list[Path], typer.Argument(help="Answer sheets (JSON), one per student.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for results.jsonl, grades.csv, feedback/.")],
    workers: WorkersOpt = 0,
    device: DeviceOpt = Device.cpu,
    bank: BankOption = None,
    output_format: FormatOpt = SheetFormat.default,
    quiz: QuizOpt = None,
    seed: SeedOpt = None,
    regrade_all: Annotated[
        bool, typer.Option("--regrade", help="Grade every answer again, even where nothing changed.")
    ] = False,
    broker: Annotated[
        Optional[str],
        typer.Option("--broker", help="Grade on `vaequiz worker` processes through this Celery broker "
                     "(redis://HOST:PORT/DB); --workers is then how many answers are in flight (default 32).",
                     show_default=False),
    ] = None,
) -> None:
    """Grade answer sheets; resumes from OUT/results.jsonl and regrades what changed. Exit 1 if
    a sheet or answer was set aside."""
    from vaequiz.grading.sheets import grade_sheets

    remote = _remote_grading(broker, device) if broker else None
    workers = workers or (32 if remote is not None else all_cores())
    check_workers(workers)
    if remote is None:
        check_device(device)  # with --broker, the GPU workers are where CUDA must be
    check_semantic()
    if out.exists() and not out.is_dir():
        fail(f"--out {out} exists and is not a folder")
    if not any(p.exists() for p in sheets):
        fail("none of the sheets exist: " + ", ".join(str(p) for p in sheets[:5]))
    loaded = load_checked_bank(bank)
    only, identity = apply_quiz(loaded, quiz, seed)
    hide = hidden_paths(loaded, out, *{p.parent for p in sheets})
    if remote is not None:
        from vaequiz.grading.remote import BrokerError

        try:
            remote.check([q for q in loaded.questions if only is None or q.id in only])
        except BrokerError as err:
            fail(str(err))
    report = grade_sheets(
        sheets,
        out,
        loaded,
        lambda: open_sandbox(workers, device, hide),
        workers,
        device.value,
        output_format.value,  # type: ignore[arg-type]
        only,
        identity,
        quiz_given=quiz is not None,
        regrade_all=regrade_all,
        quiz_file=quiz,
        seed=seed,
        grade=remote,
    )
    _print_run(report, out, output_format)
    if report.problems:
        raise typer.Exit(EXIT_INVALID)


def _remote_grading(broker: str, device: Device) -> "RemoteGrading":
    """Grading on `vaequiz worker` processes (the serve extra's Celery), or a clear exit."""
    try:
        import celery  # noqa: F401
        import redis  # noqa: F401
    except ModuleNotFoundError as err:
        fail(f"--broker needs celery[redis] (the 'serve' extra; {err.name} is missing): pip install 'vaequiz[serve]'")
    from vaequiz.grading.remote import BrokerError, RemoteGrading

    try:
        return RemoteGrading(broker, device.value)
    except BrokerError as err:
        fail(str(err))


def _print_dry_run(report: BatchReport) -> None:
    """Per student and question: old and new points, and why it would be regraded."""
    from rich.console import Console
    from rich.table import Table

    for warning in report.warnings:
        typer.echo(printable(f"vaequiz: warning: {warning}"), err=True)
    for problem in report.problems:
        typer.echo(printable(f"vaequiz: {problem}"), err=True)
    from vaequiz.grading.batch import REASONS

    table = Table(title="vaequiz regrade --dry-run (nothing written)")
    for column in ("student", "question", "old points", "new points", "change", "why"):
        table.add_column(column, overflow="fold")
    for change in report.regraded:
        old = change.old_points or 0.0
        delta = change.new_points - old
        table.add_row(
            printable(change.student),
            change.question,
            f"{old:g} / {change.old_max_points or 0:g}",
            f"{change.new_points:g} / {change.max_points:g}",
            f"{delta:+g}" if abs(delta) > 1e-9 else "=",
            REASONS.get(change.reason, change.reason),
        )
    Console(width=160).print(table)
    moved = sum(1 for c in report.regraded if abs(c.new_points - (c.old_points or 0.0)) > 1e-9)
    typer.echo(
        f"would regrade {len(report.regraded)} answer(s), {moved} with different points; "
        f"{report.resumed} up to date; nothing written"
    )


@app.command()
def regrade(
    folder: Annotated[Path, typer.Argument(help="An output folder of grade-sheets (holds results.jsonl).")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List old and new points per student and question; write nothing.")
    ] = False,
    regrade_all: Annotated[
        bool, typer.Option("--all", help="Grade every stored answer again, even where nothing changed.")
    ] = False,
    workers: WorkersOpt = 0,
    device: DeviceOpt = Device.cpu,
    bank: BankOption = None,
    output_format: FormatOpt = SheetFormat.default,
    quiz: QuizOpt = None,
    seed: SeedOpt = None,
) -> None:
    """Regrade stored answers whose question or grader changed, from FOLDER/results.jsonl, and
    rewrite the gradebook. Exit 1 if an answer could not be graded."""
    from vaequiz.grading.batch import grade_batch
    from vaequiz.grading.feedback import QuizLookup

    workers = workers or all_cores()
    check_workers(workers)
    check_device(device)
    if not (folder / "results.jsonl").is_file():
        fail(f"{folder} holds no results.jsonl; run `vaequiz grade-sheets ... --out {folder}` first")
    loaded = load_checked_bank(bank)
    only, identity = apply_quiz(loaded, quiz, seed)
    hide = hidden_paths(loaded, folder)
    report = grade_batch(
        folder,
        loaded,
        {},
        lambda: open_sandbox(workers, device, hide),
        workers,
        device.value,
        output_format.value,  # type: ignore[arg-type]
        only=only,
        regrade_all=regrade_all,
        dry_run=dry_run,
        quizzes=QuizLookup(loaded, quiz, seed),
    )
    named = sorted({r.quiz for r in report.results if r.quiz} - {identity.id})
    if quiz is None and named:
        report.warnings.append(
            f"the results are for quiz {', '.join(named)}; without --quiz its questions and points "
            "overrides are not applied (give the same --quiz as grade-sheets)"
        )
    if dry_run:
        _print_dry_run(report)
    else:
        _print_run(report, folder, output_format)
    if report.problems:
        raise typer.Exit(EXIT_INVALID)


@app.command()
def verify(
    bank: BankArgument = None,
    workers: Annotated[int, typer.Option("--workers", help="Sandbox workers (default: all cores).")] = 0,
    device: DeviceOpt = Device.cpu,
    as_json: Annotated[bool, typer.Option("--json", help="Print the findings as a JSON list.")] = False,
    draws: Annotated[int, typer.Option("--draws", min=1, max=100_000, help="Draws of every parametric question.")] = 500,
) -> None:
    """References pass, mutants fail, linked code options match their key, every draw of a
    parametric question is sound. Exit 1 on any disagreement."""
    from vaequiz.grading.grader import Grader
    from vaequiz.grading.verify import needs_sandbox
    from vaequiz.grading.verify import verify as run_verify

    workers = workers or all_cores()
    check_workers(workers)
    check_device(device)
    loaded = load_bank(resolve_bank(bank))
    for problem in loaded.problems:
        typer.echo(str(problem), err=True)
    if needs_sandbox(loaded):
        with open_sandbox(workers, device, hidden_paths(loaded)) as sandbox:
            findings = run_verify(loaded, Grader(sandbox, device.value), workers, draws)
    else:
        findings = run_verify(loaded, Grader(None, device.value), workers, draws)
    disagreements = [f for f in findings if not f.agrees]
    if as_json:
        typer.echo(json.dumps([{**f.__dict__, "agrees": f.agrees} for f in findings], indent=2))
    else:
        _print_findings(findings)
    summary = f"{len(findings) - len(disagreements)} of {len(findings)} agree"
    if loaded.problems:
        summary += f"; the bank has {len(loaded.problems)} problem(s)"
    typer.echo(summary, err=as_json)
    if disagreements or loaded.problems:
        raise typer.Exit(EXIT_INVALID)


def _print_findings(findings: list[Finding]) -> None:
    from rich.console import Console
    from rich.table import Table

    from vaequiz.grading.verify import OUT_OF_PROCESS, VALUES_ONLY, measurements_by_question

    by_question = measurements_by_question(findings)
    table = Table(title="vaequiz verify", show_lines=False)
    for column in ("question", "answer", "expected", "got", "", "measured", "why"):
        table.add_column(column, overflow="fold")
    shown: set[str] = set()
    for f in findings:
        measured = f.measured if f.measured not in ("", OUT_OF_PROCESS, VALUES_ONLY) else ""
        if f.question in by_question and f.question not in shown:  # the question's first row
            shown.add(f.question)
            measured = by_question[f.question] + (f"; {measured}" if measured else "")
        table.add_row(
            f.question,
            f.subject,
            f.expected,
            f.got,
            "ok" if f.agrees else "DISAGREES",
            measured,
            f.detail,
            style=None if f.agrees else "bold red",
        )
    Console(width=160).print(table)
