"""``results.jsonl``: one graded (student, question) per line, appended as soon as it is ready.

Every line is flushed and fsynced, so a killed run loses at most the line being written; on the
next run a truncated last line is cut off and every complete line counts as done. A regrade
appends the new result after the old one (the last line per pair wins); at the end of a run
the file is compacted to the newest line per pair, atomically, so readers never see stale
results and an interrupted compaction leaves the file as it was.
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


def _pair(line: bytes) -> tuple[str, str] | None:
    """(student, question) of a result line, or None when the line is not one."""
    try:
        data = json.loads(line)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("student"), str) or not isinstance(data.get("question"), str):
        return None
    return data["student"], data["question"]


def compact_results(path: Path) -> int:
    """Keep only the newest line of each (student, question) in ``path``; return how many
    lines were dropped. Lines that are not results are kept as they are (nothing this version
    cannot read is destroyed). The new file replaces the old one atomically."""
    if not path.exists():
        return 0
    raw = path.read_bytes()
    end = raw.rfind(b"\n") + 1
    lines = raw[:end].splitlines(keepends=True)
    pairs = [_pair(line) for line in lines]
    last = {pair: index for index, pair in enumerate(pairs) if pair is not None}
    kept = [line for index, (line, pair) in enumerate(zip(lines, pairs)) if pair is None or last[pair] == index]
    kept = [line for line in kept if line.strip()]
    dropped = len(lines) - len(kept)
    if not dropped:
        return 0
    temporary = path.with_name(path.name + ".compacting")
    with temporary.open("wb") as handle:
        handle.writelines(kept)
        handle.write(raw[end:])
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return dropped


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
        # ASCII only: a raw U+2028 or U+0085 in an answer would split the line for readers that
        # split on every Unicode line break (str.splitlines, many editors)
        line = json.dumps(item.model_dump(mode="json"), ensure_ascii=True) + "\n"
        with self._lock:
            assert self._handle is not None, "use ResultsLog as a context manager"
            self._handle.write(line)
            self._handle.flush()
            os.fsync(self._handle.fileno())
