"""Helpers shared by the sandbox tests."""

from __future__ import annotations

import os

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
