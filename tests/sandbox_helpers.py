"""Helpers shared by the sandbox tests."""

from __future__ import annotations

import os

from vaequiz.grading.sandbox import Sandbox


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
