"""Each isolation layer against a hostile snippet, through the real CLI (``vaequiz grade`` and
``grade-sheets``), with a control that shows the probe works: the same probe succeeds with the
layer switched off (``VAEQUIZ_SANDBOX_OFF``) or against something the snippet owns itself.
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
import shutil
import socket
import tempfile
from collections.abc import Iterator
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
from vaequiz.grading.sandbox.seccomp import DENIED, SYSCALLS
from vaequiz.terminal import printable

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="these layers need root"),
    pytest.mark.slow,  # each test starts the CLI and a sandbox
]


# --------------------------------------------------------------------------- memory


def _victim_and_scanner() -> tuple[str, str]:
    """(victim, scanner): the victim prints a random token in many small writes and returns it
    as a type name; the scanner, the next answer in the same worker, counts it in its memory.
    The scanner's controls: a token it holds itself, and one it builds in its heap and then
    forks, which its child must find in the memory it inherited."""
    token, own, inherited = ("tok" + secrets.token_hex(12) for _ in range(3))
    victim = (
        "import sys\n"
        "for i in range(100):\n"
        f"    sys.stdout.write({token!r} * 10)\n"
        "    sys.stdout.flush()\n"
        f"kl = type({token!r}, (), {{}})()  # its type name travels in the results\n"
    )
    scanner = (
        MEMORY_SCAN
        + "import os\n"
        + "if not hasattr(sys, 'said'):  # once per process: the question runs 3 times\n"
        + f"    marker = ({own[:12]!r} + {own[12:]!r}).encode()  # known to be in this process\n"
        + "    found, mine, scanned = count_in_memory(\n"
        + f"        ({token[:12]!r}.encode(), {token[12:]!r}.encode()),\n"
        + f"        ({own[:12]!r}.encode(), {own[12:]!r}.encode()),\n"
        + "    )\n"
        + f"    heap = bytearray(({inherited[:12]!r} + {inherited[12:]!r}).encode())\n"
        + "    read_end, write_end = os.pipe()\n"
        + "    if os.fork() == 0:\n"
        + "        del sys.scan_result\n"
        + f"        child = count_in_memory(({inherited[:12]!r}.encode(), {inherited[12:]!r}.encode()))\n"
        + "        os.write(write_end, str(child[0]).encode())\n"
        + "        os._exit(0)\n"
        + "    os.close(write_end)\n"
        + "    sys.said = found, mine, scanned, int(os.read(read_end, 32))\n"
        + "found, mine, scanned, inherited = sys.said\n"
        + report(found="found", mine="mine", scanned="scanned", inherited="inherited")
    )
    return victim, scanner


def test_one_answer_output_never_reaches_the_next_answer_memory(tmp_path: Path) -> None:
    victim, scanner = _victim_and_scanner()
    results, _ = grade_in_order(tmp_path, [victim, scanner])
    said = snippet_says(results[1])
    assert int(said["mine"]) >= 1, "the scan finds what is known to be in memory"
    assert int(said["inherited"]) >= 1, "the scan finds what a forked child inherited"
    assert int(said["scanned"]) > 50 * 2**20, "the scan covers the heap inherited from the worker"
    assert int(said["found"]) == 0, "the previous answer's output is in the next child's memory"


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


def test_control_walking_such_a_tree_fails(tmp_path: Path) -> None:
    """The tree the snippet above builds defeats the walk the fresh tmpfs replaces."""
    from vaequiz.grading.sandbox import isolation

    top = tmp_path / "temp"
    (top / "deep").mkdir(parents=True)
    here = os.getcwd()
    try:
        os.chdir(top / "deep")
        for _ in range(300):  # as DEEP_AND_WIDE: 300 x 20 characters, beyond PATH_MAX
            os.mkdir("d" * 19)
            os.chdir("d" * 19)
    finally:
        os.chdir(here)
    with pytest.raises(OSError) as walked:
        isolation.wipe(top)
    assert walked.value.errno == errno.ENAMETOOLONG
    shutil.rmtree(top, ignore_errors=True)


# --------------------------------------------------------------------------- kernel state

SYSCALL_PROBES = {  # name: arguments, harmless whether the call is refused or not
    "keyctl": "0, ctypes.c_long(-3), 0",  # KEYCTL_GET_KEYRING_ID of the session keyring
    "request_key": "b'user', b'vq-none', None, 0",
    "ptrace": "2, 1, None, None",  # PTRACE_PEEKDATA of the namespace's init
    "process_vm_readv": "1, None, 0, None, 0, 0",
    "mount": "None, b'/tmp', b'tmpfs', 0, None",
    "setns": "ctypes.c_int(-1), 0",
    "open_tree": "ctypes.c_int(-100), b'/', 0",
    "io_uring_setup": "1, ctypes.create_string_buffer(120)",
    "perf_event_open": "None, 0, -1, -1, 0",
    "bpf": "0, None, 0",
    "userfaultfd": "0",
    "kexec_load": "0, 0, None, 0",
    "init_module": "None, 0, b''",
    "clone3": "None, 0",
    "unshare": "0x10000000",  # CLONE_NEWUSER, last: it changes what this process may do
}
"""Calls the filter refuses, each made once by the snippet through ``syscall(2)``."""


def _kernel_state_snippets(socket_path: Path) -> tuple[str, str]:
    """(planter, finder): the planter leaves a key in its uid's keyring, a POSIX message
    queue and a System V segment, connects to a host unix socket and tries every probe; the
    finder, the next answer in the same worker, looks for what was left."""
    numbers = SYSCALLS[os.uname().machine]
    probes = "".join(
        f"    said[{name!r}] = call({numbers[name]}, {args})\n"
        for name, args in SYSCALL_PROBES.items()
    )
    # ptrace(0) is PTRACE_TRACEME, which would let the worker see the snippet's stops
    sweep = [numbers[name] for name in DENIED if name not in ("ptrace", *SYSCALL_PROBES)]
    common = (
        "import ctypes, errno, os, socket, sys\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "libc.syscall.restype = ctypes.c_long\n"
        "def result(value):\n"
        "    return 'ok' if value >= 0 else errno.errorcode[ctypes.get_errno()]\n"
        "def call(number, *args):\n"
        "    return result(libc.syscall(number, *args))\n"
        "def attempt(action):\n"
        "    try:\n"
        "        action()\n"
        "        return 'ok'\n"
        "    except OSError as err:\n"
        "        return errno.errorcode[err.errno]\n"
        "said = getattr(sys, 'said', {})  # once per process: the question runs 3 times\n"
        "sys.said = said\n"
    )
    planter = (
        common
        + "if not said:\n"
        + "    said['uid'] = os.getuid()\n"
        + f"    said['add_key'] = call({numbers['add_key']}, b'user', b'vq-plant', b'x', 1,"
        + " ctypes.c_long(-4))\n"
        + "    said['mq'] = result(libc.mq_open(b'/vq-plant', os.O_CREAT | os.O_RDWR, 0o600, None))\n"
        + "    said['shm'] = result(libc.shmget(0x5151, 4096, 0o1000 | 0o666))\n"
        + f"    said['unix'] = attempt(lambda: socket.socket(socket.AF_UNIX).connect({str(socket_path)!r}))\n"
        + "    said['inet'] = attempt(lambda: socket.socket(socket.AF_INET).close())\n"
        + "    said['pair'] = attempt(lambda: [s.close() for s in socket.socketpair()])\n"
        + probes
        + "    refused = 0\n"
        + f"    for number in {sweep!r}:  # every other refused call, with all-zero arguments\n"
        + "        refused += call(number, 0, 0, 0, 0, 0, 0) == 'EPERM'\n"
        + "    said['sweep'] = f'{refused}/" + str(len(sweep)) + "'\n"
        + "calls = ','.join(said[name] for name in "
        + f"{tuple(SYSCALL_PROBES)!r})  # errors are cut at 300 characters\n"
        + report(calls="calls", **{name: f"said[{name!r}]" for name in ("uid", "add_key", "mq",
                                                                       "shm", "unix", "inet", "pair",
                                                                       "sweep")})
    )
    finder = (
        common
        + "if not said:\n"
        + f"    said['key'] = call({numbers['keyctl']}, 10, ctypes.c_long(-4), b'user', b'vq-plant', 0)\n"
        + f"    call({numbers['keyctl']}, 7, ctypes.c_long(-4))  # KEYCTL_CLEAR: tidy up a control run\n"
        + "    said['mq'] = result(libc.mq_open(b'/vq-plant', os.O_RDONLY, 0, None))\n"
        + "    said['shm'] = len(open('/proc/sysvipc/shm').read().splitlines()) - 1\n"
        + "    said['uid'] = os.getuid()\n"
        + report(key="said['key']", mq="said['mq']", shm="said['shm']", uid="said['uid']")
    )
    return planter, finder


def _key_users() -> set[int]:
    with open("/proc/key-users") as users:
        return {int(line.split(":")[0]) for line in users}


def _outside_folder(prefix: str) -> Path:
    """A new world-readable folder outside the temp folders the sandbox gives its own copies of
    (so what is put there is the host's, not the sandbox's)."""
    for parent in ("/srv", "/var/lib", "/opt", "/mnt"):
        if os.access(parent, os.W_OK):
            folder = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
            break
    else:
        pytest.skip("no writable folder outside the temp folders")
    folder.chmod(0o755)
    return folder


@pytest.fixture
def host_socket() -> Iterator[Path]:
    """A listening unix socket anyone may connect to, outside the sandbox's private folders."""
    folder = _outside_folder("vaequiz-socket-")
    path = folder / "service.sock"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        path.chmod(0o777)
        server.listen(16)
        yield path
    path.unlink()
    folder.rmdir()


def test_no_kernel_state_crosses_answers_and_denied_calls_fail(
    tmp_path: Path, host_socket: Path
) -> None:
    planter, finder = _kernel_state_snippets(host_socket)
    results, _ = grade_in_order(tmp_path, [planter, finder])
    planted, found = snippet_says(results[0]), snippet_says(results[1])
    assert planted["add_key"] == "EPERM" and planted["unix"] == planted["inet"] == "EPERM"
    assert planted["pair"] == "ok", "socketpair(AF_UNIX) stays"
    assert planted["mq"] == planted["shm"] == "ok", "the answer's own IPC namespace allows them"
    refused = dict(zip(SYSCALL_PROBES, planted["calls"].split(","), strict=True))
    swept, of = planted["sweep"].split("/")
    assert swept == of and int(of) >= 30, "every other refused call fails with EPERM"
    assert refused == {**{name: "EPERM" for name in SYSCALL_PROBES}, "clone3": "ENOSYS"}
    assert found == {"key": "EPERM", "mq": "ENOENT", "shm": "0", "uid": planted["uid"]}
    assert int(found["uid"]) not in _key_users(), "a slot uid holds keys after the run"


def test_control_without_the_filter_and_answer_ipc_state_crosses(
    tmp_path: Path, host_socket: Path
) -> None:
    planter, finder = _kernel_state_snippets(host_socket)
    results, stderr = grade_in_order(
        tmp_path, [planter, finder], off=("seccomp", "answer_ipc", "allow_listed_root")
    )
    assert "seccomp filter" in stderr and "own IPC namespace per answer" in stderr
    planted, found = snippet_says(results[0]), snippet_says(results[1])
    assert planted["add_key"] == planted["unix"] == planted["inet"] == "ok"
    calls = dict(zip(SYSCALL_PROBES, planted["calls"].split(","), strict=True))
    swept, of = planted["sweep"].split("/")
    assert int(swept) < int(of), "some calls of the sweep answer otherwise without the filter"
    for name in ("keyctl", "request_key", "setns", "open_tree", "clone3"):
        assert calls[name] not in ("EPERM", "ENOSYS"), (name, calls)  # the probes can tell
    assert found["key"] == "ok" and found["mq"] == "ok" and found["uid"] == planted["uid"]
    assert int(found["uid"]) in _key_users()


def test_syscall_numbers_match_the_kernel_headers() -> None:
    machine = os.uname().machine
    header = {
        "x86_64": Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h"),
        "aarch64": Path("/usr/include/asm-generic/unistd.h"),
    }.get(machine)
    if header is None or not header.exists():
        pytest.skip(f"no unistd header for {machine}")
    defined = dict(re.findall(r"#define __NR(?:3264)?_(\w+)\s+(\d+)", header.read_text()))
    for name, number in SYSCALLS[machine].items():
        assert int(defined[name]) == number, name


# --------------------------------------------------------------------------- memory beyond RLIMIT_AS

SMALL_MEMORY_BANK = """\
- id: hold-memory
  kind: code
  topics: [sandbox]
  difficulty: intermediate
  points: 1
  source: original
  prompt: Bind `z`, a copy of `mu`.
  explanation: Adding zero copies the tensor.
  given:
    mu: {type: tensor, shape: [B, D], dist: normal}
  expect: [z]
  reference: |
    z = mu + 0
  trials:
    - bind: {B: 2, D: 3}
  checks:
    - {check: close, of: z}
  limits: {memory_mb: 256, time_s: 30}
"""
HOLD_IN_FILES = (
    "import os\n"
    "written = 0\n"
    "block = b'x' * (8 << 20)\n"
    "folders = ['/dev/shm', '/tmp', '/var/tmp']\n"
    "held = []\n"
    "while written < 600:\n"
    "    try:  # tmpfs files until the folders are full, then memfds: outside RLIMIT_AS\n"
    "        if not folders:\n"
    "            raise OSError\n"
    "        with open(f'{folders[0]}/hold{written}', 'wb') as file:\n"
    "            file.write(block)\n"
    "    except OSError:\n"
    "        if folders:\n"
    "            folders.pop(0)\n"
    "            continue\n"
    "        held.append(os.memfd_create('hold'))\n"
    "        os.write(held[-1], block)\n"
    "    written += 8\n"
    + report(written="written")
)
"""Holds 600 MB in tmpfs files and memfds, against a memory limit of 256 MB."""


def test_memory_held_in_files_and_memfds_counts_against_the_limit(tmp_path: Path) -> None:
    (tmp_path / "bank").mkdir()
    (tmp_path / "bank" / "hold.yaml").write_text(SMALL_MEMORY_BANK)
    results, stderr = grade_in_order(
        tmp_path, [HOLD_IN_FILES, "z = mu + 0"], "hold-memory", bank=tmp_path / "bank"
    )
    assert "memory cgroup" not in stderr, "the layer is active (else start-up names it)"
    assert results[0]["error"] == "memory limit of 256 MB exceeded", results[0]
    assert results[1]["passed"], "the worker serves the next answer"


def test_control_without_the_cgroup_the_files_are_held(tmp_path: Path) -> None:
    (tmp_path / "bank").mkdir()
    (tmp_path / "bank" / "hold.yaml").write_text(SMALL_MEMORY_BANK)
    results, stderr = grade_in_order(
        tmp_path, [HOLD_IN_FILES], "hold-memory", off=("memory_cgroup",), bank=tmp_path / "bank"
    )
    assert "memory cgroup per worker" in stderr and "switched off" in stderr
    assert snippet_says(results[0]) == {"written": "600"}


# --------------------------------------------------------------------------- /sys

SYS_PROBE = (
    "import os\n"
    "def entries(path):\n"
    "    try:\n"
    "        return str(len(os.listdir(path)))\n"
    "    except OSError as err:\n"
    "        return type(err).__name__\n"
    "def lines(path):\n"
    "    try:\n"
    "        return str(len(open(path).read().splitlines()))\n"
    "    except OSError as err:\n"
    "        return type(err).__name__\n"
    + report(
        net="entries('/sys/class/net')",
        pids="lines('/sys/fs/cgroup/pids/cgroup.procs')",
        top="entries('/sys')",
    )
)
"""The host's network interfaces and the pids of its cgroup tree, as /sys shows them."""


def test_sys_shows_neither_host_interfaces_nor_host_pids(tmp_path: Path) -> None:
    results, _ = grade_in_order(tmp_path, [SYS_PROBE])
    said = snippet_says(results[0])
    assert said == {"net": "FileNotFoundError", "pids": "FileNotFoundError", "top": "1"}


def test_control_with_the_host_sys_both_are_visible(tmp_path: Path) -> None:
    if not Path("/sys/fs/cgroup/pids/cgroup.procs").exists():
        pytest.skip("this machine has no v1 pids cgroup to show")
    results, _ = grade_in_order(tmp_path, [SYS_PROBE], off=("empty_sys",))
    said = snippet_says(results[0])
    assert int(said["net"]) >= 1 and int(said["pids"]) >= 1, said


# --------------------------------------------------------------------------- the root file system


@pytest.fixture
def unlisted_file() -> Iterator[Path]:
    """A world-readable file outside every hidden path and temp folder, as another course's
    bank or an old results file would be."""
    folder = _outside_folder("vaequiz-course-")
    path = folder / "reference.py"
    path.write_text("kl = 'the other course key'\n")
    path.chmod(0o644)
    yield path
    path.unlink()
    folder.rmdir()


def _reader(path: Path) -> str:
    return (
        "def attempt(path):\n"
        "    try:\n"
        "        return str(len(open(path).read()))\n"
        "    except OSError as err:\n"
        "        return type(err).__name__\n"
        f"read = attempt({str(path)!r})\n"
        + report(read="read", parent=f"attempt({str(path.parent.parent)!r})")
    )


def test_the_host_outside_the_allow_list_is_absent(tmp_path: Path, unlisted_file: Path) -> None:
    results, _ = grade_in_order(tmp_path, [_reader(unlisted_file)])
    said = snippet_says(results[0])
    assert said["read"] == "FileNotFoundError" and said["parent"] == "FileNotFoundError", said


def test_control_with_the_host_root_the_file_is_read(tmp_path: Path, unlisted_file: Path) -> None:
    results, _ = grade_in_order(tmp_path, [_reader(unlisted_file)], off=("allow_listed_root",))
    said = snippet_says(results[0])
    assert said["read"] == str(len(unlisted_file.read_text())), said
