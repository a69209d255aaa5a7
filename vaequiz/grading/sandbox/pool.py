"""The grader's side of the sandbox: a pool of warm workers behind one thread-safe ``run``.

This process is trusted and never runs student code. It encodes each request (hidden inputs
only, never the key), hands it to a free worker, and decodes the answer strictly. A worker
that dies or stops answering is replaced transparently; the request it held is retried once.
"""

from __future__ import annotations

import itertools
import os
import queue
import select
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable

import torch

import vaequiz
from vaequiz.grading.sandbox import cgroups, frames, program_run, wire
from vaequiz.grading.sandbox.memo import DEFAULT_MEMO_MB, MeasurementMemo
from vaequiz.identity import ByIdentity
from vaequiz.grading.sandbox.api import (
    ModuleSummary,
    OpaqueValue,
    RunOutcome,
    SandboxRequest,
    SandboxResult,
    SandboxUnavailable,
)

MAX_SOURCE_BYTES = 256 * 1024
"""Longest snippet accepted; longer sources are rejected before anything is forked."""
GRACE_S = 15.0
"""How long past a request's own time limit the grader waits for a worker before replacing it."""
START_TIMEOUT_S = 120.0
SLOT_UID_BASE = 100_000
"""Snippets run as uids from here on, one per worker slot, never shared by two sandboxes."""
LAYERS_OFF_VARIABLE = "VAEQUIZ_SANDBOX_OFF"
"""Comma-separated layers to leave off, for benchmarks and for tests that show a layer matters."""
_instances = itertools.count()
_PACKAGE_ROOT = Path(vaequiz.__file__).resolve().parent
_IMPORT_ROOT = _PACKAGE_ROOT.parent


def default_hidden_paths() -> list[Path]:
    """What no snippet may read: the bundled bank and reference code, and the project checkout."""
    from vaequiz import paths

    hidden = [paths.bundled_bank(), _PACKAGE_ROOT / "_data"]
    try:
        hidden.append(paths.reference_impl_dir())
    except ImportError:
        pass
    if (_IMPORT_ROOT / "pyproject.toml").is_file():
        hidden.append(_IMPORT_ROOT)
    return hidden


def source_problem(source: str | bytes) -> str | None:
    """Why a source is refused before it reaches a worker (too large, not UTF-8), or None."""
    if isinstance(source, str):
        try:
            data = source.encode("utf-8")
        except UnicodeEncodeError:
            return "the source is not valid UTF-8 text"
    else:
        data = bytes(source)
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as err:
            return f"the source is not valid UTF-8 text (byte {err.start})"
    if len(data) > MAX_SOURCE_BYTES:
        return (
            f"the source is {len(data) / 1024:.0f} KB; the limit is {MAX_SOURCE_BYTES // 1024} KB"
        )
    if b"\0" in data:
        return "the source contains NUL bytes"
    return None


class WorkerLost(RuntimeError):
    """The worker process died or stopped answering (never a snippet's direct doing)."""


class _Worker:
    """One warm worker process and the pipes to it."""

    def __init__(self, slot: int, settings: dict[str, Any]) -> None:
        self.slot = slot
        self.settings = settings
        self.log = tempfile.TemporaryFile()
        env = dict(
            PATH=os.environ.get("PATH", "/usr/bin:/bin"),
            LANG="C.UTF-8",
            HOME="/nonexistent",
            OMP_NUM_THREADS="1",
            MKL_NUM_THREADS="1",
        )
        if "CUDA_VISIBLE_DEVICES" in os.environ:
            env["CUDA_VISIBLE_DEVICES"] = os.environ["CUDA_VISIBLE_DEVICES"]
        self.process = subprocess.Popen(
            [sys.executable, "-E", "-s", "-m", "vaequiz.grading.sandbox.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            env=env,
            cwd=_IMPORT_ROOT,
            close_fds=True,
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self.to_worker = self.process.stdin.fileno()
        self.from_worker = self.process.stdout.fileno()
        for fd in (self.to_worker, self.from_worker):
            frames.widen_pipe(fd)
        frames.write_json(self.to_worker, settings)
        self.hardening: list[str] = []
        self.in_flight = False
        """True between sending a request and reading its whole answer; a worker left so by an
        interrupted call (KeyboardInterrupt) is out of step and gets replaced on next use."""

    def ready(self, timeout: float = START_TIMEOUT_S) -> None:
        hello = self._read(timeout, lambda fd: frames.read_json(fd))
        self.hardening = list(hello["hardening"])

    def _read(self, timeout: float, reader: Any) -> Any:
        readable, _, _ = select.select([self.from_worker], [], [], timeout)
        if not readable:
            raise WorkerLost(f"worker {self.slot} did not answer within {timeout:.0f} s")
        try:
            return reader(self.from_worker)
        except (frames.FrameError, OSError, ValueError) as err:
            raise WorkerLost(f"worker {self.slot} broke off: {err}; {self.stderr_tail()}") from None

    def stderr_tail(self) -> str:
        self.log.seek(0)
        return self.log.read()[-2000:].decode(errors="replace").strip()

    def call(
        self, control: dict[str, Any], body: bytes, timeout: float
    ) -> tuple[dict, bytes, bytes]:
        if self.in_flight:
            raise WorkerLost(f"worker {self.slot} still owes an answer to an interrupted call")
        self.in_flight = True
        try:
            frames.write_json(self.to_worker, control)
            frames.write_frame(self.to_worker, body)
        except OSError as err:
            raise WorkerLost(f"worker {self.slot} is gone: {err}") from None
        deadline = time.monotonic() + timeout
        head = self._read(timeout, frames.read_json)
        left = max(1.0, deadline - time.monotonic())
        result = self._read(left, lambda fd: frames.read_frame(fd, wire.DEFAULT_MAX_BYTES))
        output = self._read(left, lambda fd: frames.read_frame(fd, 64 * 1024 * 1024))
        self.in_flight = False
        return head, result, output

    def stop(self) -> None:
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()  # type: ignore[union-attr]
            except OSError:
                pass
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()
        cgroups.remove(cgroups.worker_cgroup_name(self.settings.get("uid")))


class Sandbox:
    """Runs untrusted snippets in forked, confined children of warm torch workers.

    Use as a context manager. ``run`` may be called from several threads at once; each call
    borrows one worker (one per slot, ``workers`` in all). ``device`` is the default device
    for requests ("cuda" in either the sandbox or the request wins). ``hide_paths`` are made
    unreadable to snippets, on top of the bank, reference code and checkout. ``memo_mb``
    bounds the measurements kept for answers whose programs come again (:mod:`.memo`; 0: none).
    """

    def __init__(
        self,
        workers: int | None = None,
        device: str = "cpu",
        hide_paths: Sequence[Path] = (),
        *,
        namespaces: bool | None = None,
        layers_off: Sequence[str] | None = None,
        memo_mb: int = DEFAULT_MEMO_MB,
    ) -> None:
        if device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', not {device!r}")
        if device == "cuda" and not torch.cuda.is_available():
            raise SandboxUnavailable("device 'cuda' needs a CUDA device, and none is available")
        count = workers if workers is not None else (os.cpu_count() or 1)
        if not 1 <= count <= 256:
            raise ValueError(f"workers must be between 1 and 256, not {count}")
        self.device = device
        block = (os.getpid() % 1_000_000) * 4 + next(_instances) % 4
        self.slot_uids = range(SLOT_UID_BASE + 256 * block, SLOT_UID_BASE + 256 * block + count)
        """The uids snippets run as (one per worker slot), where the machine allows it."""
        self._hide = [str(Path(p).resolve()) for p in [*default_hidden_paths(), *hide_paths]]
        self._namespaces = namespaces
        self._layers_off = _checked_layers_off(layers_off)
        self.measurements = MeasurementMemo(memo_mb * 2**20)
        """Complete measurements by what was measured; ``hits`` counts second children saved."""
        self._lock = threading.Lock()
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._all: list[_Worker] = []
        self._closed = False
        started = [self._spawn(slot) for slot in range(count)]
        try:
            for worker in started:
                worker.ready()
        except WorkerLost as err:
            for worker in started:
                worker.stop()
            raise SandboxUnavailable(str(err)) from None
        self._hardening = started[0].hardening
        for worker in started:
            self._idle.put(worker)
        weakref.finalize(self, _stop_all, self._all)

    def _spawn(self, slot: int) -> _Worker:
        settings = {
            "uid": self.slot_uids[slot],
            "hide": self._hide,
            "namespaces": self._namespaces,
            "import_path": [p for p in sys.path if p],
            "off": self._layers_off,
        }
        worker = _Worker(slot, settings)
        with self._lock:
            self._all.append(worker)
        return worker

    def _replace(self, worker: _Worker) -> _Worker:
        """A fresh worker for ``worker``'s slot. Never raises: one that fails to start is
        returned dead, and is replaced again when it is next taken."""
        worker.process.kill()
        worker.stop()
        with self._lock:
            if worker in self._all:
                self._all.remove(worker)
        fresh = self._spawn(worker.slot)
        try:
            fresh.ready()
        except WorkerLost:
            fresh.process.kill()
            fresh.process.wait()
        return fresh

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop every worker (they exit when their pipe closes)."""
        self._closed = True
        with self._lock:
            workers = list(self._all)
            self._all.clear()
        _stop_all(workers)

    def hardening(self) -> list[str]:
        """One line per isolation layer: which are active and which are unavailable, and why."""
        lines = list(self._hardening)
        lines.append(
            "measurements from programs, in a fresh child that runs no student Python (probes "
            "never measured in the snippet's process): "
            + ("unavailable (switched off)" if "program" in self._layers_off else "active")
        )
        if self.device == "cuda":
            lines.append(
                "memory limit on CUDA: unavailable (CUDA reserves more address space than "
                "RLIMIT_AS could allow); time, CPU and process limits still apply"
            )
        return lines

    # ------------------------------------------------------------------ running

    def run(self, request: SandboxRequest) -> SandboxResult:
        """Run every run of ``request`` in one confined child; never raises for a snippet's sake."""
        problem = source_problem(request.source)
        if problem:
            return SandboxResult(status="source_rejected", reason=problem)
        if self._closed:
            raise SandboxUnavailable("the sandbox is closed")
        device = "cuda" if "cuda" in (self.device, request.device) else "cpu"
        if device == "cuda" and self.device != "cuda" and not torch.cuda.is_available():
            return SandboxResult(status="sandbox_error", reason="no CUDA device is available")
        source = request.source if isinstance(request.source, str) else request.source.decode()
        body = _request_body(request, source)
        limits = request.limits
        control = {
            "time_s": limits.time_s,
            "cpu_s": limits.cpu_s or limits.time_s,
            "memory_mb": limits.memory_mb,
            "processes": limits.processes,
            "output_kb": limits.output_kb,
            "file_mb": limits.file_mb,
            "device": device,
        }
        if "program" in self._layers_off:
            result = self._in_process(control, body, request, device)
            if result.status == "ok":
                result.in_process = f"{IN_PROCESS}: the program path is switched off"
            return result
        if not any(run.probes for run in request.runs):
            # Values only: the grader checks them here, and forging a right value means
            # computing it (see _without_probes); a program would add a child and nothing else.
            return self._in_process(control, body, request, device)
        return self._through_program(control, body, request, device)

    def _in_process(
        self, control: dict[str, Any], body: bytes, request: SandboxRequest, device: str
    ) -> SandboxResult:
        """One child runs the snippet and reports what it bound, and what its probes found."""
        answer = self._exchange({**control, "mode": "execute"}, body, request.limits.time_s)
        if isinstance(answer, SandboxResult):
            return answer
        return _result(*answer, request, device)

    def _through_program(
        self, control: dict[str, Any], body: bytes, request: SandboxRequest, device: str
    ) -> SandboxResult:
        """Capture in one child, measure in another that runs no student Python.

        The snippet's child hands over one program per run; a fresh child of a worker, under the
        same limits, decodes and replays them on its own copy of the hidden inputs and takes
        every measurement. Where the snippet cannot be captured, its values are measured in its
        own process (labelled) and its probes are not measured at all: a snippet that makes
        itself uncapturable gains nothing a probe decides.
        """
        captured = self._exchange({**control, "mode": "capture"}, body, request.limits.time_s)
        if isinstance(captured, SandboxResult):
            return captured
        head, payload, output = captured
        if head.get("status") != "ok":
            return _result(head, payload, output, request, device)
        text = _output_text(output, int(head.get("output_total", 0)), request.limits.output_kb)
        wall = float(head.get("wall_s", 0.0))
        # the measuring child never sees the source: what it reads is all that decides its answer
        measure_body = program_run.measure_body(_request_body(request, ""), payload)
        del payload
        measuring = {**control, "mode": "measure"}
        key = MeasurementMemo.key(measuring, measure_body)
        m_payload = self.measurements.get(key)
        if m_payload is None:
            measured = self._exchange(measuring, measure_body, request.limits.time_s)
            if isinstance(measured, SandboxResult):
                measured.output = text
                return measured
            m_head, m_payload, _ = measured
            wall += float(m_head.get("wall_s", 0.0))
        else:
            m_head = {"status": "ok"}
        if m_head.get("status") != "ok":
            reason = str(m_head.get("reason", "")) or str(m_head.get("status"))
            return SandboxResult(
                status="not_measured",
                reason=f"could not measure: {reason} while measuring your code's program",
                output=text,
                wall_s=wall,
            )
        try:
            document = wire.decode(m_payload, device=device)
            if not isinstance(document, dict) or not {"unsupported", "refused"} <= set(document):
                raise wire.WireError("the measurement is not a document")
            unsupported, refused = document.pop("unsupported"), document.pop("refused")
            if refused is None and unsupported is None:
                runs, memory_exceeded = _outcomes(document, len(request.runs))
        except wire.WireError as err:
            return SandboxResult(
                status="not_measured", reason=f"could not measure: {err}", output=text, wall_s=wall
            )
        if refused is None and unsupported is None:
            self.measurements.put(key, m_payload)
        if refused is not None:
            return SandboxResult(status="not_measured", reason=str(refused)[:400], output=text, wall_s=wall)
        if unsupported is not None:
            result = self._in_process(control, body, request, device)
            result.wall_s += wall
            if result.status == "ok":
                result.in_process = f"{IN_PROCESS}: {str(unsupported)[:300]}"
                _without_probes(result, request, str(unsupported)[:300])
            return result
        return _measured(runs, memory_exceeded, text, wall, request)

    def _exchange(
        self, control: dict[str, Any], body: bytes, time_s: float
    ) -> tuple[dict, bytes, bytes] | SandboxResult:
        """One child's answer from a free worker: (head, results, output); a worker that is lost
        is replaced and the exchange retried once."""
        for attempt in (1, 2):
            worker = self._idle.get()
            try:
                if worker.process.poll() is not None:  # died while idle: replace before use
                    worker = self._replace(worker)
                return worker.call(control, body, time_s + GRACE_S)
            except WorkerLost as err:
                worker = self._replace(worker)
                if attempt == 2:
                    return SandboxResult(status="sandbox_error", reason=str(err))
                continue
            finally:
                self._idle.put(worker)
        raise AssertionError("unreachable")


IN_PROCESS = "measured in-process"
"""How a result measured in the snippet's own process is labelled (results, feedback, CLI)."""


_TEMPLATES: ByIdentity[Callable[[str], bytes]] = ByIdentity()


def _request_body(request: SandboxRequest, source: str) -> bytes:
    """What a child reads: the source, the names to bind, and each run's inputs and probes.

    The runs are encoded once per runs tuple (every answer to a question shares one, see
    ``PreparedQuestion.request``) and each answer's source is written into that template.
    """

    def template() -> Callable[[str], bytes]:
        doc = {
            "source": "",
            "expect": list(request.expect),
            "runs": [
                {"seed": run.seed, "given": dict(run.given), "probes": [probe_doc(p) for p in run.probes]}
                for run in request.runs
            ],
        }
        return wire.text_template(doc, "source", keep_grad=True)

    return _TEMPLATES.get(request.runs, template, tuple(request.expect))(source)


def _without_probes(result: SandboxResult, request: SandboxRequest, why: str) -> None:
    """Drop what probes measured in the snippet's process: each probe reads "could not measure".

    Values a snippet binds are harmless to forge (forging a right value means computing it);
    a probe's finding (a gradient, a module's call or fit) is not, so it is never taken from
    the process that ran the snippet while the program path is on.
    """
    message = f"could not measure outside your code's process: {why}"
    for run, outcome in zip(request.runs, result.runs):
        for probe in run.probes:
            names = [f"grad__{probe.target}__{w}" for w in probe.wrt] if probe.kind == "grad" else [probe.as_]
            for name in names:
                outcome.outputs.pop(name, None)
                outcome.probe_errors[name] = message


def _checked_layers_off(names: Sequence[str] | None) -> list[str]:
    """The layers to leave off: ``names``, else those in ``$VAEQUIZ_SANDBOX_OFF``; all known."""
    from vaequiz.grading.sandbox.worker import SWITCHABLE_LAYERS

    if names is None:
        names = [n.strip() for n in os.environ.get(LAYERS_OFF_VARIABLE, "").split(",") if n.strip()]
    unknown = sorted(set(names) - set(SWITCHABLE_LAYERS))
    if unknown:
        raise SandboxUnavailable(
            f"unknown layer(s) {', '.join(unknown)} in {LAYERS_OFF_VARIABLE}; "
            f"known: {', '.join(SWITCHABLE_LAYERS)}"
        )
    return list(names)


def _stop_all(workers: list[_Worker]) -> None:
    """Stop workers; also run when a sandbox is garbage-collected or the grader exits unclosed."""
    for worker in list(workers):
        worker.stop()
    workers.clear()


def probe_doc(probe: Any) -> dict[str, Any]:
    """A probe in the form the runner reads (one definition, for the sandbox, tests and benches)."""
    return {
        "kind": probe.kind,
        "target": probe.target,
        "wrt": list(probe.wrt),
        "args": list(probe.args),
        "as_": probe.as_,
        "loss": probe.loss,
        "steps": probe.steps,
        "lr": probe.lr,
        "train_mode": probe.train_mode,
        "stop_below": probe.stop_below,
    }


def _output_text(output: bytes, total: int, limit_kb: int) -> str:
    text = output.decode("utf-8", errors="replace")
    if total > len(output):
        text += f"\n[output cut at {limit_kb} KB]"
    return text


def _result(
    head: dict[str, Any], payload: bytes, output: bytes, request: SandboxRequest, device: str
) -> SandboxResult:
    """Decode the worker's answer strictly into a :class:`SandboxResult`."""
    status = head.get("status", "sandbox_error")
    reason = str(head.get("reason", ""))
    text = _output_text(output, int(head.get("output_total", 0)), request.limits.output_kb)
    wall = float(head.get("wall_s", 0.0))
    if status != "ok":
        return SandboxResult(status=status, reason=reason, output=text, wall_s=wall)
    try:
        document = wire.decode(payload, device=device)
        runs, memory_exceeded = _outcomes(document, len(request.runs))
    except wire.WireError as err:
        return SandboxResult(
            status="invalid_output",
            reason=f"the snippet's results could not be read: {err}",
            output=text,
            wall_s=wall,
        )
    return _measured(runs, memory_exceeded, text, wall, request)


def _measured(
    runs: list[RunOutcome], memory_exceeded: bool, text: str, wall: float, request: SandboxRequest
) -> SandboxResult:
    """The result of runs measured in full, whichever process measured them."""
    if memory_exceeded:
        return SandboxResult(
            status="memory_limit",
            reason=f"memory limit of {request.limits.memory_mb} MB exceeded",
            runs=runs,
            output=text,
            wall_s=wall,
        )
    return SandboxResult(status="ok", reason="", runs=runs, output=text, wall_s=wall)


def _is_value(value: Any) -> bool:
    return value is None or isinstance(
        value, (torch.Tensor, bool, int, float, ModuleSummary, OpaqueValue)
    )


def _outcomes(document: Any, expected_runs: int) -> tuple[list[RunOutcome], bool]:
    """Check the decoded document's structure and build the run outcomes."""
    if not isinstance(document, dict):
        raise wire.WireError("results are not a document")
    if "encode_error" in document:
        raise wire.WireError(f"the values could not be encoded ({document['encode_error']})")
    runs = document.get("runs")
    if not isinstance(runs, list) or len(runs) != expected_runs:
        raise wire.WireError(f"expected {expected_runs} run results")
    outcomes = []
    for run in runs:
        if not isinstance(run, dict) or set(run) != {"outputs", "missing", "error", "probe_errors"}:
            raise wire.WireError("a run result has the wrong fields")
        outputs, missing, error, probe_errors = (
            run["outputs"],
            run["missing"],
            run["error"],
            run["probe_errors"],
        )
        if not isinstance(outputs, dict):
            raise wire.WireError("'outputs' must map names to values")
        outputs = {
            k: v if _is_value(v) else OpaqueValue(type(v).__name__) for k, v in outputs.items()
        }
        if not isinstance(missing, list) or not all(isinstance(m, str) for m in missing):
            raise wire.WireError("'missing' must be a list of names")
        if error is not None and not isinstance(error, str):
            raise wire.WireError("'error' must be text")
        if not isinstance(probe_errors, dict) or not all(
            isinstance(v, str) for v in probe_errors.values()
        ):
            raise wire.WireError("'probe_errors' must map names to text")
        outcomes.append(
            RunOutcome(
                outputs=dict(outputs),
                missing=tuple(missing),
                error=error,
                probe_errors=dict(probe_errors),
            )
        )
    memory = document.get("memory_exceeded", False)
    return outcomes, memory is True
