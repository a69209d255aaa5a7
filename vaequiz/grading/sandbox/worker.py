"""The warm worker: imports torch once, then forks one short-lived child per submission.

Started by :class:`~vaequiz.grading.sandbox.pool.Sandbox` as ``python -m
vaequiz.grading.sandbox.worker`` with a scrubbed environment. It talks to the grader through
frames on its original stdin/stdout and never holds a submission itself: for each request it
reads only the limits and forks a *runner*, which reads the submission's bytes straight from
the grader's pipe. Process tree (where the machine allows namespaces)::

    worker (root): enters its own mount, network and IPC namespaces, hides the bank and the
      │            checkout, makes the file system read-only, preloads torch, then
      └─ serving worker: PID 1 of its own PID namespace, private /proc, /tmp, /var/tmp, /dev/shm
           └─ runner (one per submission): limits, unprivileged uid, the snippet; writes results
              to a pipe and exits

Namespaces are set up once per worker (creating them per snippet costs tens of milliseconds);
what makes each submission private is the clean-up after it: the serving worker, as PID 1,
kills every other process of its namespace in one ``kill(-1, SIGKILL)`` (setsid daemons
included), reaps them, wipes the temp folders and removes System V IPC objects. Where
namespaces are unavailable the runner leads its own session, the worker kills its process
group, and a helper running as the slot's uid kills every process of that uid.
"""

from __future__ import annotations

import gc
import os
import resource
import selectors
import shutil
import signal
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from vaequiz.grading.sandbox import frames, isolation

_hard_exit = os._exit
"""Bound at import, so a snippet that replaces ``os._exit`` cannot keep its process alive."""

MAX_RESULT_BYTES = 64 * 1024 * 1024
OUTPUT_HARD_FACTOR = 16
"""Output beyond output_kb is dropped; beyond this many times output_kb the snippet is stopped."""
MIN_OUTPUT_HARD_BYTES = 1024 * 1024
RESULT_FD = 3
MAX_REQUEST_BYTES = 512 * 1024 * 1024
CUDA_DRIVER_THREADS = 16
"""Extra tasks allowed on CUDA: the driver starts helper threads, and RLIMIT_NPROC counts them."""
TEMP_MB = 512
"""Size of each private temp folder (tmpfs); single files are bounded by file_mb."""
MINIMAL_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
PRELOADED_MODULES = (
    "math",
    "random",
    "itertools",
    "functools",
    "collections",
    "operator",
    "statistics",
    "numpy",
    "torch.distributions",
    "torch.optim",
    "torch.nn.functional",
    "torch.nn.init",
    "torch.linalg",
    "torch.fft",
    "einops",
    "einops._torch_specific",
    "einops.layers.torch",
)
"""Imported by the worker so snippets can import them after access to the disk is reduced."""


@dataclass
class Settings:
    """What the grader tells a worker once, at start-up."""

    uid: int | None
    hide: tuple[Path, ...]
    namespaces: bool | None = None
    import_path: tuple[str, ...] = ()
    """The grader's ``sys.path``, so the worker imports the same torch (user site, venv...)."""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Settings:
        return cls(
            uid=data.get("uid"),
            hide=tuple(Path(p) for p in data.get("hide", [])),
            namespaces=data.get("namespaces"),
            import_path=tuple(str(p) for p in data.get("import_path", [])),
        )


@dataclass
class Layers:
    """Which hardening layers this worker could switch on."""

    namespaces: bool = False
    network: bool = False
    mounts: bool = False
    uid: int | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class SnippetLimits:
    """The limits of one request, as the grader sent them (plain numbers)."""

    time_s: float
    cpu_s: float
    memory_mb: int
    processes: int
    output_kb: int
    file_mb: int
    device: str

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SnippetLimits:
        return cls(
            time_s=float(data["time_s"]),
            cpu_s=float(data.get("cpu_s") or data["time_s"]),
            memory_mb=int(data["memory_mb"]),
            processes=int(data["processes"]),
            output_kb=int(data["output_kb"]),
            file_mb=int(data["file_mb"]),
            device=str(data.get("device", "cpu")),
        )


def keep_paths() -> tuple[Path, ...]:
    """Folders a snippet's process must still reach: the interpreter's library and torch."""
    paths = {Path(sys.prefix), Path(sys.base_prefix), Path(sys.exec_prefix)}
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        paths.add(Path(sysconfig.get_paths()[key]))
    for name in ("torch", "numpy"):
        spec = find_spec(name)
        if spec is not None and spec.origin:
            paths.add(Path(spec.origin).resolve().parent.parent)
    return tuple(sorted(paths))


def set_up_layers(settings: Settings) -> Layers:
    """Enter this worker's own mount, network and IPC namespaces (once per worker)."""
    layers = Layers()
    if os.geteuid() != 0:
        layers.notes.append("not running as root")
        return layers
    layers.uid = settings.uid
    wanted = settings.namespaces is not False
    if wanted and isolation.namespaces_available():
        isolation.unshare(isolation.CLONE_NEWNS | isolation.CLONE_NEWNET | isolation.CLONE_NEWIPC)
        layers.namespaces = layers.network = layers.mounts = True
    elif wanted:
        layers.notes.append("namespaces are not available")
    else:
        layers.notes.append("namespaces switched off")
    return layers


def describe_layers(layers: Layers, hidden: int) -> list[str]:
    """One line per hardening layer, saying whether it is active (printed by the CLI)."""
    why = "; ".join(layers.notes) or "unavailable"
    on, off = "active", f"unavailable ({why})"
    uid = layers.uid
    return [
        "fork per snippet from a warm worker (torch preloaded, 1 thread): active",
        "limits on wall clock, CPU, memory, output, file size; stdin closed: active",
        f"unprivileged uid per worker ({uid}), so the process limit applies: "
        + (on if uid is not None else f"{off}; no process limit"),
        "own PID namespace, emptied after every snippet (setsid daemons included): "
        + (on if layers.namespaces else f"{off}; process group kill and uid sweep instead"),
        "no network (own network namespace, loopback down): " + (on if layers.network else off),
        "private /proc, /tmp, /var/tmp, /dev/shm and scratch folder: "
        + (on if layers.mounts else off),
        "read-only file system, except the private folders: " + (on if layers.mounts else off),
        f"bank, reference code, checkout and extra hidden paths unreadable ({hidden} covered): "
        + (on if layers.mounts else off),
        "environment scrubbed to PATH, HOME, LANG, TMPDIR: active",
    ]


def preload() -> None:
    """Import torch and friends once, single-threaded, and warm the paths snippets use."""
    import importlib

    import torch

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    for name in PRELOADED_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    from vaequiz.grading.sandbox import runner, wire  # before the checkout is hidden

    x = torch.randn(4, 3, requires_grad=True)
    warm_up = {
        "source": "z = mu + 0",
        "expect": ["z", "decoder"],
        "runs": [
            {
                "seed": 0,
                "given": {"mu": x, "latent_dim": 3},
                "probes": [
                    {"kind": "grad", "target": "z", "wrt": ["mu"]},
                    {
                        "kind": "fit",
                        "target": "decoder",
                        "as_": "fit",
                        "args": [x.detach(), torch.rand(4, 2)],
                        "loss": "bce",
                        "steps": 2,
                        "lr": 1e-3,
                        "train_mode": True,
                    },
                ],
            }
        ],
    }
    warm_up["source"] += "\ndecoder = nn.Sequential(nn.Linear(latent_dim, 2), nn.Sigmoid())"
    request = wire.decode(wire.encode(warm_up, keep_grad=True), restore_grad=True)
    wire.decode(wire.encode(runner.execute(request)))
    torch.cdist(x.detach(), x.detach()).argmin(1)
    make_fork_cheap()


def make_fork_cheap() -> None:
    """Settle the heap so each fork copies and dirties as little as possible.

    Freezing the garbage collector keeps the child's collections off the preloaded objects
    (each traversal would copy their pages), trimming returns freed heap, and collapsing the
    heap into transparent huge pages lets fork copy one entry per 2 MB instead of per 4 KB
    (about three times less fork time measured here). Each step is best effort.
    """
    gc.collect()
    gc.freeze()
    isolation.trim_heap()
    isolation.collapse_into_huge_pages()


class Sink:
    """A bounded byte buffer fed from a pipe; the bytes are zeroed when released."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.data = bytearray()
        self.total = 0

    def feed(self, chunk: bytes | memoryview) -> None:
        self.total += len(chunk)
        room = self.keep - len(self.data)
        if room > 0:
            self.data += chunk[:room]

    def release(self) -> None:
        self.data[:] = bytes(len(self.data))
        self.data.clear()


@dataclass
class Outcome:
    """How the worker saw the child end."""

    status: str = "ok"
    reason: str = ""


@dataclass
class Submission:
    """One submission in flight: its runner, pipes, limits and what has arrived so far."""

    runner: int
    limits: SnippetLimits
    start: float
    result_r: int
    output_r: int
    status_r: int
    scratch: Path
    result: Sink = field(default_factory=lambda: Sink(MAX_RESULT_BYTES + 1))
    output: Sink = field(default_factory=lambda: Sink(0))
    status_text: bytearray = field(default_factory=bytearray)
    reaped: tuple[int, float] | None = None

    def __post_init__(self) -> None:
        self.output = Sink(self.limits.output_kb * 1024)


SIGNAL_NAMES = {s.value: s.name for s in signal.Signals}


class Worker:
    """Serves requests one at a time until the grader closes the pipe."""

    def __init__(self, settings: Settings, proto_in: int, proto_out: int) -> None:
        self.settings = settings
        self.proto_in = proto_in
        self.proto_out = proto_out
        self.buffer = bytearray(1 << 16)
        self.layers = set_up_layers(settings)
        sys.path.extend(p for p in settings.import_path if p not in sys.path)
        preload()
        if self.layers.mounts:
            try:
                plan = isolation.MountPlan(hide=settings.hide, keep=keep_paths())
                isolation.apply_mount_plan(plan)
                isolation.mount_private_temp(TEMP_MB)
            except OSError as err:
                self.layers.mounts = False
                self.layers.notes.append(f"mount isolation failed: {err}")

    def start(self) -> None:
        """Become PID 1 of a fresh PID namespace (where allowed), then serve."""
        if self.layers.namespaces:
            isolation.unshare(isolation.CLONE_NEWPID)
            child = os.fork()
            if child:
                os.close(self.proto_in)
                os.close(self.proto_out)
                _, status = os.waitpid(child, 0)
                _hard_exit(os.waitstatus_to_exitcode(status) & 0xFF)
            isolation.set_parent_death_signal()
            if self.layers.mounts:
                isolation.mount_fresh_proc()
        else:
            isolation.set_child_subreaper()
        self.serve()

    def serve(self) -> None:
        frames.write_json(
            self.proto_out,
            {
                "hardening": describe_layers(self.layers, len(self.settings.hide)),
                "pid": os.getpid(),
            },
        )
        while True:
            try:
                control = frames.read_json(self.proto_in)
            except frames.FrameError:
                return
            submission = self.begin(SnippetLimits.from_json(control))
            try:
                outcome = self.supervise(submission)
                self.respond(submission, outcome)
            finally:
                self.finish(submission)

    # ------------------------------------------------------------------ one submission

    def begin(self, limits: SnippetLimits) -> Submission:
        """Fork the runner; it reads the submission itself, straight from the grader's pipe."""
        start = time.monotonic()
        result_r, result_w = os.pipe()
        output_r, output_w = os.pipe()
        status_r, status_w = os.pipe()
        scratch = self.scratch()
        runner = os.fork()
        if runner == 0:  # pragma: no cover - runs in the child
            try:
                for fd in (result_r, output_r, status_r, self.proto_out):
                    os.close(fd)
                self.run_snippet(limits, result_w, output_w, status_w, scratch)
            finally:
                _hard_exit(71)
        for fd in (result_w, output_w, status_w):
            os.close(fd)
        return Submission(runner, limits, start, result_r, output_r, status_r, scratch)

    def scratch(self) -> Path:
        owner = self.layers.uid if self.layers.uid is not None else os.getuid()
        if self.layers.mounts:
            return isolation.make_scratch(owner)
        folder = Path(tempfile.mkdtemp(prefix="vaequiz-scratch-"))
        os.chown(folder, owner, owner)
        return folder

    def supervise(self, sub: Submission) -> Outcome:
        """Watch the runner until its results are complete, it ends, or a limit is hit; then
        make sure it and every process it started are gone."""
        limits = sub.limits
        output_hard = max(OUTPUT_HARD_FACTOR * limits.output_kb * 1024, MIN_OUTPUT_HARD_BYTES)
        runner_fd = os.pidfd_open(sub.runner)
        selector = selectors.DefaultSelector()
        for fd in (sub.result_r, sub.output_r, sub.status_r, runner_fd):
            selector.register(fd, selectors.EVENT_READ)
        deadline = sub.start + limits.time_s
        kill_reason: tuple[str, str] | None = None
        runner_done = complete = False
        try:
            while not (runner_done or complete or kill_reason):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    kill_reason = ("time_limit", f"time limit of {limits.time_s:g} s exceeded")
                    break
                for key, _ in selector.select(remaining):
                    fd = key.fd
                    if fd == runner_fd:
                        runner_done = True
                        continue
                    chunk = _read_into(fd, self.buffer)
                    if not chunk:
                        selector.unregister(fd)
                    elif fd == sub.result_r:
                        sub.result.feed(chunk)
                        complete = _frame_complete(sub.result)
                        if sub.result.total > MAX_RESULT_BYTES:
                            kill_reason = (
                                "invalid_output",
                                f"results larger than {MAX_RESULT_BYTES // 2**20} MB",
                            )
                    elif fd == sub.output_r:
                        sub.output.feed(chunk)
                        if sub.output.total > output_hard:
                            kill_reason = (
                                "output_limit",
                                f"output limit of {limits.output_kb} KB exceeded "
                                f"(the snippet wrote more than {output_hard // 1024} KB)",
                            )
                    else:
                        sub.status_text += chunk
        finally:
            selector.close()
            os.close(runner_fd)
        if kill_reason or complete:  # done, or over a limit: either way the runner goes now
            try:
                os.kill(sub.runner, signal.SIGKILL)
            except ProcessLookupError:
                pass
        wait_status, cpu = self.reap_runner(sub)
        self.kill_leftovers(sub.runner)
        _drain(sub.output_r, sub.output, self.buffer)
        if kill_reason is not None:
            return Outcome(*kill_reason)
        if complete:  # the snippet's output was flushed before its results
            return Outcome("ok", "")
        _drain(sub.result_r, sub.result, self.buffer)
        sub.status_text += _drain_bytes(sub.status_r)
        if b"body" not in sub.status_text:
            raise RuntimeError("the runner ended before reading the request; the stream is lost")
        if _frame_complete(sub.result):
            return Outcome("ok", "")
        if sub.result.data:
            return Outcome("invalid_output", "the snippet's results could not be read (cut short)")
        return Outcome(*_judge(wait_status, cpu, limits))

    def respond(self, sub: Submission, outcome: Outcome) -> None:
        """Answer the grader (every process of the submission is already gone); files and IPC
        objects are wiped afterwards, while the grader reads and checks."""
        payload = memoryview(sub.result.data)[4:] if outcome.status == "ok" else b""
        frames.write_json(
            self.proto_out,
            {
                "status": outcome.status,
                "reason": outcome.reason,
                "wall_s": round(time.monotonic() - sub.start, 4),
                "output_total": sub.output.total,
            },
        )
        frames.write_frame(self.proto_out, payload)
        frames.write_frame(self.proto_out, sub.output.data)
        if isinstance(payload, memoryview):
            payload.release()

    def reap_runner(self, sub: Submission) -> tuple[int, float]:
        """Collect the runner's exit status and CPU time (once)."""
        if sub.reaped is None:
            _, wait_status, usage = os.wait4(sub.runner, 0)
            sub.reaped = (wait_status, usage.ru_utime + usage.ru_stime)
        return sub.reaped

    def finish(self, sub: Submission) -> None:
        """Leave nothing of the submission behind: processes, pipes, files, IPC objects."""
        try:
            if sub.reaped is None:  # only if supervising failed half-way
                try:
                    os.kill(sub.runner, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.reap_runner(sub)
                self.kill_leftovers(sub.runner)
        finally:
            for fd in (sub.result_r, sub.output_r, sub.status_r):
                os.close(fd)
            self.clean_up(sub.scratch)
            sub.result.release()
            sub.output.release()
            sub.status_text.clear()
            self.buffer[:] = bytes(len(self.buffer))

    def kill_leftovers(self, runner: int) -> None:
        """Kill every process the snippet started, wherever it went, and reap them."""
        if self.layers.namespaces:
            isolation.kill_everything_else()
            isolation.reap_all(block=True)
            return
        try:
            os.killpg(runner, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        uid = self.layers.uid
        if uid is not None:
            helper = os.fork()
            if helper == 0:  # pragma: no cover - child
                try:
                    isolation.drop_privileges(uid)
                    isolation.kill_everything_else()
                finally:
                    _hard_exit(0)
            os.waitpid(helper, 0)
        # After the uid sweep every orphan this worker adopted is dying, so waiting is safe;
        # without it a surviving daemon would make a blocking wait hang.
        isolation.reap_all(block=uid is not None)

    def clean_up(self, scratch: Path) -> None:
        """Leave nothing of this submission for the next: files, IPC objects."""
        if self.layers.mounts:
            for folder in isolation.PRIVATE_TEMP:
                if folder.is_dir():
                    isolation.wipe(folder)
            isolation.remove_sysv_ipc()
        else:
            shutil.rmtree(scratch, ignore_errors=True)

    # ------------------------------------------------------------------ in the child

    def run_snippet(
        self, limits: SnippetLimits, result_w: int, output_w: int, status_w: int, scratch: Path
    ) -> None:  # pragma: no cover - runs in the child
        """The runner: read the submission, confine this process, then execute it."""
        isolation.set_parent_death_signal()
        body = frames.read_frame(self.proto_in, MAX_REQUEST_BYTES)
        os.write(status_w, b"body\n")
        uid = self.layers.uid
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(output_w, 1)
        os.dup2(output_w, 2)
        os.dup2(result_w, RESULT_FD)
        os.closerange(RESULT_FD + 1, 1 << 16)
        os.setsid()
        os.chdir(scratch)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        cpu = max(1, int(limits.cpu_s + 0.999))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        isolation.set_limit(resource.RLIMIT_FSIZE, limits.file_mb * 1024 * 1024)
        if limits.device == "cpu":
            budget = isolation.address_space_in_use() + limits.memory_mb * 1024 * 1024
            isolation.set_limit(resource.RLIMIT_AS, budget)
        if uid is not None:
            threads = CUDA_DRIVER_THREADS if limits.device == "cuda" else 0
            isolation.set_limit(resource.RLIMIT_NPROC, limits.processes + 1 + threads)
            isolation.drop_privileges(uid)
        isolation.set_no_new_privs()
        os.environ.clear()
        os.environ.update(MINIMAL_ENV, HOME=str(scratch), TMPDIR=str(scratch))
        _fresh_stdio()
        _execute(body, limits.device)


def _fresh_stdio() -> None:  # pragma: no cover - runs in the child
    sys.stdin = open(0, closefd=False)
    for name, fd in (("stdout", 1), ("stderr", 2)):
        stream = open(
            fd, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False
        )
        setattr(sys, name, stream)


def _execute(body: bytes, device: str) -> None:  # pragma: no cover - runs in the child
    """Decode, run, encode, send; any failure after this point is the snippet's doing."""
    from vaequiz.grading.sandbox import runner, wire

    stdout, stderr = sys.stdout, sys.stderr
    request = wire.decode(body, device=device, restore_grad=True)
    del body
    document = runner.execute(request, device)
    try:
        encoded = wire.encode(document)
    except Exception as err:
        encoded = wire.encode({"encode_error": f"{type(err).__name__}: {err}"[:300]})
    for stream in (stdout, stderr):
        try:
            stream.flush()
        except Exception:
            pass
    frames.write_frame(RESULT_FD, encoded)
    _hard_exit(0)


def _frame_complete(sink: Sink) -> bool:
    """Whether the sink holds a whole length-prefixed frame (the runner's results)."""
    data = sink.data
    return len(data) >= 4 and len(data) >= 4 + int.from_bytes(data[:4], "little")


def _read_into(fd: int, buffer: bytearray) -> memoryview:
    """One read into the worker's reusable buffer (zeroed after each submission), so a
    snippet's bytes never linger in freed heap memory that the next child inherits."""
    count = os.readv(fd, [buffer])
    return memoryview(buffer)[:count]


def _drain(fd: int, sink: Sink, buffer: bytearray) -> None:
    """Read what is left in a pipe without blocking, at most what the sink keeps (plus one)."""
    os.set_blocking(fd, False)
    budget = sink.keep + 1
    while budget > 0:
        try:
            chunk = _read_into(fd, buffer)
        except BlockingIOError:
            return
        if not chunk:
            return
        sink.feed(chunk)
        budget -= len(chunk)


def _drain_bytes(fd: int, limit: int = 1 << 16) -> bytes:
    """What is left in a pipe whose writers are gone (or that nobody will write any more)."""
    os.set_blocking(fd, False)
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _judge(wait_status: int, cpu: float, limits: SnippetLimits) -> tuple[str, str]:
    """The status and student-facing reason for a runner that ended without sending results."""
    if os.WIFEXITED(wait_status):
        code = os.WEXITSTATUS(wait_status)
        return "crashed", (
            "crashed: the snippet ended the process before its results were sent"
            f" (exit status {code})"
        )
    signum = os.WTERMSIG(wait_status)
    cpu_limit = max(1, int(limits.cpu_s + 0.999))
    if signum == signal.SIGXCPU or (signum == signal.SIGKILL and cpu >= cpu_limit):
        return "cpu_limit", f"CPU time limit of {limits.cpu_s:g} s exceeded"
    name = SIGNAL_NAMES.get(signum, "unknown")
    return "crashed", f"crashed: killed by signal {signum} ({name})"


def main() -> None:
    """Entry point: protect the protocol streams from stray prints, then serve."""
    proto_in, proto_out = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    try:
        settings = Settings.from_json(frames.read_json(proto_in))
    except frames.FrameError:
        return
    Worker(settings, proto_in, proto_out).start()


if __name__ == "__main__":
    main()
