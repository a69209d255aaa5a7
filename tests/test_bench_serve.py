"""bench/bench_serve.py keeps working: a five-student burst through a real `vaequiz serve` and
`vaequiz grade-sheets`, with its checks (nothing lost, the same points both ways). Not timed."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def test_a_small_burst_grades_every_answer_once_with_the_points_grade_sheets_gives() -> None:
    done = subprocess.run(
        [sys.executable, "bench/bench_serve.py", "--students", "5", "--window", "6", "--submit-spread", "2"],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "students: 5 finished, 0 failed" in done.stdout
    assert "lost: 0; graded more than once: 0" in done.stdout
    assert "results.jsonl download: 60 answers; points differing from grade-sheets: 0" in done.stdout
    assert "checks: every submitted answer graded exactly once" in done.stdout

