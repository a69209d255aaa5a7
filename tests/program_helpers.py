"""Helpers for the program tests: capture in a separate process, measure here, grade."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Sequence

from vaequiz.grading.code import judge
from vaequiz.grading.inputs import PreparedQuestion, PreparedRun
from vaequiz.grading.models import CheckResult
from vaequiz.grading.sandbox.api import RunOutcome, SandboxResult
from vaequiz.grading.sandbox.program import capture_request
from vaequiz.grading.sandbox.program_format import Program, ProgramRefused, decode_program
from vaequiz.grading.sandbox.program_run import measure_run

REPO = Path(__file__).resolve().parent.parent


def write_request(source: str, expect: Sequence[str], runs: Sequence[PreparedRun], folder: Path) -> tuple[Path, Path]:
    """A capture request in ``folder`` and the folder its programs go to."""
    folder.mkdir(parents=True, exist_ok=True)
    request = folder / "request.wire"
    request.write_bytes(capture_request(source, expect, runs))
    out = folder / "out"
    out.mkdir(exist_ok=True)
    return request, out


def run_capture(pairs: Sequence[tuple[Path, Path]]) -> None:
    """``python -m vaequiz.grading.sandbox.program`` on every (request, folder) pair: a plain
    child process that forks one capture per request."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    argv = [str(p) for pair in pairs for p in pair]
    subprocess.run(
        [sys.executable, "-m", "vaequiz.grading.sandbox.program", *argv],
        env=env,
        capture_output=True,
        timeout=900,
        check=False,
    )


def read_programs(out: Path, count: int) -> list[bytes | None]:
    """The program of each run (None where the child wrote none)."""
    files = [out / f"run-{i}.program" for i in range(count)]
    return [f.read_bytes() if f.exists() else None for f in files]


def capture_in_subprocess(
    source: str, expect: Sequence[str], runs: Sequence[PreparedRun], folder: Path
) -> list[bytes | None]:
    """The program of each run, captured in a plain child process."""
    request, out = write_request(source, expect, runs, folder)
    run_capture([(request, out)])
    return read_programs(out, len(runs))


def decoded(data: bytes | None) -> Program | str:
    """The program in ``data``, or why it cannot be measured."""
    if data is None:
        return "could not measure: no program was handed over"
    try:
        return decode_program(data)
    except ProgramRefused as err:
        return str(err)


def measured(program: Program | str, run: PreparedRun) -> RunOutcome:
    """The run measured from a program, or an outcome that says why it could not be."""
    if isinstance(program, str):
        return RunOutcome(error=program)
    try:
        return measure_run(program, run.given, run.seed, run.probes)
    except ProgramRefused as err:
        return RunOutcome(error=str(err))


def first_of_each_trial(prepared: PreparedQuestion) -> list[PreparedRun]:
    seen: set[int] = set()
    firsts = []
    for run in prepared.runs:
        if run.trial not in seen:
            seen.add(run.trial)
            firsts.append(run)
    return firsts


def grade_by_replay(prepared: PreparedQuestion, programs: dict[int, bytes | None]) -> list[CheckResult]:
    """Grade every run from the program captured on its trial's first repeat, replayed with
    the run's own seed: repeats (and so freshness) are the trusted side's doing."""
    by_trial = {trial: decoded(data) for trial, data in programs.items()}
    outcomes = [measured(by_trial[run.trial], run) for run in prepared.runs]
    return judge(prepared, SandboxResult(status="ok", reason="", runs=outcomes)).checks
