"""A small LRU cache shared by the video frame/feature caches and the server's caches."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable


class LRU:
    """A thread-safe LRU bounded by entry count and (optionally) by total bytes."""

    def __init__(self, max_entries: int, max_bytes: int | None = None) -> None:
        self.max_entries, self.max_bytes = max(1, max_entries), max_bytes
        self._d: OrderedDict[Hashable, tuple[object, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable):
        with self._lock:
            item = self._d.get(key)
            if item is None:
                return None
            self._d.move_to_end(key)
            return item[0]

    def put(self, key: Hashable, value, nbytes: int = 0) -> None:
        with self._lock:
            if key in self._d:
                self._bytes -= self._d.pop(key)[1]
            self._d[key] = (value, nbytes)
            self._bytes += nbytes
            while len(self._d) > self.max_entries or (
                self.max_bytes and self._bytes > self.max_bytes and len(self._d) > 1
            ):
                _, (_, b) = self._d.popitem(last=False)
                self._bytes -= b

    def get_or_create(self, key: Hashable, make: Callable[[], object], nbytes: int = 0):
        """The cached value, or ``make()`` stored under ``key`` (made outside the lock)."""
        value = self.get(key)
        if value is None:
            value = make()
            self.put(key, value, nbytes)
        return value

    def __len__(self) -> int:
        return len(self._d)

    @property
    def nbytes(self) -> int:
        return self._bytes
