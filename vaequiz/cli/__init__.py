"""The `vaequiz` command line: a thin layer where each command calls one library function."""

from vaequiz.cli.app import app, main

__all__ = ["app", "main"]
