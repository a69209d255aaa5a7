"""Commands over the bank itself: validate, list, schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from vaequiz.bank.loader import load_bank
from vaequiz.bank.schema import bank_schema_json
from vaequiz.cli.app import EXIT_INVALID, BankArgument, app, resolve_bank


@app.command()
def validate(bank: BankArgument = None) -> None:
    """Check every question in the bank, its formulas included.

    Every problem is reported in one run as file:line:column: field: message.
    """
    loaded = load_bank(resolve_bank(bank), check_formulas=True)
    for problem in loaded.problems:
        typer.echo(str(problem), err=True)
    if loaded.problems:
        typer.echo(
            f"{len(loaded.problems)} problem(s) in {len(loaded.files)} file(s); "
            f"{len(loaded.questions)} question(s) valid",
            err=True,
        )
        raise typer.Exit(EXIT_INVALID)
    kinds: dict[str, int] = {}
    for question in loaded.questions:
        kinds[question.kind] = kinds.get(question.kind, 0) + 1
    summary = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
    typer.echo(f"ok: {len(loaded.questions)} questions in {len(loaded.files)} files ({summary})")


@app.command("list")
def list_questions(
    bank: BankArgument = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list of objects.")] = False,
) -> None:
    """One row per question: id, kind, topics, difficulty, points."""
    loaded = load_bank(resolve_bank(bank))
    for problem in loaded.problems:
        typer.echo(str(problem), err=True)
    rows = [
        {
            "id": q.id,
            "kind": q.kind,
            "topics": list(q.topics),
            "difficulty": str(q.difficulty),
            "points": q.points,
            "source": q.source,
            "location": str(loaded.locations[q.id]),
        }
        for q in loaded.questions
    ]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    else:
        widths = [max([len(r["id"]) for r in rows] + [2]), 12, 12]
        typer.echo(f"{'id':<{widths[0]}}  {'kind':<12}  {'difficulty':<12}  {'points':>6}  topics")
        for r in rows:
            typer.echo(
                f"{r['id']:<{widths[0]}}  {r['kind']:<12}  {r['difficulty']:<12}  "
                f"{r['points']:>6g}  {', '.join(r['topics'])}"
            )
    if loaded.problems:
        raise typer.Exit(EXIT_INVALID)


@app.command()
def schema(
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Write to a file.")] = None,
) -> None:
    """Print the JSON Schema of bank files (for yaml-language-server completion in editors)."""
    text = bank_schema_json()
    if output:
        output.write_text(text, encoding="utf-8")
    else:
        typer.echo(text, nl=False)
