"""`vaequiz build`: HTML quiz pages (exam, practice, answer key, flashcards)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from vaequiz.cli.app import (
    EXIT_INVALID,
    EXIT_USAGE,
    BankOption,
    app,
    fail,
    resolve_bank,
)
from vaequiz.render.build import BuildError
from vaequiz.render.build import build as build_pages
from vaequiz.render.fragments import Mode


@app.command()
def build(
    output: Annotated[
        Path, typer.Option("-o", "--output", help="HTML file to write, or a folder with --roster.")
    ],
    bank: BankOption = None,
    quiz: Annotated[
        Optional[Path], typer.Option("--quiz", help="Quiz spec (*.quiz.yaml); default: the whole bank.")
    ] = None,
    mode: Annotated[Mode, typer.Option("--mode", help="Which page to build.")] = Mode.exam,
    seed: Annotated[
        Optional[int], typer.Option("--seed", min=0, help="Seed for draws and variants (default: the spec's).")
    ] = None,
    student: Annotated[
        Optional[str], typer.Option("--student", help="Build this student's variant.")
    ] = None,
    roster: Annotated[
        Optional[Path], typer.Option("--roster", help="CSV with a 'student' column: one page per student.")
    ] = None,
) -> None:
    """Build a self-contained HTML page: exam, practice, key or flashcards, per-student variants."""
    try:
        pages = build_pages(
            resolve_bank(bank),
            output,
            quiz_file=quiz,
            mode=mode,
            seed=seed,
            student=student,
            roster=roster,
        )
    except BuildError as err:
        fail(str(err), EXIT_USAGE if err.usage else EXIT_INVALID)
    if len(pages) == 1:
        page = pages[0]
        who = f" for {page.student}" if page.student else ""
        typer.echo(f"wrote {page.path} ({mode.value}{who}, variant {page.variant})")
    else:
        typer.echo(f"wrote {len(pages)} {mode.value} pages to {output}")
