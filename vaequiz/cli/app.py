"""The Typer application and the conventions every command shares.

Exit codes: 0 success, 1 the input was checked and found wrong (invalid bank, failed grade),
2 usage error (unknown option, missing file, unknown question). Messages go to stderr.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Annotated, NoReturn, Optional

import typer

from vaequiz.paths import default_bank

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2

app = typer.Typer(
    name="vaequiz",
    help="Quiz and assessment engine for Variational Autoencoder coursework in PyTorch.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

COMMAND_MODULES = ("bank", "grade", "render", "instructor", "review", "serve")
"""Modules of vaequiz.cli that register commands on ``app``; one per part of the library."""


_BANK_HELP = "Bank folder or file (default: $VAEQUIZ_BANK, ./question_bank, the bundled bank)."
BankArgument = Annotated[Optional[Path], typer.Argument(help=_BANK_HELP, show_default=False)]
"""The bank as a command's optional argument (validate, list, lint, verify)."""
BankOption = Annotated[Optional[Path], typer.Option("--bank", help=_BANK_HELP, show_default=False)]
"""The bank as ``--bank`` (commands whose argument is something else)."""


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print ``vaequiz: error: message`` to stderr and exit with ``code``."""
    typer.echo(f"vaequiz: error: {message}", err=True)
    raise typer.Exit(code)


def resolve_bank(bank: Path | None) -> Path:
    """The bank folder a command works on, defaulting as documented in the README."""
    path = bank if bank is not None else default_bank()
    if not path.exists():
        fail(f"bank folder {path} does not exist")
    return path


def _register() -> None:
    for name in COMMAND_MODULES:
        try:
            importlib.import_module(f"vaequiz.cli.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"vaequiz.cli.{name}":
                raise


_register()


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("vaequiz: interrupted", err=True)
        sys.exit(130)
