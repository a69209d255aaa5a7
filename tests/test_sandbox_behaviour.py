"""The sandbox end to end: real workers, real forked children, real limits and isolation.

One module-scoped pool of two workers serves every test, and each hostile snippet is followed
by a check that the same pool still grades an ordinary snippet, so a test fails if a worker
was wedged or lost.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from vaequiz.bank.models import Limits
from tests.sandbox_helpers import SETSID_DAEMONS, slot_processes
from vaequiz.grading.sandbox import (
    ModuleSummary,
    ModuleValue,
    OpaqueValue,
    ProbeRequest,
    RunRequest,
    Sandbox,
    SandboxRequest,
    SandboxResult,
)
from vaequiz.paths import bundled_bank

SECRET = "grader-secret-4f9a"
FAST = Limits(time_s=2)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="these tests exercise root-only layers")


def _outside_tmp_dir() -> Path:
    """A folder outside every temp folder (those are private in the sandbox anyway)."""
    for parent in ("/srv", "/opt", "/var/lib", "/mnt"):
        if os.access(parent, os.W_OK):
            return Path(tempfile.mkdtemp(prefix="vaequiz-hidden-", dir=parent))
    pytest.skip("no writable folder outside the temp folders")


@pytest.fixture(scope="module")
def hidden_dir() -> Iterator[Path]:
    folder = _outside_tmp_dir()
    (folder / "answers.txt").write_text("the key is B\n")
    yield folder
    (folder / "answers.txt").unlink()
    folder.rmdir()


@pytest.fixture(scope="module")
def sandbox(hidden_dir: Path) -> Iterator[Sandbox]:
    os.environ["VAEQUIZ_TEST_SECRET"] = SECRET
    try:
        with Sandbox(workers=2, hide_paths=[hidden_dir]) as pool:
            yield pool
    finally:
        del os.environ["VAEQUIZ_TEST_SECRET"]


def run(
    sandbox: Sandbox,
    source: str,
    expect: tuple[str, ...] = ("z",),
    given: dict | None = None,
    limits: Limits = FAST,
    probes: tuple[ProbeRequest, ...] = (),
    seeds: tuple[int, ...] = (0,),
) -> SandboxResult:
    runs = tuple(RunRequest(seed=s, given=dict(given or {}), probes=probes) for s in seeds)
    return sandbox.run(SandboxRequest(source=source, expect=expect, runs=runs, limits=limits))


def value(result: SandboxResult, name: str = "z", run_index: int = 0) -> object:
    assert result.status == "ok", (result.status, result.reason)
    outcome = result.runs[run_index]
    assert outcome.error is None, outcome.error
    return outcome.outputs[name]


def assert_still_serving(sandbox: Sandbox) -> None:
    """Both workers still answer an ordinary snippet correctly."""
    mu = torch.arange(6.0).reshape(2, 3)
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: run(sandbox, "z = mu * 2", given={"mu": mu}), range(2)))
    for result in results:
        assert torch.equal(value(result), mu * 2)




# --------------------------------------------------------------------------- ordinary runs


def test_values_probes_and_line_numbers(sandbox: Sandbox) -> None:
    mu = torch.randn(4, 3, requires_grad=True)
    logvar = torch.randn(4, 3, requires_grad=True)
    source = "std = torch.exp(0.5 * logvar)\nz = mu + torch.randn_like(std) * std\nprint('done')"
    grad = ProbeRequest(kind="grad", target="z", wrt=("mu", "logvar"))
    result = run(sandbox, source, given={"mu": mu, "logvar": logvar}, probes=(grad,), seeds=(1, 2))
    assert result.status == "ok" and result.output == "done\ndone\n"
    first, second = result.runs
    torch.manual_seed(1)
    expected = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
    assert torch.allclose(first.outputs["z"], expected.detach())
    assert not torch.equal(first.outputs["z"], second.outputs["z"])
    assert torch.equal(first.outputs["grad__z__mu"], torch.ones(4, 3))
    assert first.outputs["grad__z__logvar"].shape == (4, 3)

    broken = run(sandbox, "x = 1\nz = sd + 1\n")
    assert broken.status == "ok"
    assert broken.runs[0].error == "NameError: name 'sd' is not defined (line 2)"
    assert broken.runs[0].missing == ("z",)
    syntax = run(sandbox, "z = (1 +\n")
    assert syntax.runs[0].error.startswith("SyntaxError") and "(line 1)" in syntax.runs[0].error
    nested = run(sandbox, "def f(a):\n    return a[5]\n\nz = f([1])\n")
    assert nested.runs[0].error == "IndexError: list index out of range (line 2)"
    bye = run(sandbox, "import sys\nsys.exit(3)\nz = 1")
    assert bye.runs[0].error == "SystemExit: the snippet called exit() (line 2)"


def test_missing_gradient_is_reported(sandbox: Sandbox) -> None:
    mu = torch.randn(3, 2, requires_grad=True)
    logvar = torch.randn(3, 2, requires_grad=True)
    grad = ProbeRequest(kind="grad", target="z", wrt=("mu", "logvar"))
    result = run(
        sandbox, "z = mu * torch.randn_like(mu)", given={"mu": mu, "logvar": logvar}, probes=(grad,)
    )
    outcome = result.runs[0]
    assert outcome.outputs["grad__z__logvar"] is None
    assert outcome.probe_errors["grad__z__logvar"] == "no gradient flows from z to logvar"
    detached = run(
        sandbox, "z = mu.detach() + 1", given={"mu": mu, "logvar": logvar}, probes=(grad,)
    )
    assert "no gradient flows from z to mu" in detached.runs[0].probe_errors["grad__z__mu"]


def test_modules_call_and_fit_probes(sandbox: Sandbox) -> None:
    codebook = torch.randn(512, 64)
    result = run(
        sandbox,
        "z_q = model.codebook(torch.randint(0, 512, (16,)))",
        expect=("z_q",),
        given={"model": ModuleValue({"codebook": codebook})},
    )
    rows = value(result, "z_q")
    assert rows.shape == (16, 64)
    assert all(any(torch.equal(r, c) for c in codebook) for r in rows)

    source = (
        "decoder = nn.Sequential(nn.Linear(latent_dim, 64), nn.ReLU(), nn.Linear(64, 784), "
        "nn.Sigmoid())"
    )
    x = torch.randn(8, 5)
    target = (torch.rand(8, 784) > 0.5).float()
    probes = (
        ProbeRequest(kind="call", target="decoder", args=(x,), as_="out"),
        ProbeRequest(
            kind="fit", target="decoder", args=(x, target), as_="fitted", steps=60, lr=1e-2
        ),
    )
    result = run(sandbox, source, expect=("decoder",), given={"latent_dim": 5}, probes=probes)
    outcome = result.runs[0]
    assert outcome.outputs["decoder"] == ModuleSummary(
        "torch.nn.modules.container.Sequential",
        5 * 64 + 64 + 64 * 784 + 784,
        5 * 64 + 64 + 64 * 784 + 784,
    )
    assert outcome.outputs["out"].shape == (8, 784)
    fitted = outcome.outputs["fitted"]
    loss = torch.nn.functional.binary_cross_entropy(fitted, target)
    assert loss < 0.3, loss

    tanh = run(
        sandbox,
        "decoder = nn.Sequential(nn.Linear(latent_dim, 784), nn.Tanh())",
        expect=("decoder",),
        given={"latent_dim": 5},
        probes=probes[1:],
    )
    assert "between 0 and 1" in tanh.runs[0].probe_errors["fitted"]


def test_untrusted_values_come_back_as_type_names(sandbox: Sandbox) -> None:
    marker = Path(tempfile.gettempdir()) / f"vaequiz-reduce-{os.getpid()}"
    source = (
        "import os\n"
        "class Sneaky(torch.Tensor):\n    pass\n"
        "class Evil:\n"
        f"    def __reduce__(self):\n        return (os.system, ('touch {marker}',))\n"
        "a = torch.zeros(3).as_subclass(Sneaky)\n"
        "b = Evil()\n"
        "c = 'text'\n"
    )
    result = run(sandbox, source, expect=("a", "b", "c"))
    outputs = result.runs[0].outputs
    assert outputs == {
        "a": OpaqueValue("Sneaky"),
        "b": OpaqueValue("Evil"),
        "c": OpaqueValue("str"),
    }
    assert not marker.exists()


def test_runs_are_reproducible_and_start_from_the_warm_state(sandbox: Sandbox) -> None:
    source = "import random\nz = torch.randn(3) + random.random()"
    first, second = (value(run(sandbox, source, seeds=(7,))) for _ in range(2))
    assert torch.equal(first, second)
    patched = run(sandbox, "torch.randn = lambda *a, **k: 0\ntorch.Tensor.add = None\nz = 1")
    assert patched.status == "ok"
    assert isinstance(value(run(sandbox, "z = torch.randn(2)")), torch.Tensor)


def test_two_workers_serve_threads_concurrently(sandbox: Sandbox) -> None:
    requests = [torch.full((2,), float(i)) for i in range(8)]
    start = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        results = list(
            pool.map(
                lambda mu: run(
                    sandbox, "import time\ntime.sleep(0.4)\nz = mu + 1", given={"mu": mu}
                ),
                requests,
            )
        )
    elapsed = time.monotonic() - start
    for mu, result in zip(requests, results, strict=True):
        assert torch.equal(value(result), mu + 1)
    assert elapsed < 8 * 0.4, f"8 sleeps of 0.4 s took {elapsed:.1f} s: not concurrent"


def test_a_dead_worker_is_replaced(sandbox: Sandbox) -> None:
    """Every worker killed while idle; two answers at once must each find a live one, even
    when the first worker a request takes is dead and so is the one it retries with."""
    for _ in range(2):
        for worker in list(sandbox._all):
            worker.process.kill()
            worker.process.wait()
        assert_still_serving(sandbox)


# --------------------------------------------------------------------------- limits


def test_wall_clock_limit(sandbox: Sandbox) -> None:
    for source in ("while True:\n    pass", "import time\ntime.sleep(60)"):
        result = run(sandbox, source, limits=Limits(time_s=1, cpu_s=5))
        assert result.status == "time_limit"
        assert result.reason == "time limit of 1 s exceeded"
        assert result.wall_s < 1.5
    assert_still_serving(sandbox)


def test_cpu_limit(sandbox: Sandbox) -> None:
    result = run(sandbox, "while True:\n    pass", limits=Limits(time_s=10, cpu_s=1))
    assert result.status == "cpu_limit", result.reason
    assert result.reason == "CPU time limit of 1 s exceeded"
    assert_still_serving(sandbox)


@pytest.mark.parametrize(
    "source",
    ["z = torch.empty(2 * 1024**3, dtype=torch.uint8).fill_(1)", "z = bytearray(2 * 1024**3)"],
)
def test_memory_limit(sandbox: Sandbox, source: str) -> None:
    result = run(sandbox, source, limits=Limits(time_s=5, memory_mb=256))
    assert result.status == "memory_limit", (result.status, result.reason, result.runs)
    assert result.reason == "memory limit of 256 MB exceeded"
    assert "(line 1)" in result.runs[0].error
    assert_still_serving(sandbox)


def test_process_limit(sandbox: Sandbox) -> None:
    source = (
        "import os, time\n"
        "z = 0\n"
        "try:\n"
        "    for _ in range(50):\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(30)\n"
        "            os._exit(0)\n"
        "        z += 1\n"
        "except OSError:\n"
        "    pass\n"
    )
    result = run(sandbox, source, limits=Limits(time_s=5, processes=4))
    assert value(result) == 4
    assert slot_processes(sandbox) == []
    assert_still_serving(sandbox)


def test_fork_bomb_is_contained(sandbox: Sandbox) -> None:
    source = (
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    )
    result = run(sandbox, source, limits=Limits(time_s=1, processes=16))
    assert result.status in ("time_limit", "cpu_limit")
    assert slot_processes(sandbox) == []
    assert_still_serving(sandbox)


def test_output_is_cut_and_floods_are_stopped(sandbox: Sandbox) -> None:
    limits = Limits(time_s=5, output_kb=4)
    cut = run(sandbox, "print('x' * 10_000)\nz = 1", limits=limits)
    assert value(cut) == 1
    assert cut.output == "x" * 4096 + "\n[output cut at 4 KB]"
    flood = run(
        sandbox, "import sys\nwhile True:\n    sys.stdout.write('y' * 65536)", limits=limits
    )
    assert flood.status == "output_limit"
    assert flood.reason.startswith("output limit of 4 KB exceeded")
    assert len(flood.output) < 4200
    assert_still_serving(sandbox)


def test_file_size_limit_and_closed_stdin(sandbox: Sandbox) -> None:
    result = run(
        sandbox,
        "open('big', 'wb').write(b'x' * 3_000_000)\nz = 1",
        limits=Limits(time_s=5, file_mb=1),
    )
    assert result.runs[0].error == "OSError: [Errno 27] File too large (line 1)"
    assert value(run(sandbox, "import sys\nz = len(sys.stdin.read())")) == 0


# --------------------------------------------------------------------------- hostile endings


@pytest.mark.parametrize(
    ("source", "status", "reason"),
    [
        ("import os\nos._exit(0)", "crashed", "before its results were sent (exit status 0)"),
        (
            "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)",
            "crashed",
            "killed by signal 9 (SIGKILL)",
        ),
        ("import ctypes\nctypes.string_at(0)", "crashed", "killed by signal 11 (SIGSEGV)"),
        ("import os\nos.close(3)\nz = 1", "crashed", "before its results were sent"),
        ("import os\nos.write(3, b'garbage')\nz = 1", "invalid_output", "could not be read"),
    ],
)
def test_hostile_endings_are_reported(
    sandbox: Sandbox, source: str, status: str, reason: str
) -> None:
    result = run(sandbox, source)
    assert result.status == status, (result.status, result.reason)
    assert reason in result.reason
    assert_still_serving(sandbox)


def test_huge_or_undecodable_source_is_rejected_before_running(sandbox: Sandbox) -> None:
    huge = run(sandbox, "z = 1\n" + "#" * 5_000_000)
    assert huge.status == "source_rejected" and "limit is 256 KB" in huge.reason
    for source in ("z = '\udcff'", b"z = '\xff'"):
        bad = sandbox.run(SandboxRequest(source=source, expect=("z",), runs=(RunRequest(0, {}),)))  # type: ignore[arg-type]
        assert bad.status == "source_rejected" and "UTF-8" in bad.reason


def test_setsid_daemons_are_gone_after_the_run(sandbox: Sandbox) -> None:
    source = SETSID_DAEMONS
    assert value(run(sandbox, source)) == 1
    assert slot_processes(sandbox) == []
    assert_still_serving(sandbox)


# --------------------------------------------------------------------------- hardening


def test_hardening_reports_every_layer_active(sandbox: Sandbox) -> None:
    report = sandbox.hardening()
    assert len(report) >= 8
    assert all(line.endswith("active") for line in report), report


def test_no_network(sandbox: Sandbox) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        source = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)\n"
        result = run(sandbox, source)
        error = result.runs[0].error  # socket() is refused by seccomp, else nothing is reachable
        assert "Operation not permitted" in error or "unreachable" in error, error
    interfaces = run(sandbox, "z = len(open('/proc/net/dev').read().splitlines()) - 2")
    assert value(interfaces) == 1  # only the loopback (the namespace's own), and it is down


def test_bank_checkout_and_hidden_paths_are_unreadable(sandbox: Sandbox, hidden_dir: Path) -> None:
    bank_file = next(bundled_bank().glob("*.yaml"))
    checkout_file = Path(__file__).resolve()
    for path in (bank_file, checkout_file, hidden_dir / "answers.txt"):
        result = run(sandbox, f"z = open({str(path)!r}).read()")
        assert result.runs[0].error.startswith("FileNotFoundError"), (path, result.runs[0])
    listing = run(  # covered (empty), or absent where the root is built from an allow list
        sandbox, f"import os\np = {str(hidden_dir)!r}\nz = len(os.listdir(p)) if os.path.exists(p) else 0"
    )
    assert value(listing) == 0


def test_writes_only_in_private_scratch_folders(sandbox: Sandbox) -> None:
    for target in (
        "/etc/vaequiz-probe",
        str(Path(__file__).parent / "probe"),
        "/root/probe",
        "/probe",
    ):
        result = run(sandbox, f"open({target!r}, 'w').write('x')\nz = 1")
        error = result.runs[0].error
        reasons = ("Read-only file system", "Permission denied", "No such file or directory")
        assert error is not None and any(r in error for r in reasons), error
        assert not Path(target).exists()
    write = (
        "import os\n"
        "open('notes', 'w').write('hi')\n"
        "open('/tmp/t', 'w').write('x')\n"
        "open('/dev/shm/s', 'w').write('x')\n"
        "print(os.getcwd())\n"
        "z = 1\n"
    )
    assert run(sandbox, write).output.strip() == "/tmp/work"
    leftovers = run(
        sandbox,
        "import os\nz = sum(len(os.listdir(d)) for d in ('.', '/tmp', '/dev/shm'))",
    )
    assert value(leftovers) == 1  # only /tmp/work itself: nothing survives from the last snippet


def test_unprivileged_uid_and_private_proc(sandbox: Sandbox) -> None:
    source = (
        "import os\n"
        "uid = os.getuid()\n"
        "pids = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())\n"
        "try:\n"
        "    os.setuid(0)\n"
        "    root = 1\n"
        "except PermissionError:\n"
        "    root = 0\n"
        "try:\n"
        "    open('/proc/1/environ').read()\n"
        "    init_env = 1\n"
        "except PermissionError:\n"
        "    init_env = 0\n"
        "z = len(pids)\n"
    )
    result = run(sandbox, source, expect=("uid", "root", "init_env", "z"))
    outputs = result.runs[0].outputs
    assert outputs["uid"] in sandbox.slot_uids
    assert outputs["root"] == 0 and outputs["init_env"] == 0
    assert outputs["z"] == 2, "only the namespace's init and the snippet itself are visible"


def test_environment_is_scrubbed(sandbox: Sandbox) -> None:
    assert os.environ.get("VAEQUIZ_TEST_SECRET") == SECRET
    source = (
        "import os\n"
        "print(sorted(os.environ))\n"
        f"hits = sum({SECRET!r} in v for v in os.environ.values())\n"
        "for pid in os.listdir('/proc'):\n"
        "    try:\n"
        f"        hits += {SECRET!r}.encode() in open(f'/proc/{{pid}}/environ', 'rb').read()\n"
        "    except (OSError, ValueError):\n"
        "        pass\n"
        "z = hits\n"
    )
    result = run(sandbox, source)
    assert value(result) == 0
    assert result.output.strip() == "['HOME', 'LANG', 'PATH', 'TMPDIR']"


def test_forked_copies_of_the_snippet_never_report(sandbox: Sandbox) -> None:
    source = (
        "import os\nme = os.getpid()\nfor _ in range(3):\n    os.fork()\nz = int(os.getpid() == me)"
    )
    result = run(sandbox, source, limits=Limits(time_s=5, processes=16), seeds=(0, 1))
    assert result.status == "ok", result.reason
    assert [r.outputs["z"] for r in result.runs] == [1, 1]  # reported by the runner alone
    assert slot_processes(sandbox) == []


def test_replacing_process_exits_does_not_keep_the_snippet_alive(sandbox: Sandbox) -> None:
    source = "import os, sys\nos._exit = lambda *a: None\nsys.exit = lambda *a: None\nz = 1"
    assert value(run(sandbox, source)) == 1
    assert slot_processes(sandbox) == []
    assert_still_serving(sandbox)


def test_modules_not_preloaded_still_import(sandbox: Sandbox) -> None:
    source = "import fractions, decimal, heapq, torch.nn.utils.parametrize as p\nz = 1"
    assert value(run(sandbox, source)) == 1


def test_system_v_ipc_objects_do_not_outlive_the_snippet(sandbox: Sandbox) -> None:
    create = "import ctypes\nz = ctypes.CDLL(None).shmget(4242, 4096, 0o1000 | 0o666)"
    assert value(run(sandbox, create)) >= 0
    count = "z = len(open('/proc/sysvipc/shm').read().splitlines()) - 1"
    assert [value(run(sandbox, count)) for _ in range(2)] == [0, 0]  # on both workers


def test_the_snippet_finds_no_grader_secret_in_its_own_memory(sandbox: Sandbox) -> None:
    head, tail = SECRET[:8], SECRET[8:]  # the snippet never builds the whole secret itself
    source = (
        "import ctypes\n"
        "found = scanned = 0\n"
        f"head, tail = {head!r}.encode(), {tail!r}.encode()\n"
        "with open('/proc/self/maps') as maps:\n"
        "    regions = [line.split() for line in maps]\n"
        "for fields in regions:\n"
        "    if fields[1].startswith('rw') and fields[-1] not in ('[vvar]', '[vsyscall]'):\n"
        "        low, high = (int(x, 16) for x in fields[0].split('-'))\n"
        "        data = ctypes.string_at(low, high - low)\n"
        "        scanned += len(data)\n"
        "        at = data.find(head)\n"
        "        while at >= 0:\n"
        "            found += data[at + len(head):at + len(head) + len(tail)] == tail\n"
        "            at = data.find(head, at + 1)\n"
        "        del data\n"
        "z = found\n"
    )
    result = run(sandbox, source, expect=("z", "scanned"), limits=Limits(time_s=20))
    assert value(result, "scanned") > 50 * 2**20  # the heap inherited from the warm worker
    assert value(result) == 0


def test_an_interrupted_call_does_not_leave_a_worker_out_of_step(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*args: object) -> None:
        raise KeyboardInterrupt

    worker = sandbox._idle.get()
    sandbox._idle.put(worker)
    for _ in range(sandbox._idle.qsize() - 1):  # make ``worker`` the next one handed out
        sandbox._idle.put(sandbox._idle.get())
    monkeypatch.setattr(worker, "_read", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(sandbox, "import time\ntime.sleep(0.3)\nz = 1")
    monkeypatch.undo()
    assert worker.in_flight
    for _ in range(3):  # every worker, the one left mid-answer included, answers correctly
        assert value(run(sandbox, "z = 7")) == 7


def test_runs_sharing_inputs_each_get_a_fresh_copy(sandbox: Sandbox) -> None:
    """Repeats of a trial share one copy of their inputs on the wire; an in-place edit in one
    run must not reach the next."""
    mu = torch.zeros(3, 2, requires_grad=True)
    counts = torch.zeros(4, dtype=torch.int64)
    source = "counts += 1\nwith torch.no_grad():\n    mu.add_(5)\nz = mu.detach() + counts.sum()"
    result = run(sandbox, source, given={"mu": mu, "counts": counts}, seeds=(0, 1, 2))
    for index in range(3):
        assert torch.equal(value(result, run_index=index), torch.full((3, 2), 9.0))
    assert torch.equal(mu, torch.zeros(3, 2)) and torch.equal(counts, torch.zeros(4, dtype=torch.int64))
