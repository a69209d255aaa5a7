"""Without namespaces the sandbox still confines snippets, and says which layers are missing."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import torch

from vaequiz.bank.models import Limits
from tests.sandbox_helpers import SETSID_DAEMONS, slot_processes
from vaequiz.grading.sandbox import RunRequest, Sandbox, SandboxRequest, SandboxResult

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the uid sweep needs root")


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(workers=1, namespaces=False) as pool:
        yield pool


FAST = Limits(time_s=2)


def run(sandbox: Sandbox, source: str, limits: Limits = FAST) -> SandboxResult:
    given = {"mu": torch.ones(2, 3)}
    request = SandboxRequest(
        source=source, expect=("z",), runs=(RunRequest(0, given),), limits=limits
    )
    return sandbox.run(request)




def test_hardening_names_the_missing_layers(sandbox: Sandbox) -> None:
    report = "\n".join(sandbox.hardening())
    assert (
        "own PID namespace, emptied after every snippet" in report
        and "unavailable (namespaces switched off)" in report
    )
    assert "no network (own network namespace, loopback down): unavailable" in report
    assert "so the process limit applies: active" in report


def test_snippets_still_run_under_limits(sandbox: Sandbox) -> None:
    result = run(sandbox, "import math\nz = mu * math.pi")
    assert result.status == "ok" and torch.allclose(
        result.runs[0].outputs["z"], torch.full((2, 3), torch.pi)
    )
    slow = run(sandbox, "while True:\n    pass", Limits(time_s=1, cpu_s=5))
    assert slow.status == "time_limit" and slow.reason == "time limit of 1 s exceeded"
    ended = run(sandbox, "import os\nos._exit(0)")
    assert ended.status == "crashed"


def test_setsid_daemons_are_swept_by_uid(sandbox: Sandbox) -> None:
    source = SETSID_DAEMONS
    result = run(sandbox, source)
    assert result.status == "ok" and result.runs[0].outputs["z"] == 1
    assert slot_processes(sandbox) == []
    assert run(sandbox, "z = mu + 1").status == "ok"


def test_scratch_folder_is_private_and_removed(sandbox: Sandbox) -> None:
    source = (
        "import os\nopen('notes', 'w').write('x')\nprint(os.getcwd())\nz = len(os.listdir('.'))"
    )
    result = run(sandbox, source)
    assert result.runs[0].outputs["z"] == 1
    scratch = result.output.strip()
    assert scratch.startswith("/tmp/vaequiz-scratch-")
    following = run(sandbox, source)  # the worker wipes a submission's files before the next
    assert following.runs[0].outputs["z"] == 1 and following.output.strip() != scratch
    assert not os.path.exists(scratch)
