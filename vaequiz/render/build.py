"""`vaequiz build` as a library call: bank + quiz spec + mode + students -> HTML files."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from vaequiz.bank.loader import load_bank
from vaequiz.params import ParamError
from vaequiz.render.fragments import FragmentError, FragmentRenderer, Mode
from vaequiz.render.page import PageBuilder
from vaequiz.render.quiz_spec import QuizSpecError
from vaequiz.render.roster import RosterError, read_roster
from vaequiz.render.selection import Quiz, quiz_for


class BuildError(Exception):
    """Why nothing was written; ``usage`` separates a wrong command from wrong content."""

    def __init__(self, message: str, usage: bool = False) -> None:
        super().__init__(message)
        self.usage = usage


@dataclass(frozen=True)
class BuiltPage:
    path: Path
    student: str
    variant: str


def safe_file_part(text: str) -> str:
    """A file-name-safe form of a student id (the page's script uses the same rule)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", text).lstrip("._")
    return cleaned or "student"


def load_quiz(bank_path: Path, quiz_file: Path | None, seed: int | None) -> Quiz:
    """The bank and the quiz resolved against it; every problem becomes one BuildError."""
    bank = load_bank(bank_path)
    if bank.problems:
        listed = "\n".join(str(p) for p in bank.problems)
        raise BuildError(f"the bank has {len(bank.problems)} problem(s); fix them first:\n{listed}")
    try:
        return quiz_for(bank, quiz_file, seed)
    except QuizSpecError as err:
        raise BuildError(f"the quiz spec has {len(err.problems)} problem(s):\n{err}") from None


def build(
    bank_path: Path,
    output: Path,
    *,
    quiz_file: Path | None = None,
    mode: Mode = Mode.exam,
    seed: int | None = None,
    student: str | None = None,
    roster: Path | None = None,
) -> list[BuiltPage]:
    """Write one page (``output`` is a file) or one per roster student (``output`` is a folder)."""
    if student is not None and roster is not None:
        raise BuildError("give --student or --roster, not both", usage=True)
    if student is not None and not student.strip():
        raise BuildError("--student is empty", usage=True)
    if quiz_file is not None and not quiz_file.is_file():
        raise BuildError(f"quiz file {quiz_file} does not exist", usage=True)
    if roster is not None and not roster.is_file():
        raise BuildError(f"roster file {roster} does not exist", usage=True)
    if roster is None and output.is_dir():
        raise BuildError(f"{output} is a folder; -o names the HTML file to write", usage=True)
    if roster is not None and output.exists() and not output.is_dir():
        raise BuildError(f"{output} is a file; with --roster, -o names a folder", usage=True)
    students: list[str]
    if roster is not None:
        try:
            students = read_roster(roster)
        except RosterError as err:
            raise BuildError(str(err)) from None
    else:
        students = [student.strip() if student else ""]
    quiz = load_quiz(bank_path, quiz_file, seed)
    try:
        builder = PageBuilder(quiz, mode, FragmentRenderer())
        pages = [(name, builder.variant(name).id, builder.render(name)) for name in students]
    except FragmentError as err:
        raise BuildError(f"a formula does not render: {err}") from None
    except ParamError as err:
        raise BuildError(f"a parametric question cannot be drawn: {err}") from None
    if roster is None:
        targets = [output]
    else:
        targets = _roster_targets(output, quiz.id, students)
    written = []
    for target, (name, variant, html) in zip(targets, pages):
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(html, encoding="utf-8")
        except OSError as err:
            raise BuildError(f"cannot write {target}: {err.strerror or err}", usage=True) from None
        written.append(BuiltPage(target, name, variant))
    return written


def _roster_targets(folder: Path, quiz_id: str, students: list[str]) -> list[Path]:
    targets: list[Path] = []
    owners: dict[str, str] = {}
    for name in students:
        file_name = f"{quiz_id}-{safe_file_part(name)}.html"
        if file_name.lower() in owners:
            raise BuildError(
                f"students {owners[file_name.lower()]!r} and {name!r} would share the file {file_name}; "
                "make their ids differ in letters or digits"
            )
        owners[file_name.lower()] = name
        targets.append(folder / file_name)
    return targets
