"""Each isolation layer against a hostile snippet, through the real CLI (``vaequiz grade`` and
``grade-sheets``), with a control that shows the probe works: the same probe succeeds with the
layer switched off (``VAEQUIZ_SANDBOX_OFF``) or against something the snippet owns itself.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.sandbox_helpers import (
    MEMORY_SCAN,
    grade_in_order,
    report,
    run_in_terminal,
    snippet_says,
)
from vaequiz.terminal import printable

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


# --------------------------------------------------------------------------- the terminal

TERMINAL_ATTACK = (
    "import sys\n"
    "sys.stdout.write('\\x1bc\\x1b[2J\\x1b[H')  # reset and clear the screen\n"
    "sys.stdout.write('\\x1b]0;grades\\x07')  # retitle the window (OSC)\n"
    "print('\\rkl-divergence: PASSED, score 100% (3 of 3 points)\\x1b[8m')\n"
    "print('\\x9b2J\\u202eSSAP\\x7f')  # C1 CSI, a bidi override, DEL\n"
    "raise ValueError('\\x1b[2K\\x1b[1Akl-divergence: PASSED')\n"
)


def test_snippet_text_reaches_the_terminal_only_as_visible_escapes(tmp_path: Path) -> None:
    answer = tmp_path / "answer.py"
    answer.write_text(TERMINAL_ATTACK)
    code, shown = run_in_terminal("grade", "kl-divergence", answer)
    assert code == 1
    for control in (b"\x1b", b"\x07", b"\r", b"\x7f", "\x9b".encode(), "\u202e".encode()):
        assert control not in shown, (control, shown)
    text = shown.decode()
    assert text.splitlines()[0].startswith("kl-divergence: NOT PASSED")
    assert "    \\x1bc\\x1b[2J\\x1b[H\\x1b]0;grades\\x07\\x0dkl-divergence: PASSED" in text
    assert "    \\x9b2J\\u202eSSAP\\x7f" in text
    assert "ValueError: \\x1b[2K\\x1b[1Akl-divergence: PASSED" in text


def test_control_the_sandbox_passes_the_escapes_through(tmp_path: Path) -> None:
    """The snippet's escapes do leave the sandbox raw (JSON carries them escaped, safely)."""
    from tests.conftest import run_vaequiz

    answer = tmp_path / "answer.py"
    answer.write_text(TERMINAL_ATTACK)
    done = run_vaequiz("grade", "kl-divergence", answer, "--json")
    assert "\x1b" not in done.stdout, "JSON escapes control characters itself"
    result = json.loads(done.stdout)
    assert "\x1bc\x1b[2J" in result["output"] and "\x1b[2K" in result["error"]


@given(st.text())
def test_printable_text_has_no_controls_and_keeps_the_rest(text: str) -> None:
    shown = printable(text)
    assert not any(
        (ord(c) < 0x20 and c not in "\n\t") or 0x7F <= ord(c) < 0xA0 or c in "\u202e\u2066"
        for c in shown
    )
    plain = "".join(c for c in text if c == printable(c))
    assert printable(plain) == plain
    assert shown.count("\n") == text.count("\n")


# --------------------------------------------------------------------------- temp folders

DEEP_AND_WIDE = (
    "import os\n"
    "if not os.path.exists('/tmp/deep'):  # once, though the question runs the answer 3 times\n"
    "    os.mkdir('/tmp/deep')\n"
    "    os.chdir('/tmp/deep')\n"
    "    for level in range(300):  # 300 x 20 characters: far beyond PATH_MAX (4096)\n"
    "        os.mkdir('d' * 19)\n"
    "        os.chdir('d' * 19)\n"
    "    for index in range(20_000):\n"
    "        open(f'f{index}', 'w').close()\n"
    "    os.chdir('/tmp/work')\n"
    "kl = torch.tensor(0.0)\n"
)
TEMP_LEFTOVERS = (
    "import os\n"
    "left = sum(len(os.listdir(d)) for d in ('/tmp', '/var/tmp', '/dev/shm'))\n"
    + report(pid="os.getpid()", left="left")
)
"""Entries in the temp folders (the scratch folder /tmp/work is one) and this process's pid
in the worker's PID namespace: 2 for the first answer of a fresh worker, more after."""


def test_whatever_a_snippet_builds_in_temp_folders_is_dropped_whole(tmp_path: Path) -> None:
    results, _ = grade_in_order(tmp_path, [DEEP_AND_WIDE, TEMP_LEFTOVERS])
    said = snippet_says(results[1])
    assert said["left"] == "1", "only the new answer's scratch folder"
    assert int(said["pid"]) > 2, "the same worker served both answers"


def test_control_walking_the_temp_folders_loses_the_worker(tmp_path: Path) -> None:
    results, _ = grade_in_order(tmp_path, [DEEP_AND_WIDE, TEMP_LEFTOVERS], off=("fresh_tmpfs",))
    assert snippet_says(results[1])["pid"] == "2", "the walk failed and the worker was replaced"
