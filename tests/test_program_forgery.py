"""Forgeries through the program path: what the untrusted side can do, and what it gets.

Issue 11's forgeries made a detached ``z`` pass the gradient check by faking the measurement in
the snippet's own process. Through programs, nothing is measured there: every snippet below is
captured in a plain child process and measured in this one, and the wrong answer fails.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import BUNDLED_BANK
from tests.program_helpers import capture_in_subprocess, first_of_each_trial, grade_by_replay
from vaequiz.bank.loader import load_bank
from vaequiz.grading.inputs import PreparedQuestion, prepare_question

DETACHED = "z = (mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)).detach()\n"
CORRECT = "z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)\n"

FORGERIES = {
    "patched_autograd_grad": (
        "import torch.autograd\n"
        "torch.autograd.grad = lambda outputs, inputs, **kw: tuple(torch.ones_like(i) for i in inputs)\n"
        + DETACHED
    ),
    "patched_tensor_backward": (
        "def backward(self, *a, **k):\n"
        "    for leaf in (mu, logvar):\n"
        "        leaf.grad = torch.ones_like(leaf)\n"
        "torch.Tensor.backward = backward\n"
        "torch.Tensor.requires_grad = property(lambda self: True)\n" + DETACHED
    ),
    "setprofile_hook": (
        "import sys\n"
        "def hook(frame, event, arg):\n"
        "    if event == 'return' and frame.f_code.co_name in ('_grad', 'grad', 'run_graph'):\n"
        "        frame.f_locals.get('out', {}).get('probe_errors', {}).clear()\n"
        "sys.setprofile(hook)\n"
        "import threading\n"
        "threading.setprofile(hook)\n" + DETACHED
    ),
    "patched_module_call": (
        "import torch.nn as nn\n"
        "nn.Module.__call__ = lambda self, *a, **k: torch.zeros(())\n" + DETACHED
    ),
    "no_grad_block": (
        "with torch.no_grad():\n"
        "    z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)\n"
    ),
    "custom_function_cuts_gradient": (
        "class Cut(torch.autograd.Function):\n"
        "    @staticmethod\n"
        "    def forward(ctx, x):\n"
        "        return x.clone()\n"
        "    @staticmethod\n"
        "    def backward(ctx, g):\n"
        "        return torch.ones_like(g)\n"
        "z = Cut.apply((mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)).detach())\n"
    ),
    "tracer_switched_off": (
        "from torch.utils._python_dispatch import _pop_mode_temporarily\n"
        "with _pop_mode_temporarily():\n"
        "    z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)\n"
    ),
    "data_escape": "z = (mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)).data\n",
    "forged_program_written_directly": (
        # Writes a well-formed program of its own where the capture would write, then exits:
        # z is a constant in it, so no gradient can reach mu or logvar.
        # The import rule is not a boundary: the capture's own modules are already loaded.
        "import os, sys\n"
        "GraphBuilder = sys.modules['__main__'].GraphBuilder\n"
        "fmt = sys.modules['vaequiz.grading.sandbox.program_format']\n"
        "FORMAT, encode_program = fmt.FORMAT, fmt.encode_program\n"
        "value = (mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)).detach()\n"
        "graph = GraphBuilder('main')\n"
        "graph.add_input('given', 'mu', mu.detach(), True)\n"
        "graph.add_input('given', 'logvar', logvar.detach(), True)\n"
        "graph.outputs['z'] = ['t', graph.ref(value)]\n"
        "doc = {'format': FORMAT, 'unsupported': None, 'error': None, 'missing': [],\n"
        "       'main': graph.document(), 'modules': {}}\n"
        "for i in range(8):\n"
        "    open(os.path.join(sys.argv[2], f'run-{i}.program'), 'wb').write(encode_program(doc))\n"
        "os._exit(0)\n"
    ),
}


@pytest.fixture(scope="module")
def reparameterization() -> PreparedQuestion:
    question = next(q for q in load_bank(BUNDLED_BANK).questions if q.id == "reparameterization-trick")
    return prepare_question(question)


def _grade(source: str, question: PreparedQuestion, folder: Path) -> dict[str, str]:
    """Failed checks (title -> message) of ``source`` measured from its captured programs."""
    firsts = first_of_each_trial(question)
    captured = capture_in_subprocess(source, question.question.expect, firsts, folder)
    checks = grade_by_replay(question, {run.trial: data for run, data in zip(firsts, captured)})
    return {c.name: c.message for c in checks if not c.passed}


def test_the_correct_answer_passes_through_programs(reparameterization: PreparedQuestion, tmp_path: Path) -> None:
    assert _grade(CORRECT, reparameterization, tmp_path) == {}


@pytest.mark.parametrize("name", sorted(FORGERIES))
def test_a_forgery_cannot_pass_a_detached_z(name: str, reparameterization: PreparedQuestion, tmp_path: Path) -> None:
    failed = _grade(FORGERIES[name], reparameterization, tmp_path)
    gradient = [message for title, message in failed.items() if "gradient" in message.lower()]
    assert gradient, f"the gradient check passed: {failed}"
    assert any("no gradient" in m or "could not measure" in m for m in gradient), gradient
