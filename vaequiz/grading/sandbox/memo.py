"""Measurements kept by what was measured: a program handed over again is not measured again.

A measuring child's answer is a function of what it reads (the hidden inputs, seeds and probes,
and the programs the capture handed over) and of its limits; it never sees the student's source.
So the grader keeps each complete measurement under the SHA-256 of exactly those bytes, and an
answer whose programs are byte for byte ones measured before (the same computation, whatever its
variable names, comments or layout: in a class, most right answers and the common mistakes)
gets that measurement without a second child. Nothing from the snippet's side is believed
here: the key is computed in the grader from the bytes the measuring child would read, and the
value is what a measuring child answered for those bytes.

Only complete measurements are kept (not a refusal, an uncapturable run, or a child stopped by
a limit), the memo is bounded in bytes (least recently used first out), and it lives as long as
its sandbox: one ``grade-sheets`` run, or one ``vaequiz serve`` or ``vaequiz worker`` process.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from typing import Any

DEFAULT_MEMO_MB = 64
"""Measurements kept per sandbox: a light answer's is a few KB, a decoder's about 60 KB."""


class MeasurementMemo:
    """Complete measurements by the SHA-256 of what was measured; thread-safe."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = max(0, limit_bytes)
        self.hits = 0
        self.misses = 0
        self._kept: OrderedDict[bytes, bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    @staticmethod
    def key(control: dict[str, Any], body: bytes) -> bytes:
        """What identifies a measurement: the limits it ran under and the bytes it read."""
        digest = hashlib.sha256(json.dumps(control, sort_keys=True).encode())
        digest.update(len(body).to_bytes(8, "little"))
        digest.update(body)
        return digest.digest()

    def get(self, key: bytes) -> bytes | None:
        if not self.limit_bytes:
            return None
        with self._lock:
            found = self._kept.get(key)
            if found is None:
                self.misses += 1
                return None
            self._kept.move_to_end(key)
            self.hits += 1
            return found

    def put(self, key: bytes, measurement: bytes) -> None:
        if len(measurement) > self.limit_bytes // 8:  # one huge answer must not flush the rest
            return
        with self._lock:
            if key in self._kept:
                return
            self._kept[key] = measurement
            self._size += len(measurement)
            while self._size > self.limit_bytes:
                _, dropped = self._kept.popitem(last=False)
                self._size -= len(dropped)

    def clear(self) -> None:
        """Forget every measurement and reset the counters (benchmarks: a fresh class)."""
        with self._lock:
            self._kept.clear()
            self._size = 0
            self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._kept)
