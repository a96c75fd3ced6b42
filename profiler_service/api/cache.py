"""A small cache of rendered response bodies, keyed by content version (a table's ETag)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable


class RenderCache:
    """Least recently used, a few entries: the tables a fleet is pulling now. A new ETag is a new key, so a
    changed table is never served stale."""

    def __init__(self, max_entries: int = 8):
        self.max_entries = max_entries
        self._items: OrderedDict[Hashable, str | bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get_or_render(self, key: Hashable, render: Callable[[], str | bytes]) -> str | bytes:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        body = render()  # outside the lock: two first pulls may both render, the result is the same
        with self._lock:
            self._items[key] = body
            self._items.move_to_end(key)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)
        return body
