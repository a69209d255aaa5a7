"""``results.jsonl``: one graded (student, question) per line, appended as soon as it is ready.

Every line is flushed and fsynced, so a killed run loses at most the line being written; on the
next run a truncated last line is cut off and every complete line counts as done.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import IO

from pydantic import ValidationError

from vaequiz.grading.models import ItemResult

RESULTS_FILE = "results.jsonl"


def read_results(path: Path, *, repair: bool = True) -> tuple[list[ItemResult], list[str]]:
    """Every complete, valid line of ``path`` (last one wins per pair), plus warnings.

    A partial last line (no newline: the run was killed mid-write) is ignored; with ``repair``
    (the grader, about to append) it is also cut from the file so appending continues on a
    clean line. Readers that only analyse pass ``repair=False`` and never change the file.
    """
    if not path.exists():
        return [], []
    raw = path.read_bytes()
    warnings: list[str] = []
    end = raw.rfind(b"\n") + 1
    if end < len(raw):
        if repair:
            warnings.append(
                f"{path}: dropped an incomplete last line (an interrupted run); it will be graded again"
            )
            with path.open("r+b") as handle:
                handle.truncate(end)
        else:
            last_line = raw[:end].count(b"\n") + 1
            warnings.append(
                f"{path}:{last_line}: incomplete last line (a run still writing or interrupted); ignored"
            )
    latest: dict[tuple[str, str], ItemResult] = {}
    for number, line in enumerate(raw[:end].splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = ItemResult.model_validate_json(line)
        except ValidationError as err:
            warnings.append(
                f"{path}:{number}: not a result line ({err.errors()[0]['msg']}); ignored"
                + (" (that pair will be graded again)" if repair else "")
            )
            continue
        latest[(item.student, item.question)] = item
    return list(latest.values()), warnings


class ResultsLog:
    """Appends results durably; safe to call from several threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._handle: IO[str] | None = None

    def __enter__(self) -> "ResultsLog":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = self.path.open("a", encoding="utf-8")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def append(self, item: ItemResult) -> None:
        """Write one line and force it to disk before returning."""
        line = json.dumps(item.model_dump(mode="json"), ensure_ascii=False) + "\n"
        with self._lock:
            assert self._handle is not None, "use ResultsLog as a context manager"
            self._handle.write(line)
            self._handle.flush()
            os.fsync(self._handle.fileno())
