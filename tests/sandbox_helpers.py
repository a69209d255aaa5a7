"""Helpers shared by the sandbox tests."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from vaequiz.grading.sandbox import Sandbox

SETSID_DAEMONS = (
    "import os, time\n"
    "for _ in range(3):\n"
    "    if os.fork() == 0:\n"
    "        os.setsid()\n"
    "        if os.fork() == 0:\n"
    "            while True:\n"
    "                time.sleep(0.05)\n"
    "        os._exit(0)\n"
    "time.sleep(0.2)\n"
    "z = 1\n"
)
"""A snippet that leaves three daemons behind, each in its own session, then binds z = 1."""


def slot_processes(sandbox: Sandbox) -> list[int]:
    """Host pids of processes running as one of the sandbox's slot uids."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid in sandbox.slot_uids:
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


SNIPPET_SAYS = re.compile(r"ValueError: probe: (.*?) \(line \d+\)")


def grade_in_order(
    folder: Path,
    answers: list[str],
    question: str = "kl-divergence",
    off: tuple[str, ...] = (),
    workers: int = 1,
    bank: Path | None = None,
) -> tuple[list[dict], str]:
    """Grade ``answers`` in this order through ``vaequiz grade-sheets`` (one sheet each).

    With one worker, every answer's child is forked from the worker that served the answer
    before it. ``off`` names layers to switch off (``VAEQUIZ_SANDBOX_OFF``). Returns the
    results in order and the command's stderr (where missing layers are named).
    """
    from tests.conftest import run_vaequiz

    sheets = []
    for index, source in enumerate(answers):
        sheet = folder / "sheets" / f"{index:02d}.json"
        sheet.parent.mkdir(parents=True, exist_ok=True)
        sheet.write_text(json.dumps({"student": f"s{index:02d}", "answers": {question: source}}))
        sheets.append(sheet)
    out = folder / "out"
    done = run_vaequiz(
        "grade-sheets",
        *sheets,
        "--out",
        out,
        "--workers",
        str(workers),
        *(["--bank", bank] if bank is not None else []),
        env={"VAEQUIZ_SANDBOX_OFF": ",".join(off)},
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    by_student = {line["student"]: line for line in lines}
    return [by_student[f"s{index:02d}"] for index in range(len(answers))], done.stderr


def snippet_says(result: dict) -> dict[str, str]:
    """What a probing snippet reported by raising ``ValueError("probe: a=1 b=2")``."""
    match = SNIPPET_SAYS.search(result.get("error") or "")
    assert match, result
    return dict(pair.split("=", 1) for pair in match.group(1).split())


def report(**values: str) -> str:
    """The last line of a probing snippet: raise its findings, so the CLI's results carry them."""
    fields = " ".join(f"{name}={{{expression}}}" for name, expression in values.items())
    return f'raise ValueError(f"probe: {fields}")\n'


MEMORY_SCAN = (
    'import ctypes, sys\n'
    'def count_in_memory(*patterns):\n'
    "    # How often each (head, tail) occurs as head + tail in this process's readable memory,\n"
    '    # found through /proc/self/maps (mapped files are skipped unless writable: they hold\n'
    '    # file contents). /proc/self/mem is closed to a process that changed uid, so ctypes\n'
    "    # reads instead. One scan per process: the question's later runs reuse it.\n"
    "    if hasattr(sys, 'scan_result'):\n"
    '        return sys.scan_result\n'
    '    found = [0] * len(patterns)\n'
    '    scanned = 0\n'
    "    with open('/proc/self/maps') as maps:\n"
    '        regions = [line.split() for line in maps]\n'
    '    for fields in regions:\n'
    "        name = fields[5] if len(fields) > 5 else ''\n"
    "        if not fields[1].startswith('r') or name in ('[vvar]', '[vsyscall]', '[vvar_vclock]'):\n"
    '            continue\n'
    "        if name.startswith('/') and 'w' not in fields[1]:\n"
    '            continue\n'
    "        low, high = (int(x, 16) for x in fields[0].split('-'))\n"
    '        data = ctypes.string_at(low, high - low)\n'
    '        scanned += len(data)\n'
    '        for index, (head, tail) in enumerate(patterns):\n'
    '            at = data.find(head)\n'
    '            while at >= 0:\n'
    '                found[index] += data[at + len(head):at + len(head) + len(tail)] == tail\n'
    '                at = data.find(head, at + 1)\n'
    '        del data\n'
    '    sys.scan_result = (*found, scanned)\n'
    '    return sys.scan_result\n'
)
"""Defines ``count_in_memory((head, tail), ...) -> (*counts, bytes scanned)``; the snippet
never builds head + tail itself, so its own source is no hit."""


def run_in_terminal(*args: str | os.PathLike[str], timeout: float = 300) -> tuple[int, bytes]:
    """Run ``python -m vaequiz ARGS`` on a pseudo-terminal in raw mode, as a user at a terminal
    would see it (click strips nothing on a terminal); returns the exit status and every byte
    written to the terminal."""
    import pty
    import select
    import subprocess
    import sys
    import tty

    from tests.conftest import REPO

    master, slave = pty.openpty()
    tty.setraw(slave)  # no newline translation: the bytes are exactly what was written
    env = {**os.environ, "PYTHONPATH": str(REPO), "TERM": "xterm"}
    env.pop("NO_COLOR", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "vaequiz", *map(str, args)],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        cwd=REPO,
        env=env,
        close_fds=True,
    )
    os.close(slave)
    chunks = []
    try:
        while select.select([master], [], [], timeout)[0]:
            try:
                chunk = os.read(master, 1 << 16)
            except OSError:  # EIO: the last writer closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        return process.wait(timeout=timeout), b"".join(chunks)
    finally:
        os.close(master)
        if process.poll() is None:
            process.kill()
            process.wait()
