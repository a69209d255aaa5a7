"""Runs untrusted student snippets: warm torch workers, a forked child per snippet, isolation.

The grader uses :class:`Sandbox` and the request/result types of :mod:`.api`; the worker side
(:mod:`.worker`, :mod:`.runner`, :mod:`.isolation`) never runs in the grader's process.
"""

from vaequiz.grading.sandbox.api import (
    ModuleSummary,
    ModuleValue,
    OpaqueValue,
    ProbeRequest,
    RunOutcome,
    RunRequest,
    SandboxRequest,
    SandboxResult,
    SandboxUnavailable,
)
from vaequiz.grading.sandbox.pool import MAX_SOURCE_BYTES, Sandbox, source_problem

__all__ = [
    "MAX_SOURCE_BYTES",
    "ModuleSummary",
    "ModuleValue",
    "OpaqueValue",
    "ProbeRequest",
    "RunOutcome",
    "RunRequest",
    "Sandbox",
    "SandboxRequest",
    "SandboxResult",
    "SandboxUnavailable",
    "source_problem",
]
