"""Each isolation layer against a hostile snippet, through the real CLI (``vaequiz grade`` and
``grade-sheets``), with a control that shows the probe works: the same probe succeeds with the
layer switched off (``VAEQUIZ_SANDBOX_OFF``) or against something the snippet owns itself.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

from tests.sandbox_helpers import (
    MEMORY_SCAN,
    grade_in_order,
    report,
    snippet_says,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="these layers need root")


# --------------------------------------------------------------------------- memory


def _victim_and_scanner() -> tuple[str, str]:
    token = "tok" + secrets.token_hex(12)
    own = "own" + secrets.token_hex(12)
    victim = (  # many writes, so a growing buffer is reallocated many times
        "import sys\n"
        "for i in range(15):\n"
        f"    sys.stdout.write({token!r} * 100)\n"
        "    sys.stdout.flush()\n"
        f"kl = type({token!r}, (), {{}})()  # its type name travels in the results\n"
    )
    scanner = (
        MEMORY_SCAN
        + f"marker = ({own[:12]!r} + {own[12:]!r}).encode()  # known to be in this process\n"
        + "found, mine, scanned = count_in_memory(\n"
        + f"    ({token[:12]!r}.encode(), {token[12:]!r}.encode()),\n"
        + f"    ({own[:12]!r}.encode(), {own[12:]!r}.encode()),\n"
        + ")\n"
        + report(found="found", mine="mine", scanned="scanned")
    )
    return victim, scanner


def test_one_answer_output_never_reaches_the_next_answer_memory(tmp_path: Path) -> None:
    victim, scanner = _victim_and_scanner()
    results, _ = grade_in_order(tmp_path, [victim, scanner])
    said = snippet_says(results[1])
    assert int(said["mine"]) >= 1, "the scan finds what is known to be in memory"
    assert int(said["scanned"]) > 50 * 2**20, "the scan covers the heap inherited from the worker"
    assert int(said["found"]) == 0, "the previous answer's output is in the next child's memory"


def test_control_without_private_buffers_the_output_leaks(tmp_path: Path) -> None:
    victim, scanner = _victim_and_scanner()
    results, stderr = grade_in_order(tmp_path, [victim, scanner], off=("wipe_on_fork",))
    assert "MADV_WIPEONFORK" in stderr and "unavailable (switched off)" in stderr
    assert int(snippet_says(results[1])["found"]) >= 1

