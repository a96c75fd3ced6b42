"""A small cache of what is derived from a table's content (rendered bodies, the lookup index), keyed by
the content's version (the table's ETag)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class RenderCache(Generic[T]):
    """Least recently used, a few entries: the tables a fleet is pulling now. Keys are
    ``(table_id, version, *variant)``: a new version is a new key, so a changed table is never served
    stale, and storing it drops the older versions of that table (dead: nothing asks for them again).

    A missing body is rendered once however many requests want it at the same moment (single flight):
    a fleet of clients starting together pulls the same table, and ten concurrent first pulls each
    rendering a 10,000-entry table took the core for seconds (lookup p99 106 ms at 10 clients in
    ``bench/api_load.py``)."""

    def __init__(self, max_entries: int = 16):
        self.max_entries = max_entries
        self._items: OrderedDict[tuple, T] = OrderedDict()
        self._lock = threading.Lock()
        self._rendering: dict[tuple, threading.Lock] = {}
        self.renders = 0  # how many times a body was rendered (tests check the single flight)

    def _get(self, key: tuple) -> T | None:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            return None

    def get_or_render(self, key: tuple, render: Callable[[], T]) -> T:
        body = self._get(key)
        if body is not None:
            return body
        with self._lock:
            flight = self._rendering.setdefault(key, threading.Lock())
        with flight:  # the first caller renders; the others wait here, then find its body
            body = self._get(key)
            if body is not None:
                return body
            try:
                body = render()
                with self._lock:
                    self.renders += 1
                    for old in [k for k in self._items if k[0] == key[0] and k[1] != key[1]]:
                        del self._items[old]
                    self._items[key] = body
                    self._items.move_to_end(key)
                    while len(self._items) > self.max_entries:
                        self._items.popitem(last=False)
            finally:
                with self._lock:
                    self._rendering.pop(key, None)
        return body
