"""Values computed once per object (by identity), for objects that are shared and never change.

A question's row index of an embedding table, a question's encoded runs: each is derived from an
object every answer shares, so it is kept under the object's ``id``. The entry holds the object
itself, so its id cannot be reused by another object while the entry lives; the cache is small
and starts over when full (the objects of one grading run are few).
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Generic, Hashable, TypeVar

Made = TypeVar("Made")


class ByIdentity(Generic[Made]):
    """``made(obj)`` computed once per (object, extra key); thread-safe."""

    def __init__(self, limit: int = 64) -> None:
        self.limit = limit
        self._entries: dict[tuple[Hashable, ...], tuple[Any, Made]] = {}
        self._lock = threading.Lock()

    def get(self, obj: Any, make: Callable[[], Made], *extra: Hashable) -> Made:
        key = (id(obj), *extra)
        with self._lock:
            entry = self._entries.get(key)
        if entry is not None and entry[0] is obj:
            return entry[1]
        made = make()
        with self._lock:
            if len(self._entries) >= self.limit:
                self._entries.clear()
            self._entries[key] = (obj, made)
        return made
