"""Instructor commands: new (skeletons), lint (item quality), stats (item analysis), export."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Optional

import typer

from vaequiz.bank.skeletons import KINDS, SkeletonError, append_skeleton, ids_in, skeleton_yaml, unused_id
from vaequiz.cli.app import EXIT_INVALID, app, fail, resolve_bank

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
    from vaequiz.bank.models import ID_PATTERN

    import re

    kind_name = str(kind.value)
    if question_id is not None and not re.fullmatch(ID_PATTERN, question_id):
        fail(f"--id {question_id!r} is not kebab-case (lowercase letters, digits, single hyphens)")
    if file is None:
        typer.echo(skeleton_yaml(kind_name, question_id or unused_id(kind_name, set())), nl=False)
        return
    if file.is_dir():
        fail(f"--file {file} is a folder; name a .yaml file inside it")
    chosen = question_id or unused_id(kind_name, ids_in(file))
    try:
        appended = append_skeleton(file, kind_name, chosen)
    except SkeletonError as err:
        fail(str(err))
    typer.echo(f"{appended.file}:{appended.line}: added {kind_name} question '{chosen}'; "
               "edit it, then run `vaequiz validate` and `vaequiz lint`")


@app.command()
def lint(
    bank: Annotated[Optional[Path], typer.Argument(help="Bank folder or file.")] = None,
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
