"""A bounded, thread-safe LRU of decoded voice features, keyed by checksum.

Keying by the features' sha256 means a removed or reloaded voice can never be served
stale: its new row carries a new checksum, and the old entry simply ages out.
"""
from __future__ import annotations

import functools
import threading
from collections import OrderedDict

from synthesis.engines.base import Features


class FeatureCache:
    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._items: OrderedDict[str, Features] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, sha256: str) -> Features | None:
        with self._lock:
            item = self._items.get(sha256)
            if item is not None:
                self._items.move_to_end(sha256)
            return item

    def put(self, sha256: str, features: Features) -> None:
        with self._lock:
            self._items[sha256] = features
            self._items.move_to_end(sha256)
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)

    def discard(self, sha256: str) -> None:
        with self._lock:
            self._items.pop(sha256, None)

    def __len__(self) -> int:
        return len(self._items)


@functools.cache
def get_feature_cache() -> FeatureCache:
    from django.conf import settings

    return FeatureCache(settings.TTS_FEATURE_CACHE_SIZE)
