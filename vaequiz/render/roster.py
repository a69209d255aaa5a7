"""Read a class roster: a CSV file with a header that has a ``student`` (or ``id``) column."""

from __future__ import annotations

import csv
from pathlib import Path

STUDENT_COLUMNS = ("student", "id")
MAX_ID_LENGTH = 200


class RosterError(ValueError):
    """A roster that cannot be used, with the line to fix."""


def read_roster(path: Path) -> list[str]:
    """Student ids in file order; blank lines are skipped, duplicates and bad ids are errors."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise RosterError(f"{path}: no such roster file") from None
    except OSError as err:
        raise RosterError(f"{path}: cannot read the roster: {err.strerror}") from None
    except UnicodeDecodeError as err:
        raise RosterError(f"{path}: byte {err.start} is not UTF-8; save the roster as UTF-8") from None
    rows = list(csv.reader(text.splitlines()))
    if not rows or not any(cell.strip() for cell in rows[0]):
        raise RosterError(f"{path}:1: the roster is empty; the first line is a header with a 'student' column")
    header = [cell.strip().lower() for cell in rows[0]]
    column = next((header.index(name) for name in STUDENT_COLUMNS if name in header), None)
    if column is None:
        raise RosterError(
            f"{path}:1: the header ({', '.join(rows[0])}) has no 'student' or 'id' column"
        )
    students: list[str] = []
    first_line: dict[str, int] = {}
    for line_number, row in enumerate(rows[1:], 2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) <= column or not row[column].strip():
            raise RosterError(f"{path}:{line_number}: the {header[column]} column is empty")
        student = row[column].strip()
        if len(student) > MAX_ID_LENGTH:
            raise RosterError(f"{path}:{line_number}: the student id is longer than {MAX_ID_LENGTH} characters")
        if any(ch in student for ch in "/\\\0") or student in (".", ".."):
            raise RosterError(
                f"{path}:{line_number}: student id {student!r} contains a path character (/ or \\)"
            )
        if student in first_line:
            raise RosterError(
                f"{path}:{line_number}: student {student!r} is listed twice (first on line {first_line[student]})"
            )
        first_line[student] = line_number
        students.append(student)
    if not students:
        raise RosterError(f"{path}: the roster lists no students")
    return students
