"""Fixtures shared by the whole suite: the real CLI as a subprocess, and bank files on disk."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Callable

import pytest
from hypothesis import settings as hypothesis_settings

REPO = Path(__file__).resolve().parent.parent

hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
hypothesis_settings.load_profile(os.environ.get("VAEQUIZ_HYPOTHESIS_PROFILE", "default"))
"""``.ci/run`` loads "ci": the same examples on every run, so a red run is the change's doing;
elsewhere each run draws new ones (and a failure prints the blob that reproduces it)."""
BUNDLED_BANK = REPO / "question_bank"


def run_vaequiz(
    *args: str | os.PathLike[str],
    cwd: Path | None = None,
    timeout: float = 300,
    input: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m vaequiz ARGS`` as a user would, capturing text output.

    The timeout is a hang guard, not a speed assertion.
    """
    full_env = {**os.environ, "PYTHONPATH": str(REPO), "NO_COLOR": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "vaequiz", *map(str, args)],
        cwd=cwd or REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
        env=full_env,
    )


@pytest.fixture
def cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    return run_vaequiz


@pytest.fixture
def write_yaml(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write dedented YAML text to ``tmp_path/bank/NAME`` and return the bank folder."""

    def write(name: str, text: str) -> Path:
        bank = tmp_path / "bank"
        path = bank / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return bank

    return write
