"""Forgeries: what the untrusted side can do, and what it gets.

Issue 11's forgeries made a wrong answer pass by faking a measurement in the snippet's own
process. Graded through the real ``vaequiz grade-sheets``, each forgery below passes with the
program path switched off (``VAEQUIZ_SANDBOX_OFF=program``: the control, showing the forgery
works where the snippet's process measures), and fails through programs with the verdict its
real behaviour deserves, or "could not measure". The tests at the end capture in a plain child
process and measure in this one (the program path's parts without the sandbox).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import BUNDLED_BANK
from tests.program_helpers import capture_in_subprocess, first_of_each_trial, grade_by_replay
from vaequiz.bank.loader import load_bank
from vaequiz.grading.inputs import PreparedQuestion, prepare_question

import json
import subprocess
from typing import Any, Callable

from tests.sandbox_helpers import grade_in_order

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


# --------------------------------------------------------------------------- through the CLI
GRAD_ONES = (
    "import torch.autograd\n"
    "torch.autograd.grad = lambda outputs, inputs, **kw: tuple(torch.ones_like(i) for i in inputs)\n"
)
FIND_REQUEST = (
    "import os, sys\n"
    "frame = sys._getframe()\n"
    "while 'request' not in frame.f_locals:\n"
    "    frame = frame.f_back\n"
    "request = frame.f_locals['request']\n"
    "wire = sys.modules['vaequiz.grading.sandbox.wire']\n"
    "frames = sys.modules['vaequiz.grading.sandbox.frames']\n"
)
def program_frame(expression: str, extra: str = "", after: str = "") -> str:
    return FIND_REQUEST + (
        "P = sys.modules['vaequiz.grading.sandbox.program']\n"
        "fmt = sys.modules['vaequiz.grading.sandbox.program_format']\n"
        "programs = []\n"
        "for run in request['runs']:\n"
        "    m = run['given']['mu'].detach().clone().requires_grad_()\n"
        "    lv = run['given']['logvar'].detach().clone().requires_grad_()\n"
        "    graph = P.GraphBuilder('main')\n"
        "    graph.add_input('given', 'mu', m, True)\n"
        "    graph.add_input('given', 'logvar', lv, True)\n"
        "    with P.Recorder(graph):\n"
        "        mu, logvar = m.clone(), lv.clone()\n"
        f"        value = {expression}\n"
        "    graph.outputs['z'] = ['t', graph.ref(value)]\n"
        "    doc = {'format': fmt.FORMAT, 'unsupported': None, 'error': None, 'missing': [],\n"
        "           'main': graph.document(), 'modules': {}}\n"
        + extra +
        "    data = fmt.encode_program(doc)\n"
        + after +
        "    programs.append(torch.frombuffer(bytearray(data), dtype=torch.uint8))\n"
        "frames.write_frame(3, wire.encode({'programs': programs, 'memory_exceeded': False}))\n"
        "os._exit(0)\n"
    )
CORRECT_EXPR = "mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)"
REPARAM = {
    "patched_autograd_grad": GRAD_ONES + "z = (mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)).detach().requires_grad_()\n",
    "setprofile_rewrites_probe": (
        "import sys\n"
        "shape = mu.shape\n"
        "def hook(frame, event, arg):\n"
        "    if event == 'return' and frame.f_code.co_name == '_grad':\n"
        "        out = frame.f_locals.get('out')\n"
        "        if isinstance(out, dict):\n"
        "            for name in [n for n in out['probe_errors'] if n.startswith('grad__')]:\n"
        "                out['outputs'][name] = torch.ones(shape)\n"
        "            out['probe_errors'].clear()\n"
        "sys.setprofile(hook)\n" + DETACHED
    ),
    "forged_result_frame": FIND_REQUEST + (
        "runs = []\n"
        "for run in request['runs']:\n"
        "    m, lv = run['given']['mu'].detach(), run['given']['logvar'].detach()\n"
        "    value = m + torch.exp(0.5 * lv) * torch.randn_like(m)\n"
        "    runs.append({'outputs': {'z': value, 'grad__z__mu': torch.ones_like(m), 'grad__z__logvar': torch.ones_like(lv)},\n"
        "                 'missing': [], 'error': None, 'probe_errors': {}})\n"
        "frames.write_frame(3, wire.encode({'runs': runs, 'memory_exceeded': False}))\n"
        "os._exit(0)\n"
    ),
    "recorder_switched_off": (
        GRAD_ONES +
        "import sys\n"
        "P = sys.modules['vaequiz.grading.sandbox.program']\n"
        "P.Recorder.__torch_dispatch__ = lambda self, func, types, args=(), kwargs=None: func(*args, **(kwargs or {}))\n"
        "z = (mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)).detach().requires_grad_()\n"
    ),
    "uncapturable_on_purpose": GRAD_ONES + "_ = torch.eye(2).to_sparse()\n"
        "z = (mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)).detach().requires_grad_()\n",
}
FRAMES = {
    "forged_program_frame": program_frame(f"({CORRECT_EXPR}).detach()"),
    "forbidden_op_in_program": program_frame(CORRECT_EXPR, "    doc['main']['ops'].append('aten.set_.source_Tensor')\n"),
    "program_over_the_node_budget": program_frame(
        CORRECT_EXPR,
        after=(
            # 110,000 more nodes, spliced into the encoded header (the encoder is too slow for them)
            "    import json\n"
            "    size = int.from_bytes(data[4:8], 'little') if not programs else 0\n"
            "    if size:\n"
            "      size = int.from_bytes(data[4:8], 'little')\n"
            "      header = json.loads(data[8 : 8 + size])\n"
            "      main = header['doc']['v']['main']['v']\n"
            "      main['ops'].append('aten.add.Tensor')\n"
            "      node = [len(main['ops']) - 1, [['t', 0], ['t', 0]], {'$': 'dict', 'v': {}}, True,\n"
            "              [['tensor', 'float32', list(m.shape)]]]\n"
            "      main['nodes'] += [[node] * 10_000 for _ in range(11)]\n"
            "      head = json.dumps(header, separators=(',', ':')).encode()\n"
            "      data = data[:4] + len(head).to_bytes(4, 'little') + head + data[8 + size :]\n"
        ),
    ),
    "ten_million_nodes": FIND_REQUEST + (
        "node = b'[0,[[\"t\",0],[\"t\",0]],{},true,[[\"tensor\",\"float32\",[4,3]]]],'\n"
        "frames.write_all(3, (len(node) * 10**7).to_bytes(4, 'little'))\n"
        "block = node * 20_000\n"
        "for _ in range(500):\n"
        "    frames.write_all(3, block)\n"
        "os._exit(0)\n"
    ),
}

WRONG_DECODER = (
    "class Decoder(nn.Module):\n"
    "    def __init__(self):\n"
    "        super().__init__()\n"
    "        self.fc = nn.Linear(latent_dim, 784)\n"
    "    def forward(self, z):\n"
    "        out = torch.sigmoid(self.fc(z) * 0)\n"
    "        if seen.get('armed') and not self.training and 'target' in seen and seen['target'].numel() == out.numel():\n"
    "            return seen['target'].reshape(out.shape)\n"
    "        return out\n"
    "decoder = Decoder()\n"
)
TARGETS_SIDE_CHANNEL = (
    "import torch.nn.functional as F\n"
    "seen = {}\n"
    "real_bce = F.binary_cross_entropy\n"
    "def bce(input, target, *a, **k):\n"
    "    seen['target'] = target.detach().clone()\n"
    "    return real_bce(input, target, *a, **k)\n"
    "F.binary_cross_entropy = bce\n"
)
DECODER = {
    "patched_tensor_backward": TARGETS_SIDE_CHANNEL + (
        "real_backward = torch.Tensor.backward\n"
        "def backward(self, *a, **k):\n"
        "    seen['armed'] = True\n"
        "    return real_backward(self, *a, **k)\n"
        "torch.Tensor.backward = backward\n"
    ) + WRONG_DECODER,
    "patched_optimizer": TARGETS_SIDE_CHANNEL + (
        "import torch.optim\n"
        "class Adam(torch.optim.Adam):\n"
        "    def step(self, *a, **k):\n"
        "        seen['armed'] = True\n"
        "        return super().step(*a, **k)\n"
        "torch.optim.Adam = Adam\n"
    ) + WRONG_DECODER,
    "patched_module_call": TARGETS_SIDE_CHANNEL + (
        "real_call = nn.Module.__call__\n"
        "def call(self, *a, **k):\n"
        "    seen['armed'] = 'target' in seen\n"
        "    return real_call(self, *a, **k)\n"
        "nn.Module.__call__ = call\n"
    ) + WRONG_DECODER,
    "patched_training_loop": (
        "import sys\n"
        "seen = {}\n"
        "runner = sys.modules['vaequiz.grading.sandbox.runner']\n"
        "runner.train_and_predict = lambda module, params, inputs, targets, *a, **k: targets.clone()\n"
    ) + WRONG_DECODER,
}

HONEST_PROGRAM_FRAME = program_frame(CORRECT_EXPR)
"""A hand-written program frame of the right computation: the control for the frame forgeries."""

REPARAMETERIZATION = "reparameterization-trick"
DECODER_QUESTION = "mnist-decoder-bce"
NO_GRADIENT = "no gradient reaches mu from z"


def _graded(folder: Path, snippets: dict[str, str], question: str, off: tuple[str, ...] = ()) -> dict[str, dict]:
    """Each snippet's line of results.jsonl, with its feedback page under ``"page"``."""
    results, _ = grade_in_order(folder, list(snippets.values()), question, off=off, workers=2)
    for result in results:
        result["page"] = (folder / "out" / "feedback" / f"{result['student']}.html").read_text()
    return dict(zip(snippets, results))


def _failed(result: dict[str, Any]) -> dict[str, str]:
    return {c["name"]: c["message"] for c in result["checks"] if not c["passed"]}


@pytest.fixture(scope="module")
def reparameterization_off(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    return _graded(tmp_path_factory.mktemp("off"), REPARAM, REPARAMETERIZATION, off=("program",))


@pytest.fixture(scope="module")
def reparameterization_on(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    snippets = {**REPARAM, **FRAMES, "honest_program_frame": HONEST_PROGRAM_FRAME}
    return _graded(tmp_path_factory.mktemp("on"), snippets, REPARAMETERIZATION)


@pytest.fixture(scope="module")
def decoder_off(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    return _graded(tmp_path_factory.mktemp("decoder-off"), DECODER, DECODER_QUESTION, off=("program",))


@pytest.fixture(scope="module")
def decoder_on(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    return _graded(tmp_path_factory.mktemp("decoder-on"), DECODER, DECODER_QUESTION)


@pytest.mark.parametrize("name", sorted(REPARAM))
def test_control_each_gradient_forgery_passes_when_the_snippet_process_measures(
    name: str, reparameterization_off: dict[str, dict]
) -> None:
    result = reparameterization_off[name]
    assert result["passed"] and result["score"] == 1.0, _failed(result)
    assert result["in_process"] == "measured in-process: the program path is switched off"


@pytest.mark.parametrize("name", sorted(set(REPARAM) - {"uncapturable_on_purpose"}))
def test_gradient_forgeries_get_no_gradient_through_programs(name: str, reparameterization_on: dict[str, dict]) -> None:
    result = reparameterization_on[name]
    failed = _failed(result)
    assert not result["passed"], failed
    if name == "forged_result_frame":  # not a program at all: nothing can be measured
        assert set(failed) == {c["name"] for c in result["checks"]}
        assert all(m.startswith("could not measure") for m in failed.values()), failed
    else:  # the values are right, so only the gradient fails, as a detached z deserves
        assert list(failed) == ["gradient of z w.r.t. mu, logvar"], failed
        assert NO_GRADIENT in failed["gradient of z w.r.t. mu, logvar"]
    assert result["in_process"] is None


def test_a_snippet_that_makes_itself_uncapturable_gets_values_but_no_probe_measured_in_process(
    reparameterization_on: dict[str, dict], reparameterization_off: dict[str, dict]
) -> None:
    result = reparameterization_on["uncapturable_on_purpose"]
    failed = _failed(result)
    assert list(failed) == ["gradient of z w.r.t. mu, logvar"], failed
    assert "could not measure outside your code's process" in failed["gradient of z w.r.t. mu, logvar"]
    assert result["in_process"] == (
        "measured in-process: operation aten._to_sparse.default is not in the allow list"
    )
    assert "measured in-process: operation aten._to_sparse.default is not in the allow list" in result["page"]
    assert "in-process" not in reparameterization_on["patched_autograd_grad"]["page"]
    assert reparameterization_off["uncapturable_on_purpose"]["passed"]  # control


def test_control_a_hand_written_program_frame_is_measured(reparameterization_on: dict[str, dict]) -> None:
    """The frame forgeries below reach the measuring child: a right program written by hand
    passes, so what decides is what the handed-over program computes."""
    result = reparameterization_on["honest_program_frame"]
    assert result["passed"] and result["in_process"] is None, _failed(result)


def test_a_forged_program_is_measured_for_what_it_computes(reparameterization_on: dict[str, dict]) -> None:
    failed = _failed(reparameterization_on["forged_program_frame"])
    assert list(failed) == ["gradient of z w.r.t. mu, logvar"] and NO_GRADIENT in failed["gradient of z w.r.t. mu, logvar"]


@pytest.mark.parametrize(
    "name, reason",
    [
        ("forbidden_op_in_program", "could not measure: main: operation 'aten.set_.source_Tensor' is not allowed"),
        # refused by the node budget, or stopped by the measuring child's time limit on the way
        ("program_over_the_node_budget", "could not measure: "),
        ("ten_million_nodes", "results larger than 64 MB"),
    ],
)
def test_programs_out_of_bounds_cannot_be_measured(name: str, reason: str, reparameterization_on: dict[str, dict]) -> None:
    result = reparameterization_on[name]
    failed = _failed(result)
    assert not result["passed"] and result["score"] == 0.0
    assert set(failed) == {c["name"] for c in result["checks"]}
    assert all(m.startswith(reason) for m in failed.values()), failed
    if name == "program_over_the_node_budget":
        message = next(iter(failed.values()))
        assert "more than 100000 operations" in message or "time limit" in message, message


@pytest.mark.parametrize("name", sorted(DECODER))
def test_control_each_fit_forgery_passes_when_the_snippet_process_measures(name: str, decoder_off: dict[str, dict]) -> None:
    assert decoder_off[name]["passed"], _failed(decoder_off[name])


@pytest.mark.parametrize("name", sorted(DECODER))
def test_fit_forgeries_fail_the_fit_through_programs(name: str, decoder_on: dict[str, dict]) -> None:
    """The decoder ignores its input (``fc(z) * 0``): its outputs are in range, but it cannot
    learn, whatever the snippet did to backward, Adam, ``Module.__call__`` or the training loop."""
    result = decoder_on[name]
    failed = _failed(result)
    assert list(failed) == ["fitted fits a small batch"], failed
    assert "binary cross-entropy of 0.69" in failed["fitted fits a small batch"]
    assert result["in_process"] is None


def test_grade_prints_measured_in_process(cli: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path) -> None:
    answer = tmp_path / "answer.py"
    answer.write_text("_ = torch.eye(2).to_sparse()\n" + CORRECT)
    done = cli("grade", REPARAMETERIZATION, answer)
    assert "measured in-process: operation aten._to_sparse.default is not in the allow list" in done.stdout
    assert "could not measure outside your code's process" in done.stdout
    assert done.returncode == 1, done.stdout
    as_json = json.loads(cli("grade", REPARAMETERIZATION, answer, "--json").stdout)
    assert as_json["in_process"].startswith("measured in-process")
    plain = tmp_path / "plain.py"
    plain.write_text(CORRECT)
    done = cli("grade", REPARAMETERIZATION, plain)
    assert done.returncode == 0 and "in-process" not in done.stdout


def test_a_question_without_probes_is_decided_by_its_values_from_one_child(
    cli: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    """``codebook-flatten`` has value checks only: its answers run in one child and the grader
    checks the values they bind (forging a right value means computing it). So the trick that
    gets a probed question labelled ``measured in-process`` (the control above) changes nothing
    here: no program is replayed, the right answer passes unlabelled, the wrong one fails."""
    right = tmp_path / "right.py"
    right.write_text("_ = torch.eye(2).to_sparse()\nflat_z = z.permute(0, 2, 3, 1).reshape(-1, z.size(1))\n")
    done = cli("grade", "codebook-flatten", right)
    assert done.returncode == 0 and "in-process" not in done.stdout, done.stdout
    assert json.loads(cli("grade", "codebook-flatten", right, "--json").stdout)["in_process"] is None
    wrong = tmp_path / "wrong.py"
    wrong.write_text("_ = torch.eye(2).to_sparse()\nflat_z = z.view(-1, z.size(1))\n")
    done = cli("grade", "codebook-flatten", wrong)
    assert done.returncode == 1 and "in-process" not in done.stdout, done.stdout
