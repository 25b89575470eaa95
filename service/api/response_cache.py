"""The response cache's store: a thread-safe LRU of rendered answers bounded in entries and
bytes (what is cached and under which key: :mod:`service.api.cache`)."""

from __future__ import annotations

import datetime as dt
import threading
from collections import OrderedDict
from dataclasses import dataclass


@dataclass
class CachedAnswer:
    body: bytes
    mimetype: str
    headers: dict[str, str]
    etag: str
    last_modified: dt.datetime | None
    provenance: dict


class ResponseCache:
    """A thread-safe LRU of rendered GET answers, bounded both in entries (``size``) and in
    bytes (``max_bytes``: bodies, stored headers and keys). An answer larger than a quarter of
    ``max_bytes`` is not kept (it would flush everything else)."""

    def __init__(self, size: int = 2048, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.size = size
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple, tuple[CachedAnswer, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.bytes = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: tuple, count_miss: bool = True) -> CachedAnswer | None:
        with self._lock:
            entry = self._items.get(key)
            if entry is not None:
                self._items.move_to_end(key)
                self.hits += 1
                return entry[0]
            if count_miss:
                self.misses += 1
            return None

    @staticmethod
    def weight(key: tuple, item: CachedAnswer) -> int:
        """Bytes an entry holds, roughly: body, stored headers, key and a fixed overhead."""
        return (len(item.body) + sum(len(k) + len(v) for k, v in item.headers.items())
                + len(repr(key)) + 512)

    def put(self, key: tuple, item: CachedAnswer) -> None:
        if self.size <= 0 or self.max_bytes <= 0:
            return
        weight = self.weight(key, item)
        if weight > self.max_bytes // 4:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.bytes -= old[1]
            self._items[key] = (item, weight)
            self.bytes += weight
            while len(self._items) > self.size or self.bytes > self.max_bytes:
                _, (_, dropped) = self._items.popitem(last=False)
                self.bytes -= dropped

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.bytes = 0
