"""The warm worker: imports torch once, then forks one short-lived child per submission.

Started by :class:`~vaequiz.grading.sandbox.pool.Sandbox` as ``python -m
vaequiz.grading.sandbox.worker`` with a scrubbed environment. It talks to the grader through
frames on its original stdin/stdout and never holds a submission itself: for each request it
reads only the limits and forks a *runner*, which reads the submission's bytes straight from
the grader's pipe. Process tree (where the machine allows namespaces)::

    worker (root): enters its own mount, network and IPC namespaces, creates its memory
      │            cgroup, preloads torch, hides the bank and the checkout, empties /sys,
      │            pivots into a root built from an allow list, makes it read-only, then
      └─ serving worker: PID 1 of its own PID namespace, private /proc, /tmp, /var/tmp,
           │           /dev/shm; joins the memory cgroup once
           └─ runner (one per submission): its own IPC namespace, limits, unprivileged uid,
              seccomp filter, the snippet; writes results to a pipe and exits

Namespaces are set up once per worker (creating most of them per snippet costs tens of
milliseconds; an IPC namespace costs 0.3 ms and is made per answer); what makes each
submission private is the clean-up after it: the serving worker, as PID 1, kills every other
process of its namespace in one ``kill(-1, SIGKILL)`` (setsid daemons included), reaps them
(the answer's IPC namespace goes with them) and replaces any temp folder the answer left
something in with a fresh tmpfs. The answer's output and results only ever sit in
``MADV_WIPEONFORK`` buffers, unmapped afterwards, so no later runner is forked with them.
Where namespaces are unavailable the runner leads its own session, the worker kills its
process group, and a helper running as the slot's uid kills every process of that uid.
"""

from __future__ import annotations

import gc
import mmap
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
from vaequiz.grading.sandbox.cgroups import (
    CgroupUnavailable,
    MemoryCgroup,
    set_oom_score_adjustment,
    worker_cgroup_name,
)
from vaequiz.grading.sandbox.seccomp import Filter

_hard_exit = os._exit
"""Bound at import, so a snippet that replaces ``os._exit`` cannot keep its process alive."""

MAX_RESULT_BYTES = 64 * 1024 * 1024
READ_CHUNK = 1 << 16
OUTPUT_HARD_FACTOR = 16
"""Output beyond output_kb is dropped; beyond this many times output_kb the snippet is stopped."""
MIN_OUTPUT_HARD_BYTES = 1024 * 1024
RESULT_FD = 3
MAX_REQUEST_BYTES = 512 * 1024 * 1024
CUDA_DRIVER_THREADS = 16
"""Extra tasks allowed on CUDA: the driver starts helper threads, and RLIMIT_NPROC counts them."""
TEMP_MB = 512
"""Size of each private temp folder (tmpfs); single files are bounded by file_mb."""
TEMP_SHARE_OF_MEMORY = 4
"""With a memory cgroup, each of the three temp folders holds at most this fraction of the
request's memory limit, so files that outlive a killed runner leave the worker room."""
RUNNER_MODES = ("execute", "capture", "measure")
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
SWITCHABLE_LAYERS = (
    "wipe_on_fork",
    "fresh_tmpfs",
    "answer_ipc",
    "seccomp",
    "memory_cgroup",
    "empty_sys",
    "allow_listed_root",
    "program",
)
"""Layers that ``VAEQUIZ_SANDBOX_OFF`` may switch off (``program`` is the grader's: with it off,
snippets are measured in their own process, as before programs): to compare speed with and without them
(bench/bench_sandbox.py) and to show that each layer's test fails without it."""


@dataclass
class Settings:
    """What the grader tells a worker once, at start-up."""

    uid: int | None
    hide: tuple[Path, ...]
    namespaces: bool | None = None
    import_path: tuple[str, ...] = ()
    """The grader's ``sys.path``, so the worker imports the same torch (user site, venv...)."""
    off: tuple[str, ...] = ()
    """Names from :data:`SWITCHABLE_LAYERS` to leave off (benchmarks and tests only)."""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Settings:
        return cls(
            uid=data.get("uid"),
            hide=tuple(Path(p) for p in data.get("hide", [])),
            namespaces=data.get("namespaces"),
            import_path=tuple(str(p) for p in data.get("import_path", [])),
            off=tuple(str(name) for name in data.get("off", [])),
        )


@dataclass
class Layers:
    """Which hardening layers this worker could switch on."""

    namespaces: bool = False
    network: bool = False
    mounts: bool = False
    uid: int | None = None
    wipe_on_fork: bool = False
    fresh_tmpfs: bool = False
    answer_ipc: bool = False
    seccomp: bool = False
    memory_cgroup: bool = False
    cgroup: MemoryCgroup | None = None
    empty_sys: bool = False
    allow_listed_root: bool = False
    notes: list[str] = field(default_factory=list)
    why_off: dict[str, str] = field(default_factory=dict)
    """Why a layer of :data:`SWITCHABLE_LAYERS` is off, by name."""

    def state(self, name: str) -> str:
        """"active", or "unavailable (why)" for one of the switchable layers."""
        if getattr(self, name):
            return "active"
        return f"unavailable ({self.why_off.get(name, 'not set up')})"


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
    mode: str = "execute"
    """"execute": run the snippet and measure it in its process (the fallback); "capture": run it
    and hand over its programs; "measure": replay programs (no student Python) and measure."""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SnippetLimits:
        mode = str(data.get("mode", "execute"))
        if mode not in RUNNER_MODES:
            raise ValueError(f"unknown runner mode {mode[:20]!r}")
        return cls(
            time_s=float(data["time_s"]),
            cpu_s=float(data.get("cpu_s") or data["time_s"]),
            memory_mb=int(data["memory_mb"]),
            processes=int(data["processes"]),
            output_kb=int(data["output_kb"]),
            file_mb=int(data["file_mb"]),
            device=str(data.get("device", "cpu")),
            mode=mode,
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
    if "wipe_on_fork" in settings.off:
        layers.why_off["wipe_on_fork"] = "switched off"
    else:
        try:
            isolation.private_memory(1).close()
            layers.wipe_on_fork = True
        except OSError as err:
            layers.why_off["wipe_on_fork"] = f"the kernel refuses MADV_WIPEONFORK: {err}"
    if "seccomp" in settings.off:
        layers.why_off["seccomp"] = "switched off"
    else:
        layers.seccomp, layers.why_off["seccomp"] = _seccomp_works()
    if os.geteuid() != 0:
        layers.notes.append("not running as root")
        layers.why_off["answer_ipc"] = layers.why_off["memory_cgroup"] = "not running as root"
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
    if "memory_cgroup" in settings.off:
        layers.why_off["memory_cgroup"] = "switched off"
    else:
        try:
            layers.cgroup = MemoryCgroup.create(worker_cgroup_name(settings.uid))
            layers.memory_cgroup = True
        except CgroupUnavailable as err:
            layers.why_off["memory_cgroup"] = str(err)
    if "answer_ipc" in settings.off:
        layers.why_off["answer_ipc"] = "switched off"
    elif not layers.namespaces:
        layers.why_off["answer_ipc"] = "no namespaces"
    else:
        layers.answer_ipc = True
    return layers


def _seccomp_works() -> tuple[bool, str]:
    """Whether a child can install the filter (an architecture without a table cannot)."""
    try:
        syscall_filter = Filter.for_this_machine()
    except KeyError:
        return False, f"no system call table for {os.uname().machine}"
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 1
        try:
            isolation.set_no_new_privs()
            syscall_filter.install()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        return False, "the kernel refuses seccomp filters"
    return True, ""


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
        "memory cgroup per worker (limit + 64 MB, no swap) counting tmpfs files, memfds and IPC "
        "segments too" + (f" (cgroup v{layers.cgroup.version})" if layers.cgroup else "") + ": "
        + layers.state("memory_cgroup"),
        "root file system built from an allow list (interpreter, torch, system libraries, "
        "a few devices; pivot_root), the rest of the host absent: "
        + layers.state("allow_listed_root"),
        "/sys empty but for its CPU topology (and the PCI tree where an NVIDIA device is): "
        + layers.state("empty_sys"),
        "own IPC namespace per answer (System V objects, POSIX message queues): "
        + layers.state("answer_ipc"),
        "seccomp filter: no keyrings, ptrace, mounts, new namespaces, io_uring, perf, bpf, "
        "userfaultfd, kexec, modules, socket(): " + layers.state("seccomp"),
        "temp folders replaced by fresh tmpfs mounts after every answer (nothing to walk): "
        + layers.state("fresh_tmpfs"),
        "snippet output and results held only in memory no later child inherits "
        "(MADV_WIPEONFORK, unmapped after each answer): " + layers.state("wipe_on_fork"),
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
    # before the checkout is hidden
    from vaequiz.grading.sandbox import program, program_format, program_run, runner, wire

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
    body = wire.encode(warm_up, keep_grad=True)
    request = wire.decode(body, restore_grad=True)
    wire.decode(wire.encode(runner.execute(request)))
    program_format.warm_allow_list()
    captured = wire.encode(program.capture_runs(request, "cpu"))
    wire.decode(wire.encode(program_run.measure_request(program_run.measure_body(body, captured), "cpu")))
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
    """A bounded byte buffer fed from a pipe.

    Private sinks live in :func:`isolation.private_memory`, mapped once at their full size (the
    kernel only backs the pages written) and unmapped when released, so a snippet's bytes are
    never copied into the worker's heap, which every later child is forked from. The other kind
    (a growing ``bytearray``, zeroed when released) is the layer switched off: each growth
    leaves an old copy in freed heap.
    """

    def __init__(self, keep: int, private: bool = True) -> None:
        self.keep = keep
        self.total = 0
        self.size = 0
        self.memory: mmap.mmap | bytearray = (
            isolation.private_memory(keep) if private else bytearray()
        )

    def feed(self, chunk: bytes | memoryview) -> None:
        self.total += len(chunk)
        room = self.keep - self.size
        if room > 0:
            part = chunk[:room]
            if isinstance(self.memory, bytearray):
                self.memory += part
            else:
                self.memory[self.size : self.size + len(part)] = part
            self.size += len(part)

    def view(self, start: int = 0) -> memoryview:
        """The bytes kept from ``start`` (release the view before the sink)."""
        return memoryview(self.memory)[start : self.size]

    def frame_length(self) -> int | None:
        """The length prefix of the frame the sink holds, once its 4 bytes have arrived."""
        if self.size < 4:
            return None
        return int.from_bytes(self.memory[:4], "little")

    def release(self) -> None:
        if isinstance(self.memory, bytearray):
            self.memory[:] = bytes(len(self.memory))
            self.memory.clear()
        else:
            self.memory.close()
        self.size = 0


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
    private: bool
    result: Sink = field(init=False)
    output: Sink = field(init=False)
    status_text: bytearray = field(default_factory=bytearray)
    reaped: tuple[int, float] | None = None

    def __post_init__(self) -> None:
        self.result = Sink(MAX_RESULT_BYTES + 1, self.private)
        self.output = Sink(self.limits.output_kb * 1024, self.private)


SIGNAL_NAMES = {s.value: s.name for s in signal.Signals}


class Worker:
    """Serves requests one at a time until the grader closes the pipe."""

    def __init__(self, settings: Settings, proto_in: int, proto_out: int) -> None:
        self.settings = settings
        self.proto_in = proto_in
        self.proto_out = proto_out
        self.layers = set_up_layers(settings)
        self.syscall_filter = Filter.for_this_machine() if self.layers.seccomp else None
        self.temp_mb = TEMP_MB
        self.buffer: mmap.mmap | bytearray = (
            isolation.private_memory(READ_CHUNK) if self.layers.wipe_on_fork
            else bytearray(READ_CHUNK)
        )
        sys.path.extend(p for p in settings.import_path if p not in sys.path)
        preload()
        if self.layers.mounts:
            self.confine_file_system(settings)
        else:
            for name in ("empty_sys", "allow_listed_root"):
                self.layers.why_off[name] = "no private mounts"
        if "fresh_tmpfs" in settings.off:
            self.layers.why_off["fresh_tmpfs"] = "switched off"
        elif not self.layers.mounts:
            self.layers.why_off["fresh_tmpfs"] = "no private mounts"
        else:
            self.layers.fresh_tmpfs = True

    def confine_file_system(self, settings: Settings) -> None:
        """Hide the covered paths and make everything read-only, empty /sys, move into the
        allow-listed root, then mount the private temp folders (each step where allowed)."""
        layers = self.layers
        try:
            isolation.apply_mount_plan(isolation.MountPlan(hide=settings.hide, keep=keep_paths()))
        except OSError as err:
            layers.mounts = False
            layers.notes.append(f"mount isolation failed: {err}")
            for name in ("empty_sys", "allow_listed_root"):
                layers.why_off[name] = "no private mounts"
            return
        cuda = Path("/dev/nvidiactl").exists()
        if "empty_sys" in settings.off:
            layers.why_off["empty_sys"] = "switched off"
        else:
            kept = isolation.SYS_KEPT_FOR_CPU + (isolation.SYS_KEPT_FOR_CUDA if cuda else ())
            try:
                isolation.empty_sys(kept)
                layers.empty_sys = True
            except OSError as err:
                layers.why_off["empty_sys"] = f"covering /sys failed: {err}"
        if "allow_listed_root" in settings.off:
            layers.why_off["allow_listed_root"] = "switched off"
        else:
            try:
                isolation.enter_allow_listed_root(keep_paths(), cuda)
                isolation.make_read_only()
                layers.allow_listed_root = True
            except OSError as err:
                layers.why_off["allow_listed_root"] = f"building the root failed: {err}"
        try:
            isolation.mount_private_temp(TEMP_MB)
        except OSError as err:
            layers.mounts = False
            layers.notes.append(f"mount isolation failed: {err}")

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
        if self.layers.cgroup is not None:
            self.layers.cgroup.join()
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
        frames.widen_pipe(result_w)
        output_r, output_w = os.pipe()
        status_r, status_w = os.pipe()
        scratch = self.scratch()
        if self.layers.cgroup is not None:  # CUDA's host memory is not the snippet's to bound
            self.layers.cgroup.set_limit_mb(limits.memory_mb if limits.device == "cpu" else None)
            if self.layers.fresh_tmpfs:
                self.temp_mb = max(1, limits.memory_mb // TEMP_SHARE_OF_MEMORY)
                isolation.resize_private_temp(self.temp_mb)
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
        return Submission(
            runner, limits, start, result_r, output_r, status_r, scratch, self.layers.wipe_on_fork
        )

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
        oom_killed = self.layers.cgroup is not None and self.layers.cgroup.new_oom_kill()
        if oom_killed and not complete:
            kill_reason = kill_reason or (
                "memory_limit", f"memory limit of {limits.memory_mb} MB exceeded"
            )
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
        if sub.result.size:
            return Outcome("invalid_output", "the snippet's results could not be read (cut short)")
        return Outcome(*_judge(wait_status, cpu, limits))

    def respond(self, sub: Submission, outcome: Outcome) -> None:
        """Answer the grader (every process of the submission is already gone); files and IPC
        objects are wiped afterwards, while the grader reads and checks."""
        payload = sub.result.view(4) if outcome.status == "ok" else sub.result.view(0)[:0]
        output = sub.output.view()
        frames.write_json(
            self.proto_out,
            {
                "status": outcome.status,
                "reason": outcome.reason,
                "wall_s": round(time.monotonic() - sub.start, 4),
                "output_total": sub.output.total,
            },
        )
        try:
            frames.write_frame(self.proto_out, payload)
            frames.write_frame(self.proto_out, output)
        finally:
            payload.release()
            output.release()

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
        if self.layers.fresh_tmpfs:
            isolation.renew_private_temp(self.temp_mb)
        elif self.layers.mounts:
            for folder in isolation.PRIVATE_TEMP:
                if folder.is_dir():
                    isolation.wipe(folder)
        if self.layers.mounts and not self.layers.answer_ipc:
            isolation.remove_sysv_ipc()
        else:
            shutil.rmtree(scratch, ignore_errors=True)

    # ------------------------------------------------------------------ in the child

    def run_snippet(
        self, limits: SnippetLimits, result_w: int, output_w: int, status_w: int, scratch: Path
    ) -> None:  # pragma: no cover - runs in the child
        """The runner: read the submission, confine this process, then execute it."""
        isolation.set_parent_death_signal()
        if self.layers.answer_ipc:  # gone with the answer's last process, objects and all
            isolation.unshare(isolation.CLONE_NEWIPC)
        if self.layers.cgroup is not None:
            set_oom_score_adjustment(1000)  # the worker's -1000 is inherited
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
        if self.syscall_filter is not None:
            self.syscall_filter.install()
        os.environ.clear()
        os.environ.update(MINIMAL_ENV, HOME=str(scratch), TMPDIR=str(scratch))
        _fresh_stdio()
        _execute(body, limits.device, limits.mode)


def _fresh_stdio() -> None:  # pragma: no cover - runs in the child
    sys.stdin = open(0, closefd=False)
    for name, fd in (("stdout", 1), ("stderr", 2)):
        stream = open(
            fd, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False
        )
        setattr(sys, name, stream)


def _execute(body: bytes, device: str, mode: str) -> None:  # pragma: no cover - runs in the child
    """Decode, run (or capture, or measure), encode, send; any failure after this point is the
    snippet's doing (or, measuring, the program's)."""
    from vaequiz.grading.sandbox import wire

    stdout, stderr = sys.stdout, sys.stderr
    if mode == "measure":
        from vaequiz.grading.sandbox.program_run import measure_request

        document = measure_request(body, device)
    else:
        request = wire.decode(body, device=device, restore_grad=True)
        if mode == "capture":
            from vaequiz.grading.sandbox.program import capture_runs

            document = capture_runs(request, device)
        else:
            from vaequiz.grading.sandbox import runner

            document = runner.execute(request, device)
    del body
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
    length = sink.frame_length()
    return length is not None and sink.size >= 4 + length


def _read_into(fd: int, buffer: mmap.mmap | bytearray) -> memoryview:
    """One read into the worker's reusable buffer (zeroed after each submission), so a
    snippet's bytes never linger in freed heap memory that the next child inherits."""
    count = os.readv(fd, [buffer])
    return memoryview(buffer)[:count]


def _drain(fd: int, sink: Sink, buffer: mmap.mmap | bytearray) -> None:
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
