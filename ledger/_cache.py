"""Small in-memory caches of unwrapped data keys: bounded, and every entry forgotten a
fixed time after it was put, so no key stays in memory long after its last use."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Generic, TypeVar

__all__ = ["TimedCache"]

K = TypeVar("K")
V = TypeVar("V")


class TimedCache(Generic[K, V]):
    """At most ``size`` entries (least recently put dropped first), each forgotten ``ttl``
    seconds after it was put, at the cache's next use. Thread-safe."""

    def __init__(self, size: int = 4096, ttl: float = 30.0) -> None:
        self._size = size
        self._ttl = ttl
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self._size}, held={len(self._entries)})"

    def get(self, key: K) -> V | None:
        with self._lock:
            self._expire(time.monotonic())
            held = self._entries.get(key)
            return None if held is None else held[1]

    def put(self, key: K, value: V) -> None:
        now = time.monotonic()
        with self._lock:
            self._expire(now)
            self._entries[key] = (now + self._ttl, value)
            self._entries.move_to_end(key)
            if len(self._entries) > self._size:
                self._entries.popitem(last=False)

    def drop(self, key: K) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def _expire(self, now: float) -> None:
        """Forget entries older than the time limit (oldest first: all share one limit)."""
        while self._entries:
            expires, _ = next(iter(self._entries.values()))
            if expires > now:
                return
            self._entries.popitem(last=False)
