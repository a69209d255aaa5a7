"""Instructor commands: new (skeletons), lint (item quality), stats (item analysis), export."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from vaequiz.bank.loader import QUIZ_SUFFIXES
from vaequiz.bank.models import ID_PATTERN
from vaequiz.bank.skeletons import (
    KINDS,
    SkeletonError,
    append_skeleton,
    ids_in,
    skeleton_yaml,
    unused_id,
)
from vaequiz.cli.app import (
    EXIT_INVALID,
    BankArgument,
    BankOption,
    app,
    fail,
    resolve_bank,
)
from vaequiz.compat import StrEnum
from vaequiz.export.common import DEFAULT_VARIANTS

if TYPE_CHECKING:
    from vaequiz.stats.analysis import StatsReport

Kind = StrEnum("Kind", {kind: kind for kind in KINDS})  # type: ignore[misc]


@app.command()
def new(
    kind: Annotated[Kind, typer.Argument(help="Question kind: " + ", ".join(KINDS) + ".")],
    question_id: Annotated[
        Optional[str], typer.Option("--id", help="Id of the new question (kebab-case).")
    ] = None,
    file: Annotated[
        Optional[Path],
        typer.Option("--file", help="Bank file to append to (created if missing); else print."),
    ] = None,
) -> None:
    """Append a commented skeleton of KIND that validates as-is, or print it."""
    kind_name = str(kind.value)
    if question_id is not None and not re.fullmatch(ID_PATTERN, question_id):
        fail(f"--id {question_id!r} is not kebab-case (lowercase letters, digits, single hyphens)")
    if file is None:
        typer.echo(skeleton_yaml(kind_name, question_id or unused_id(kind_name, set())), nl=False)
        return
    if file.is_dir():
        fail(f"--file {file} is a folder; name a .yaml file inside it")
    if file.suffix not in (".yaml", ".yml") or file.name.endswith(QUIZ_SUFFIXES):
        fail(f"--file {file} is not a bank file; bank files end in .yaml or .yml "
             "(and are not quiz specs, *.quiz.yaml)")
    taken = ids_in(file)
    if question_id in taken:
        fail(f"id '{question_id}' is already used in the bank folder {file.parent}; "
             "ids must be unique across the bank")
    chosen = question_id or unused_id(kind_name, taken)
    try:
        appended = append_skeleton(file, kind_name, chosen)
    except SkeletonError as err:
        fail(str(err))
    typer.echo(f"{appended.file}:{appended.line}: added {kind_name} question '{chosen}'; "
               "edit it, then run `vaequiz validate` and `vaequiz lint`")


@app.command()
def lint(
    bank: BankArgument = None,
) -> None:
    """Item-writing checks beyond the schema; exit 1 only when there are errors."""
    from vaequiz.bank.lint import lint_bank

    report = lint_bank(resolve_bank(bank))
    for finding in report.findings:
        typer.echo(str(finding))
    typer.echo(
        f"{len(report.errors)} error(s), {len(report.warnings)} warning(s) in "
        f"{len(report.bank.questions)} question(s)",
        err=True,
    )
    if report.errors:
        raise typer.Exit(EXIT_INVALID)


@app.command()
def stats(
    folder: Annotated[Path, typer.Argument(help="Folder holding results.jsonl (or the file).")],
    out: Annotated[
        Optional[Path], typer.Option("--out", "-o", help="Write the HTML report here.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the statistics as JSON.")] = False,
    bank: BankOption = None,
) -> None:
    """Item analysis: facility, discrimination, distractors, score distribution, alpha."""
    from vaequiz.bank.loader import load_bank
    from vaequiz.stats.analysis import StatsInputError, analyse_folder
    from vaequiz.stats.report import to_json, write_html

    if not folder.exists():
        fail(f"{folder} does not exist; give the folder `vaequiz grade-sheets` wrote")
    loaded = load_bank(resolve_bank(bank)) if bank is not None or _default_bank_exists() else None
    try:
        report = analyse_folder(folder, loaded)
    except StatsInputError as err:
        fail(str(err))
    for warning in report.warnings:
        typer.echo(f"vaequiz: warning: {warning}", err=True)
    if out is not None:
        try:
            write_html(report, out)
        except OSError as err:
            fail(f"cannot write {out}: {err.strerror or err}")
        typer.echo(f"wrote {out}", err=True)
    if as_json:
        typer.echo(to_json(report))
    elif out is None:
        _print_summary(report)


def _default_bank_exists() -> bool:
    from vaequiz.paths import default_bank

    return default_bank().exists()


def _print_summary(report: StatsReport) -> None:
    quiz = report.quiz
    alpha = "n/a" if quiz.cronbach_alpha is None else f"{quiz.cronbach_alpha:.2f}"
    typer.echo(f"{quiz.name}: {quiz.students} students, {quiz.items} items, mean "
               f"{quiz.mean_percent:.1f}%, alpha {alpha}")
    width = max(len(i.question) for i in report.items)
    typer.echo(f"{'question':<{width}}  facility  r_rest  D_27%  flags")
    for item in report.items:
        r = "  n/a " if item.point_biserial is None else f"{item.point_biserial:6.2f}"
        d = " n/a " if item.upper_lower is None else f"{item.upper_lower:5.2f}"
        typer.echo(f"{item.question:<{width}}  {item.facility:8.2f}  {r}  {d}  {'; '.join(item.flags)}")


class ExportFormat(StrEnum):
    moodle = "moodle"
    gift = "gift"
    qti = "qti"
    gradescope = "gradescope"


@app.command()
def export(
    export_format: Annotated[
        ExportFormat, typer.Option("--format", "-f", help="moodle, gift, qti or gradescope.")
    ],
    out: Annotated[Path, typer.Option("-o", "--out", help="File to write (.xml, .gift, .zip).")],
    bank: BankOption = None,
    quiz: Annotated[
        Optional[Path], typer.Option("--quiz", help="Quiz spec (*.quiz.yaml) selecting questions.")
    ] = None,
    variants: Annotated[
        int, typer.Option("--variants", min=1, max=100,
                          help="Fixed draws written for each parametric question a format "
                               "cannot carry with its own variables.")
    ] = DEFAULT_VARIANTS,
) -> None:
    """Export the bank, or one quiz, to Moodle XML, GIFT, a QTI 3.0 package or a Gradescope
    autograder."""
    import importlib

    from vaequiz.export.common import ExportError, load_export_set

    if out.is_dir():
        fail(f"-o {out} is a folder; name the file to write")
    if quiz is not None and not quiz.is_file():
        fail(f"--quiz {quiz} does not exist")
    try:
        selection = load_export_set(resolve_bank(bank), quiz, variants)
        writer = importlib.import_module(f"vaequiz.export.{export_format.value}")
        result = writer.export(selection, out)
    except ExportError as err:
        fail(str(err), EXIT_INVALID)
    except OSError as err:
        fail(f"cannot write {out}: {err.strerror or err}")
    for question_id, reason in result.skipped:
        typer.echo(f"vaequiz: skipped {question_id}: {reason}", err=True)
    for loss in result.lost:
        typer.echo(f"vaequiz: {loss}", err=True)
    for question_id, numbers in selection.fixed_draws.items():
        typer.echo(f"vaequiz: {question_id}: parametric; exported with one fixed draw ({numbers}), the same for every student", err=True)
    typer.echo(f"wrote {out}: {len(result.written)} question(s) as {export_format.value}"
               + (f", {len(result.skipped)} skipped" if result.skipped else ""))
