"""Per-snippet sandbox overhead: warm-worker fork path against a fresh interpreter per snippet.

Both sides run the same trivial snippet (``z = mu + 0``) on the same input, in the same run, so
the ratio holds on any machine. Usage::

    python bench/bench_sandbox.py [--snippets 200] [--naive 6] [--workers N] [--rounds 3]

Prints snippets/s and ms/snippet for: the naive baseline (``python -c`` importing torch per
snippet), one warm worker used sequentially (latency, the overhead per snippet), and the whole
pool driven by as many threads as workers (throughput); then the ratios. A request without
probes is values only (one child per snippet); the same snippet with a gradient probe goes
through the program path (a capturing child and a measuring child), measured with the
measurement memo off so that every snippet pays for both. Last, the cost of the isolation
layers that can be switched off: the pool's throughput on the probed snippet with every layer
against the previous layer set (those layers off), alternated over ``--rounds`` rounds in one
run, reported as a ratio (the best round of each, as the machine may be shared).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vaequiz.grading.sandbox import ProbeRequest, RunRequest, Sandbox, SandboxRequest  # noqa: E402
from vaequiz.grading.sandbox.worker import SWITCHABLE_LAYERS  # noqa: E402

SNIPPET = "z = mu + 0"
NAIVE_PROGRAM = "import torch\ntorch.manual_seed(0)\nmu = torch.randn(64, 20)\n" + SNIPPET


def naive(count: int) -> float:
    """Seconds per snippet when every snippet starts its own interpreter and imports torch."""
    start = time.perf_counter()
    for _ in range(count):
        subprocess.run([sys.executable, "-c", NAIVE_PROGRAM], check=True)
    return (time.perf_counter() - start) / count


def request(probed: bool = False) -> SandboxRequest:
    """The trivial snippet; ``probed``: with a gradient probe, so it goes through the program path."""
    probes = (ProbeRequest(kind="grad", target="z", wrt=("mu",)),) if probed else ()
    return SandboxRequest(
        source=SNIPPET,
        expect=("z",),
        runs=(RunRequest(seed=0, given={"mu": torch.randn(64, 20, requires_grad=probed)}, probes=probes),),
    )


def sandboxed(sandbox: Sandbox, count: int, threads: int, probed: bool = False) -> tuple[float, float]:
    """(seconds per snippet over the batch, median worker-measured wall per snippet)."""
    req = request(probed)
    for _ in range(threads * 3):  # warm every worker
        assert sandbox.run(req).status == "ok"
    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(lambda _: sandbox.run(req), range(count)))
    elapsed = time.perf_counter() - start
    assert all(r.status == "ok" for r in results), {r.status for r in results}
    return elapsed / count, statistics.median(r.wall_s for r in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snippets", type=int, default=200)
    parser.add_argument("--naive", type=int, default=6)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}")
    naive_s = naive(args.naive)
    with Sandbox(workers=1, memo_mb=0) as single:
        latency_s, worker_wall = sandboxed(single, args.snippets, threads=1)
        probed_latency_s, _ = sandboxed(single, args.snippets, threads=1, probed=True)
    with Sandbox(workers=args.workers, memo_mb=0) as pool:
        throughput_s, _ = sandboxed(pool, args.snippets, threads=args.workers)
        probed_throughput_s, _ = sandboxed(pool, args.snippets, threads=args.workers, probed=True)

    rows = [
        ("naive: fresh interpreter per snippet", naive_s),
        ("sandbox: 1 warm worker, sequential", latency_s),
        (f"sandbox: {args.workers} warm workers, {args.workers} threads", throughput_s),
        ("probed: 1 warm worker, sequential", probed_latency_s),
        (f"probed: {args.workers} warm workers, {args.workers} threads", probed_throughput_s),
    ]
    for name, seconds in rows:
        print(f"{name:<45} {1 / seconds:8.1f} snippets/s {seconds * 1000:9.1f} ms/snippet")
    print(
        f"{'inside the worker, fork to answer (median)':<45} {worker_wall * 1000:30.1f} ms/snippet"
    )
    print(f"ratio, sequential vs naive: {naive_s / latency_s:6.1f}x (probed {naive_s / probed_latency_s:.1f}x)")
    print(f"ratio, pool vs naive:       {naive_s / throughput_s:6.1f}x (probed {naive_s / probed_throughput_s:.1f}x)")
    compare_layers(args.workers, args.snippets, args.rounds)


def compare_layers(workers: int, count: int, rounds: int) -> None:
    """Pool throughput on the probed snippet with every layer on against the previous set
    (switchable layers off, the program path among them)."""
    settings = {"previous layers": list(SWITCHABLE_LAYERS), "all layers": []}
    best: dict[str, float] = {}
    with Sandbox(workers=workers, layers_off=settings["previous layers"], memo_mb=0) as previous, Sandbox(
        workers=workers, layers_off=settings["all layers"], memo_mb=0
    ) as current:
        pools = {"previous layers": previous, "all layers": current}
        for _ in range(rounds):
            for name, pool in pools.items():
                seconds, _ = sandboxed(pool, count, threads=workers, probed=True)
                best[name] = min(best.get(name, seconds), seconds)
    print(f"switchable layers: {', '.join(SWITCHABLE_LAYERS)}")
    for name, seconds in best.items():
        print(f"{name + f', {workers} workers':<45} {1 / seconds:8.1f} snippets/s")
    ratio = best["previous layers"] / best["all layers"]
    print(f"ratio, all layers vs previous layers (throughput): {ratio:5.2f}")


if __name__ == "__main__":
    main()
